//! AlterUserScramCredentials (key 51): set or delete users' SCRAM credentials, what
//! `kafka-configs --entity-type users --alter --add-config 'SCRAM-SHA-512=[password=…]'`
//! and Admin `alterUserScramCredentials` send. The client sends the salted password
//! (never the password); the broker derives RFC 5802's stored and server keys and the
//! controller stores only those. One result per user, as Kafka answers: a user whose
//! request is malformed (or who is named twice) gets the error and none of its changes
//! is made.
//!
//! Needs ALTER on the cluster (Kafka's `ControllerApis.handleAlterUserScramCredentials`,
//! `authorizeClusterOperation(request, ALTER)`). Without it nothing changes and the
//! answer is `AlterUserScramCredentialsRequest.getErrorResponse`: one result per user
//! named (each once, sorted by name) with CLUSTER_AUTHORIZATION_FAILED.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;
use ottla_controller::scram::{ScramChange, ScramKeys};
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};
use crate::security::scram::{ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

type Refusal = (ResponseError, String);

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: AlterUserScramCredentialsRequest = decode(request)?;
    if !caller.allowed_on_cluster(op::ALTER) {
        // Kafka's message there is a dump of its internal request object; none is
        // sent here (clients fall back to the code's own text).
        let users: BTreeSet<&str> = req
            .deletions
            .iter()
            .map(|d| d.name.as_str())
            .chain(req.upsertions.iter().map(|u| u.name.as_str()))
            .collect();
        let results = users
            .into_iter()
            .map(|user| {
                AlterUserScramCredentialsResult::default()
                    .with_user(str_bytes(user))
                    .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                    .with_error_message(None)
            })
            .collect();
        return respond(
            request,
            &AlterUserScramCredentialsResponse::default().with_results(results),
        );
    }
    // Users in order of first appearance, each with its changes or its refusal.
    let mut users: Vec<String> = Vec::new();
    let mut planned: BTreeMap<String, Result<Vec<ScramChange>, Refusal>> = BTreeMap::new();
    // Kafka refuses a user named more than once in one request (across deletions and
    // upsertions), whatever the mechanisms: neither change is made.
    let mut seen: HashSet<String> = HashSet::new();
    let deletions = req
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism, None));
    let upsertions = req.upsertions.iter().map(|u| {
        (
            u.name.to_string(),
            u.mechanism,
            Some((u.iterations, u.salt.to_vec(), u.salted_password.to_vec())),
        )
    });
    for (name, mechanism, upsert) in deletions.chain(upsertions) {
        if !planned.contains_key(&name) {
            users.push(name.clone());
            planned.insert(name.clone(), Ok(Vec::new()));
        }
        let duplicate = !seen.insert(name.clone());
        let change = plan(&name, mechanism, upsert, duplicate);
        let entry = planned.get_mut(&name).expect("inserted above");
        match (change, &mut *entry) {
            (Ok(c), Ok(changes)) => changes.push(c),
            // A duplicate outranks any earlier refusal of the user, as in Kafka.
            (Err(refusal), _) if duplicate => *entry = Err(refusal),
            (Err(refusal), Ok(_)) => *entry = Err(refusal),
            (_, Err(_)) => {}
        }
    }
    let accepted: Vec<ScramChange> = users
        .iter()
        .filter_map(|u| planned[u].as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let mut committed = if accepted.is_empty() {
        Ok(Vec::new())
    } else {
        broker.controller.alter_scram_credentials(accepted)
    };
    let mut outcomes = match &mut committed {
        Ok(results) => std::mem::take(results).into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = users
        .iter()
        .map(|user| {
            let result =
                AlterUserScramCredentialsResult::default().with_user(str_bytes(user.clone()));
            let error: Option<(i16, String)> = match &planned[user] {
                Err((code, message)) => Some((code.code(), message.clone())),
                Ok(changes) => match &committed {
                    Err(e) => Some((e.kafka_error_code(), e.to_string())),
                    // The first failure among this user's changes (every one of
                    // its outcomes is taken, so the next user's line up).
                    Ok(_) => {
                        let mine: Vec<Option<(i16, String)>> =
                            changes.iter().map(|_| outcomes.next().flatten()).collect();
                        mine.into_iter().flatten().next()
                    }
                },
            };
            match error {
                None => result,
                Some((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    respond(
        request,
        &AlterUserScramCredentialsResponse::default().with_results(results),
    )
}

/// One change, checked as Kafka's `ScramControlManager` checks it.
fn plan(
    name: &str,
    mechanism: i8,
    upsert: Option<(i32, Vec<u8>, Vec<u8>)>,
    duplicate: bool,
) -> Result<ScramChange, Refusal> {
    if name.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Username must not be empty".into(),
        ));
    }
    if duplicate {
        return Err((
            ResponseError::DuplicateResource,
            "A user credential cannot be altered twice in the same request".into(),
        ));
    }
    let Some(m) = ScramMechanism::from_type(mechanism) else {
        return Err((
            ResponseError::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism".into(),
        ));
    };
    let credential = match upsert {
        None => None,
        Some((iterations, salt, salted_password)) => {
            if iterations < MIN_ITERATIONS {
                return Err((
                    ResponseError::UnacceptableCredential,
                    format!(
                        "Iterations {iterations} is less than the minimum {MIN_ITERATIONS} for {}",
                        m.name()
                    ),
                ));
            }
            if iterations > MAX_ITERATIONS {
                return Err((
                    ResponseError::UnacceptableCredential,
                    format!(
                        "Iterations {iterations} is more than the maximum {MAX_ITERATIONS} for {}",
                        m.name()
                    ),
                ));
            }
            if salt.is_empty() || salted_password.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "Salt and salted password must not be empty".into(),
                ));
            }
            let (stored_key, server_key) = m.keys(&salted_password);
            Some(ScramKeys {
                salt,
                stored_key,
                server_key,
                iterations,
            })
        }
    };
    Ok(ScramChange {
        name: name.to_string(),
        mechanism,
        credential,
    })
}
