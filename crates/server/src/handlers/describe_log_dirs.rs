//! DescribeLogDirs (key 35): each log directory of this broker with the partitions it
//! holds, their sizes and how far each lags behind the high watermark, and (v4) the
//! file system's total and usable bytes: what `kafka-log-dirs --describe` and Admin
//! `describeLogDirs` show. A null topic list means every partition.
//!
//! Needs DESCRIBE on the cluster, as Kafka's `KafkaApis.handleDescribeLogDirsRequest`:
//! without it the answer lists no log directory, with CLUSTER_AUTHORIZATION_FAILED as
//! the top-level error (v3+; v0-2 have no error field and just list nothing).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DescribeLogDirsRequest = decode(request)?;
    if !caller.allowed_on_cluster(op::DESCRIBE) {
        // The encoder drops the error code below v3, leaving just the empty list.
        return respond(
            request,
            &DescribeLogDirsResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let wanted: Option<HashSet<(String, i32)>> = req.topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
            .collect()
    });
    let log_dirs = broker.replicas.log_dirs();
    // Per log dir: topic -> partitions.
    let mut per_dir: Vec<BTreeMap<String, Vec<DescribeLogDirsPartition>>> =
        vec![BTreeMap::new(); log_dirs.len()];
    for p in broker.replicas.all() {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.contains(&(p.topic.clone(), p.index)))
        {
            continue;
        }
        let dir = p.dir();
        let Some(i) = log_dirs.iter().position(|d| dir.starts_with(d)) else {
            continue;
        };
        let lag = (p.high_watermark() - p.log_end_offset()).max(0);
        per_dir[i].entry(p.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p.index)
                .with_partition_size(p.size_bytes() as i64)
                .with_offset_lag(lag)
                .with_is_future_key(false),
        );
    }
    let results = log_dirs
        .iter()
        .zip(per_dir)
        .map(|(dir, topics)| {
            let (total, usable) = file_system_bytes(dir);
            DescribeLogDirsResult::default()
                .with_log_dir(str_bytes(dir.display().to_string()))
                .with_total_bytes(total)
                .with_usable_bytes(usable)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, mut partitions)| {
                            partitions.sort_by_key(|p| p.partition_index);
                            DescribeLogDirsTopic::default()
                                .with_name(TopicName(str_bytes(name)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
        })
        .collect();
    respond(
        request,
        &DescribeLogDirsResponse::default().with_results(results),
    )
}

/// The file system's size and the bytes available to this process, as Kafka's
/// `getTotalSpace` / `getUsableSpace` report them; -1 each if they cannot be read.
fn file_system_bytes(dir: &std::path::Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let block = s.f_frsize as i64;
            (
                (s.f_blocks as i64).saturating_mul(block),
                (s.f_bavail as i64).saturating_mul(block),
            )
        }
        Err(_) => (-1, -1),
    }
}
