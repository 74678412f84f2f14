//! OffsetDelete (key 47): drop committed offsets a group no longer needs; refused for
//! topics a live consumer group still subscribes to.

use std::sync::Arc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use ottla_protocol::frame::Request;

use super::{decode, respond, HandlerError, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: OffsetDeleteRequest = decode(request)?;
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let (code, results) = broker
        .groups
        .delete_offsets(broker, req.group_id.as_str(), &partitions);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let e = results
                        .iter()
                        .find(|r| r.topic == t.name.as_str() && r.partition == p.partition_index)
                        .map_or(0, |r| r.error);
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(e)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    let response = OffsetDeleteResponse::default().with_error_code(code);
    let response = if code == 0 {
        response.with_topics(topics)
    } else {
        response
    };
    respond(request, &response)
}
