//! TxnOffsetCommit (key 28): a transactional producer commits a group's offsets inside
//! its transaction (`sendOffsetsToTransaction`). The group coordinator checks them as
//! an OffsetCommit (generation and member from v3), writes them in a transactional
//! batch, and they become visible to OffsetFetch only when the COMMIT marker reaches
//! the group's partition.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;
use ottla_group::types::{OffsetCommitRequest, PartitionOffsetCommit};
use ottla_protocol::frame::Request;

use super::{decode, respond_later, HandlerError, Reply};
use crate::broker::Broker;

/// First version that carries the group's generation and member (KIP-447).
const GROUP_METADATA_SINCE: i16 = 3;

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: TxnOffsetCommitRequest = decode(request)?;
    let version = request.version();
    let image = broker.controller.image();
    let mut offsets: Vec<PartitionOffsetCommit> = Vec::new();
    let mut seen: HashMap<(String, i32), usize> = HashMap::new();
    for topic in &req.topics {
        let Some(info) = image.topic(topic.name.as_str()) else {
            continue;
        };
        let count = info.partitions.len() as i32;
        for p in topic
            .partitions
            .iter()
            .filter(|p| (0..count).contains(&p.partition_index))
        {
            let commit = PartitionOffsetCommit {
                topic: info.name.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            };
            match seen.get(&(info.name.clone(), p.partition_index)) {
                Some(&i) => offsets[i] = commit,
                None => {
                    seen.insert((info.name.clone(), p.partition_index), offsets.len());
                    offsets.push(commit);
                }
            }
        }
    }
    let (generation_id, member_id, group_instance_id) = if version >= GROUP_METADATA_SINCE {
        (
            req.generation_id,
            req.member_id.to_string(),
            req.group_instance_id.as_ref().map(|s| s.to_string()),
        )
    } else {
        (-1, String::new(), None)
    };
    let committed = broker.groups.txn_commit_offsets(
        OffsetCommitRequest {
            group_id: req.group_id.to_string(),
            generation_id,
            member_id,
            group_instance_id,
            offsets,
        },
        req.producer_id.0,
        req.producer_epoch,
    );
    respond_later(request, async move {
        let results: HashMap<(String, i32), i16> = committed
            .await
            .into_iter()
            .map(|r| ((r.topic, r.partition), r.error))
            .collect();
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let code = results
                            .get(&(t.name.to_string(), p.partition_index))
                            .copied()
                            .unwrap_or(ResponseError::UnknownTopicOrPartition.code());
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        TxnOffsetCommitResponse::default().with_topics(topics)
    })
}
