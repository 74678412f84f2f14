//! DescribeUserScramCredentials (key 50): each user's SCRAM mechanisms and iteration
//! counts (never salts or keys), what `kafka-configs --entity-type users --describe`
//! shows. No user list (or an empty one) means every user with a credential.
//!
//! Needs DESCRIBE on the cluster (Kafka's `KafkaApis.handleDescribeUserScramCredentialsRequest`).
//! Without it the answer is `DescribeUserScramCredentialsRequest.getErrorResponse`:
//! CLUSTER_AUTHORIZATION_FAILED at the top level and one result with that code for each
//! user asked for (Kafka leaves those results' user name empty), no credential shown.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(broker: &Broker, request: &Request, caller: &Caller) -> Result<Reply, HandlerError> {
    let req: DescribeUserScramCredentialsRequest = decode(request)?;
    if !caller.allowed_on_cluster(op::DESCRIBE) {
        // Kafka builds this from `Errors.CLUSTER_AUTHORIZATION_FAILED.exception`, whose
        // message is the code's default, so `ApiError` drops it: no message anywhere.
        let code = ResponseError::ClusterAuthorizationFailed.code();
        let results = req
            .users
            .iter()
            .flatten()
            .map(|_| {
                DescribeUserScramCredentialsResult::default()
                    .with_error_code(code)
                    .with_error_message(None)
            })
            .collect();
        return respond(
            request,
            &DescribeUserScramCredentialsResponse::default()
                .with_error_code(code)
                .with_error_message(None)
                .with_results(results),
        );
    }
    let image = broker.controller.image();
    let mut by_user: BTreeMap<&str, Vec<CredentialInfo>> = BTreeMap::new();
    for ((user, mechanism), credential) in &image.scram_credentials {
        by_user.entry(user.as_str()).or_default().push(
            CredentialInfo::default()
                .with_mechanism(*mechanism)
                .with_iterations(credential.iterations),
        );
    }
    let found = |user: &str| {
        let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
        match by_user.get(user) {
            Some(infos) => result.with_credential_infos(infos.clone()),
            None => result
                .with_error_code(ResponseError::ResourceNotFound.code())
                .with_error_message(Some(str_bytes(
                    "Attempt to describe a user credential that does not exist",
                ))),
        }
    };
    // No list, or an empty one (what the Admin clients send for "every user"), as
    // Kafka's `ScramImage.describe`.
    let results = match &req.users {
        None => by_user.keys().map(|user| found(user)).collect(),
        Some(users) if users.is_empty() => by_user.keys().map(|user| found(user)).collect(),
        Some(users) => {
            let mut seen = BTreeSet::new();
            let duplicates: BTreeSet<&str> = users
                .iter()
                .map(|u| u.name.as_str())
                .filter(|name| !seen.insert(*name))
                .collect();
            let mut answered = BTreeSet::new();
            users
                .iter()
                .map(|u| u.name.as_str())
                .filter(|name| answered.insert(*name))
                .map(|name| {
                    if duplicates.contains(name) {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(str_bytes(name))
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(str_bytes(
                                "Cannot describe SCRAM credentials for the same user twice in a single request",
                            )))
                    } else {
                        found(name)
                    }
                })
                .collect()
        }
    };
    respond(
        request,
        &DescribeUserScramCredentialsResponse::default().with_results(results),
    )
}
