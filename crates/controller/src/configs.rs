//! Dynamic configs (IncrementalAlterConfigs and AlterConfigs, what `kafka-configs
//! --alter` and `kafka-reassign-partitions --throttle` send), as the active controller
//! commits them: topic overrides as `TopicConfig` records, dynamic broker configs (one
//! broker's, or the cluster-wide default) as `BrokerConfig` records. Which keys exist,
//! which may change at run time and what their values may be is the broker's config
//! table's business (the handler checks before asking); the controller checks what
//! only it can (the topic exists now) and writes only what changes.

use serde::{Deserialize, Serialize};

use crate::image::MetadataImage;
use crate::records::MetadataRecord;
use crate::{Controller, ControllerError, ControllerOp};

/// What a config change applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// A broker id, or `None` for the cluster-wide default.
    Broker(Option<i32>),
}

/// The dynamic configs one resource ends with: each key set to a value or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub resource: ConfigResource,
    pub values: Vec<(String, Option<String>)>,
}

/// The records making `change` true in `image` (none for values already so).
pub fn config_records(
    image: &MetadataImage,
    change: &ConfigChange,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    match &change.resource {
        ConfigResource::Topic(name) => {
            let topic = image
                .topic(name)
                .ok_or(ControllerError::UnknownTopicOrPartition)?;
            Ok(change
                .values
                .iter()
                .filter(|(key, value)| topic.configs.get(key) != value.as_ref())
                .map(|(key, value)| MetadataRecord::TopicConfig {
                    topic_id: topic.topic_id,
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect())
        }
        ConfigResource::Broker(broker) => {
            let current = image.broker_configs.get(broker);
            Ok(change
                .values
                .iter()
                .filter(|(key, value)| current.and_then(|c| c.get(key)) != value.as_ref())
                .map(|(key, value)| MetadataRecord::BrokerConfig {
                    broker: *broker,
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect())
        }
    }
}

impl Controller {
    /// Commit `changes` at the active controller, all or each failing on its own: one
    /// outcome per change, in order (`None` = done).
    pub fn alter_configs(
        &self,
        changes: Vec<ConfigChange>,
    ) -> Result<Vec<Option<(i16, String)>>, ControllerError> {
        self.run_change(
            &|| ControllerOp::AlterConfigs {
                changes: changes.clone(),
            },
            &|| self.alter_configs_here(&changes),
            &|output| match output {
                crate::ChangeOutput::Configs(results) => Ok(results),
                _ => Err(ControllerError::QuorumUnavailable(
                    "no config results in the answer".into(),
                )),
            },
        )
    }

    pub(crate) fn alter_configs_here(
        &self,
        changes: &[ConfigChange],
    ) -> Result<Vec<Option<(i16, String)>>, ControllerError> {
        let node_id = self.config.node_id;
        self.commit(|image| {
            let mut records = Vec::new();
            let mut results = Vec::with_capacity(changes.len());
            for change in changes {
                match config_records(image, change) {
                    Ok(r) => {
                        if !r.is_empty() {
                            tracing::info!(
                                "[QuorumController id={node_id}] Altered configs of {:?}: {:?}",
                                change.resource,
                                change.values
                            );
                        }
                        records.extend(r);
                        results.push(None);
                    }
                    Err(e) => results.push(Some((e.kafka_error_code(), e.to_string()))),
                }
            }
            Ok((records, results))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::tests::image_with;

    fn apply(image: &mut MetadataImage, change: &ConfigChange) -> usize {
        let records = config_records(image, change).unwrap();
        for r in &records {
            image.replay(r).unwrap();
        }
        records.len()
    }

    #[test]
    fn topic_and_broker_configs_are_set_and_removed_and_unchanged_values_write_nothing() {
        let (mut image, _) = image_with(&[1, 2], &[1, 2], 1);
        let set = ConfigChange {
            resource: ConfigResource::Topic("t".into()),
            values: vec![("retention.ms".into(), Some("1000".into()))],
        };
        assert_eq!(apply(&mut image, &set), 1);
        assert_eq!(image.topic("t").unwrap().configs["retention.ms"], "1000");
        assert_eq!(apply(&mut image, &set), 0, "already so");
        let unset = ConfigChange {
            resource: ConfigResource::Topic("t".into()),
            values: vec![("retention.ms".into(), None)],
        };
        assert_eq!(apply(&mut image, &unset), 1);
        assert!(image.topic("t").unwrap().configs.is_empty());

        let rate = |broker, v: &str| ConfigChange {
            resource: ConfigResource::Broker(broker),
            values: vec![("leader.replication.throttled.rate".into(), Some(v.into()))],
        };
        apply(&mut image, &rate(None, "100"));
        apply(&mut image, &rate(Some(2), "200"));
        let key = "leader.replication.throttled.rate";
        assert_eq!(
            image.dynamic_broker_config(1, key).unwrap(),
            "100",
            "the default"
        );
        assert_eq!(
            image.dynamic_broker_config(2, key).unwrap(),
            "200",
            "its own"
        );
        let missing = ConfigChange {
            resource: ConfigResource::Topic("nope".into()),
            values: vec![],
        };
        assert_eq!(
            config_records(&image, &missing)
                .unwrap_err()
                .kafka_error_code(),
            3
        );
        // A snapshot of the image carries the broker configs.
        let mut copy = MetadataImage::default();
        for r in image.to_records() {
            copy.replay(&r).unwrap();
        }
        assert_eq!(copy.broker_configs, image.broker_configs);
    }
}
