//! OffsetFetch (key 9): committed offsets of one group (v1-7) or several (v8+).
//! A partition without a commit reports offset -1 and no error, as in Kafka.
//!
//! The answer is built per requested topic, not per partition: the topic name is
//! copied once per topic, repeated groups, topics and partitions are answered once, and
//! only partitions that exist are looked up, so the response stays proportional to
//! what the broker holds rather than to what a request claims.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use ottla_controller::MetadataImage;
use ottla_group::types::FetchedOffset;
use ottla_protocol::frame::Request;

use super::{decode, respond_later, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

/// One partition's answer.
struct Fetched {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<String>,
    /// UNSTABLE_OFFSET_COMMIT when `require_stable` meets an open transaction's offset.
    error: i16,
}

impl From<FetchedOffset> for Fetched {
    fn from(o: FetchedOffset) -> Fetched {
        Fetched {
            partition: o.partition,
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata,
            error: o.error,
        }
    }
}

impl Fetched {
    fn none(partition: i32) -> Fetched {
        Fetched {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: Some(String::new()),
            error: 0,
        }
    }
}

/// One group's answer, per topic.
type GroupAnswer = Vec<(TopicName, Vec<Fetched>)>;

/// Ask the coordinator for one group's offsets (`topics: None`: every committed
/// partition) and shape its answer as the request asked.
fn fetch_group(
    broker: &Broker,
    image: &MetadataImage,
    group_id: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
    require_stable: bool,
    member: Option<(Option<String>, i32)>,
    caller: &Caller,
) -> Pin<Box<dyn Future<Output = Result<GroupAnswer, i16>> + Send>> {
    // KafkaApis: DESCRIBE on the group, then DESCRIBE on each topic (topics the caller
    // may not describe are left out of "every topic", and refused when named).
    if !caller.allowed_on_group(op::DESCRIBE, group_id) {
        return Box::pin(std::future::ready(Err(
            kafka_protocol::ResponseError::GroupAuthorizationFailed.code(),
        )));
    }
    let caller = caller.clone();
    let Some(topics) = topics else {
        let fetched =
            broker
                .groups
                .fetch_offsets(group_id.to_string(), None, require_stable, member);
        return Box::pin(async move {
            // The coordinator lists a group's offsets sorted by topic.
            let mut out: GroupAnswer = Vec::new();
            for o in fetched.await? {
                if !caller.allowed_on_topic(op::DESCRIBE, &o.topic) {
                    continue;
                }
                match out.last_mut() {
                    Some((name, list)) if name.as_str() == o.topic => list.push(o.into()),
                    _ => out.push((TopicName(str_bytes(o.topic.clone())), vec![o.into()])),
                }
            }
            Ok(out)
        });
    };
    // Each topic and partition once; only partitions that exist are asked for.
    let mut seen_topics = HashSet::new();
    let mut asked: Vec<(TopicName, Vec<i32>)> = Vec::new();
    let mut query: Vec<(String, Vec<i32>)> = Vec::new();
    let mut denied: HashSet<String> = HashSet::new();
    for (name, partitions) in topics {
        if !seen_topics.insert(name.to_string()) {
            continue;
        }
        if !caller.allowed_on_topic(op::DESCRIBE, name.as_str()) {
            denied.insert(name.to_string());
            let mut seen = HashSet::new();
            let partitions = partitions.into_iter().filter(|p| seen.insert(*p)).collect();
            asked.push((name, partitions));
            continue;
        }
        let mut seen = HashSet::new();
        let partitions: Vec<i32> = partitions.into_iter().filter(|p| seen.insert(*p)).collect();
        let existing = image
            .topic(name.as_str())
            .map(|t| t.partitions.len() as i32)
            .unwrap_or(0);
        let known: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| *p >= 0 && *p < existing)
            .collect();
        if !known.is_empty() {
            query.push((name.to_string(), known));
        }
        asked.push((name, partitions));
    }
    let fetched =
        broker
            .groups
            .fetch_offsets(group_id.to_string(), Some(query), require_stable, member);
    Box::pin(async move {
        let mut committed: HashMap<(String, i32), Fetched> = HashMap::new();
        for o in fetched.await? {
            committed.insert((o.topic.clone(), o.partition), o.into());
        }
        Ok(asked
            .into_iter()
            .map(|(name, partitions)| {
                let answers = partitions
                    .into_iter()
                    .map(|p| {
                        if denied.contains(name.as_str()) {
                            return Fetched {
                                error: kafka_protocol::ResponseError::TopicAuthorizationFailed
                                    .code(),
                                ..Fetched::none(p)
                            };
                        }
                        committed
                            .remove(&(name.to_string(), p))
                            .unwrap_or_else(|| Fetched::none(p))
                    })
                    .collect();
                (name, answers)
            })
            .collect())
    })
}

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: OffsetFetchRequest = decode(request)?;
    let version = request.version();
    let image = broker.controller.image();
    if version >= 8 {
        let mut seen = HashSet::new();
        let groups: Vec<_> = req
            .groups
            .into_iter()
            .filter(|g| seen.insert(g.group_id.to_string()))
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                // v9: a consumer group member says who it is (KIP-848).
                let member =
                    (version >= 9).then(|| (g.member_id.map(|m| m.to_string()), g.member_epoch));
                let answer = fetch_group(
                    broker,
                    &image,
                    g.group_id.as_str(),
                    topics,
                    req.require_stable,
                    member,
                    caller,
                );
                (g.group_id, answer)
            })
            .collect();
        return respond_later(request, async move {
            let mut out = Vec::with_capacity(groups.len());
            for (group_id, answer) in groups {
                let group = OffsetFetchResponseGroup::default().with_group_id(group_id);
                out.push(match answer.await {
                    Err(code) => group.with_error_code(code),
                    Ok(topics) => group.with_topics(topics_v8(topics)),
                });
            }
            OffsetFetchResponse::default().with_groups(out)
        });
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let answer = fetch_group(
        broker,
        &image,
        req.group_id.as_str(),
        topics,
        req.require_stable,
        None,
        caller,
    );
    respond_later(request, async move {
        match answer.await {
            // The top-level error code exists from v2.
            Err(code) if version >= 2 => OffsetFetchResponse::default().with_error_code(code),
            Err(_) => OffsetFetchResponse::default(),
            Ok(topics) => OffsetFetchResponse::default().with_topics(topics_v0(version, topics)),
        }
    })
}

fn topics_v8(topics: GroupAnswer) -> Vec<OffsetFetchResponseTopics> {
    topics
        .into_iter()
        .map(|(name, list)| {
            OffsetFetchResponseTopics::default()
                .with_name(name)
                .with_partitions(
                    list.into_iter()
                        .map(|o| {
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(o.partition)
                                .with_committed_offset(o.offset)
                                .with_committed_leader_epoch(o.leader_epoch)
                                .with_metadata(o.metadata.map(str_bytes))
                                .with_error_code(o.error)
                        })
                        .collect(),
                )
        })
        .collect()
}

fn topics_v0(version: i16, topics: GroupAnswer) -> Vec<OffsetFetchResponseTopic> {
    topics
        .into_iter()
        .map(|(name, list)| {
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    list.into_iter()
                        .map(|o| {
                            let p = OffsetFetchResponsePartition::default()
                                .with_partition_index(o.partition)
                                .with_committed_offset(o.offset)
                                .with_metadata(o.metadata.map(str_bytes))
                                .with_error_code(o.error);
                            if version >= 5 {
                                p.with_committed_leader_epoch(o.leader_epoch)
                            } else {
                                p
                            }
                        })
                        .collect(),
                )
        })
        .collect()
}
