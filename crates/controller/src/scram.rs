//! SCRAM credentials (AlterUserScramCredentials, what `kafka-configs --entity-type users
//! --alter --add-config 'SCRAM-SHA-256=[password=...]'` sends), as the active controller
//! commits them: `UserScramCredential` and `RemoveUserScramCredential` records holding
//! RFC 5802's salted keys. The broker derives the keys and checks the request's shape
//! (iterations, duplicates); the controller checks what only it can (a credential to
//! delete exists now).

use serde::{Deserialize, Serialize};

use crate::image::{MetadataImage, ScramCredential};
use crate::records::MetadataRecord;
use crate::{Controller, ControllerError, ControllerOp};

/// Kafka's RESOURCE_NOT_FOUND.
const RESOURCE_NOT_FOUND: i16 = 91;

/// One user's credential for one mechanism: set (`Some`) or deleted (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramChange {
    pub name: String,
    /// 1 SCRAM-SHA-256, 2 SCRAM-SHA-512.
    pub mechanism: i8,
    pub credential: Option<ScramKeys>,
}

/// What a credential stores (the serializable form of [`ScramCredential`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl From<&ScramKeys> for ScramCredential {
    fn from(k: &ScramKeys) -> ScramCredential {
        ScramCredential {
            salt: k.salt.clone(),
            stored_key: k.stored_key.clone(),
            server_key: k.server_key.clone(),
            iterations: k.iterations,
        }
    }
}

/// The record making `change` true in `image`, or Kafka's error.
pub fn scram_record(
    image: &MetadataImage,
    change: &ScramChange,
) -> Result<MetadataRecord, (i16, String)> {
    match &change.credential {
        Some(keys) => Ok(MetadataRecord::UserScramCredential {
            name: change.name.clone(),
            mechanism: change.mechanism,
            salt: keys.salt.clone(),
            stored_key: keys.stored_key.clone(),
            server_key: keys.server_key.clone(),
            iterations: keys.iterations,
        }),
        None if image
            .scram_credentials
            .contains_key(&(change.name.clone(), change.mechanism)) =>
        {
            Ok(MetadataRecord::RemoveUserScramCredential {
                name: change.name.clone(),
                mechanism: change.mechanism,
            })
        }
        None => Err((
            RESOURCE_NOT_FOUND,
            "Attempt to delete a user credential that does not exist".into(),
        )),
    }
}

impl Controller {
    /// Commit `changes` at the active controller, each succeeding or failing on its own:
    /// one outcome per change, in order (`None` = done).
    pub fn alter_scram_credentials(
        &self,
        changes: Vec<ScramChange>,
    ) -> Result<Vec<Option<(i16, String)>>, ControllerError> {
        self.run_change(
            &|| ControllerOp::AlterScramCredentials {
                changes: changes.clone(),
            },
            &|| self.alter_scram_credentials_here(&changes),
            &|output| match output {
                crate::ChangeOutput::ScramCredentials(results) => Ok(results),
                _ => Err(ControllerError::QuorumUnavailable(
                    "no SCRAM results in the answer".into(),
                )),
            },
        )
    }

    pub(crate) fn alter_scram_credentials_here(
        &self,
        changes: &[ScramChange],
    ) -> Result<Vec<Option<(i16, String)>>, ControllerError> {
        let node_id = self.config.node_id;
        self.commit(|image| {
            let mut records = Vec::new();
            let mut results = Vec::with_capacity(changes.len());
            for change in changes {
                match scram_record(image, change) {
                    Ok(record) => {
                        tracing::info!(
                            "[QuorumController id={node_id}] {} the SCRAM credential of user {} for mechanism {}",
                            if change.credential.is_some() { "Set" } else { "Removed" },
                            change.name,
                            change.mechanism
                        );
                        records.push(record);
                        results.push(None);
                    }
                    Err(e) => results.push(Some(e)),
                }
            }
            Ok((records, results))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_set_replayed_and_removed() {
        let mut image = MetadataImage::default();
        let keys = ScramKeys {
            salt: vec![1, 2],
            stored_key: vec![3],
            server_key: vec![4],
            iterations: 4096,
        };
        let set = ScramChange {
            name: "alice".into(),
            mechanism: 2,
            credential: Some(keys.clone()),
        };
        image.replay(&scram_record(&image, &set).unwrap()).unwrap();
        assert_eq!(
            image.scram_credentials.get(&("alice".to_string(), 2)),
            Some(&ScramCredential::from(&keys))
        );
        let delete = ScramChange {
            credential: None,
            ..set.clone()
        };
        image
            .replay(&scram_record(&image, &delete).unwrap())
            .unwrap();
        assert!(image.scram_credentials.is_empty());
        let err = scram_record(&image, &delete).unwrap_err();
        assert_eq!(err.0, RESOURCE_NOT_FOUND);
    }
}
