//! ConsumerGroupHeartbeat (key 68): the consumer group protocol of KIP-848. A member
//! joins, stays and leaves through this one request; the coordinator answers with its
//! member epoch and, when it changed, its assignment.
//!
//! ACLs, as Kafka's `KafkaApis.handleConsumerGroupHeartbeatRequest`: READ on the group,
//! and DESCRIBE on every topic subscribed to by name (TOPIC_AUTHORIZATION_FAILED naming
//! the others). Topics matched by a regular expression are resolved with the DESCRIBE
//! access of the member whose heartbeat triggered the resolution: the others are left
//! out silently, as Kafka's `refreshRegularExpressions` does.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::ResponseError;
use ottla_group::consumer::records::TopicPartitions as Partitions;
use ottla_group::consumer::ConsumerHeartbeat;
use ottla_protocol::frame::Request;

use super::{decode, respond, respond_later, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    client_host: String,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: ConsumerGroupHeartbeatRequest = decode(request)?;
    let refuse = |code: i16, message: Option<String>| {
        respond(
            request,
            &ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(message.map(str_bytes)),
        )
    };
    if !caller.allowed_on_group(op::READ, req.group_id.as_str()) {
        return refuse(ResponseError::GroupAuthorizationFailed.code(), None);
    }
    if let Some(names) = &req.subscribed_topic_names {
        let mut denied: Vec<&str> = names
            .iter()
            .map(|n| n.as_str())
            .filter(|n| !caller.allowed_on_topic(op::DESCRIBE, n))
            .collect();
        if !denied.is_empty() {
            denied.sort_unstable();
            denied.dedup();
            return refuse(
                ResponseError::TopicAuthorizationFailed.code(),
                Some(format!("Unauthorized topics: {}", denied.join(", "))),
            );
        }
    }
    let topics = broker.groups.topics();
    let heartbeat = ConsumerHeartbeat {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .map(|names| names.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: req.server_assignor.map(|s| s.to_string()),
        owned: req.topic_partitions.map(|tps| {
            let mut owned = Partitions::new();
            for tp in tps {
                owned
                    .entry(tp.topic_id)
                    .or_default()
                    .extend(tp.partitions.iter().copied());
            }
            owned.retain(|_, ps| !ps.is_empty());
            owned
        }),
        client_id: request
            .header
            .client_id
            .as_deref()
            .unwrap_or("")
            .to_string(),
        client_host,
        api_version: request.version(),
        topic_access: caller.topic_describe_access(),
    };
    let answer = broker.groups.consumer_heartbeat(heartbeat, topics);
    respond_later(request, async move {
        match answer.await {
            Ok(r) => ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str_bytes(r.member_id)))
                .with_member_epoch(r.member_epoch)
                .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
                .with_assignment(r.assignment.map(|a| {
                    Assignment::default().with_topic_partitions(
                        a.into_iter()
                            .map(|(topic_id, ps)| {
                                TopicPartitions::default()
                                    .with_topic_id(topic_id)
                                    .with_partitions(ps.into_iter().collect())
                            })
                            .collect(),
                    )
                })),
            Err(e) => ConsumerGroupHeartbeatResponse::default()
                .with_error_code(e.code)
                .with_error_message(Some(str_bytes(e.message))),
        }
    })
}
