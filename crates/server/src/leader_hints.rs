//! KIP-951 leader hints: a Produce (v10+) or Fetch (v16+) answered NOT_LEADER_OR_FOLLOWER
//! or FENCED_LEADER_EPOCH names the partition's current leader and leader epoch, and the
//! response lists where those leaders are (`node_endpoints`), so the client goes
//! straight to the new leader instead of first refreshing its metadata. Kafka's
//! `KafkaApis` fills them in from its metadata cache just before answering; so do we,
//! from the latest metadata image.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use ottla_controller::{BrokerInfo, MetadataImage, TopicInfo};

use crate::handlers::AdvertisedEndpoint;

/// First Produce version with `current_leader` and `node_endpoints`.
pub const FIRST_PRODUCE_VERSION: i16 = 10;
/// First Fetch version with `node_endpoints` (`current_leader` exists from v12, but
/// Kafka fills it in for clients only from v16, with the endpoints).
pub const FIRST_FETCH_VERSION: i16 = 16;

/// The hints gathered for one response.
pub struct LeaderHints {
    image: Arc<MetadataImage>,
    leaders: BTreeSet<i32>,
    /// The listener the request came in on: the leaders are named by their address
    /// there (Kafka's `getAliveBrokerNode(leaderId, listenerName)`).
    here: AdvertisedEndpoint,
}

impl LeaderHints {
    pub fn new(image: Arc<MetadataImage>, here: AdvertisedEndpoint) -> LeaderHints {
        LeaderHints {
            image,
            leaders: BTreeSet::new(),
            here,
        }
    }

    /// Where a client on the request's listener reaches broker `b` (`None`: not on
    /// that listener; the hint then names no endpoint, as Kafka's `Node.noNode`).
    pub fn host_port(&self, b: &BrokerInfo) -> Option<(String, i32)> {
        self.here.host_port(b)
    }

    /// The metadata the hints come from.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// `(leader id, leader epoch)` to put in a partition answered `error_code`, if that
    /// error calls for a hint and the partition has a live leader; the leader is then
    /// listed by [`LeaderHints::endpoints`].
    pub fn current_leader(
        &mut self,
        topic: Option<&TopicInfo>,
        partition: i32,
        error_code: i16,
    ) -> Option<(i32, i32)> {
        if error_code != ResponseError::NotLeaderOrFollower.code()
            && error_code != ResponseError::FencedLeaderEpoch.code()
        {
            return None;
        }
        let p = topic?.partitions.get(usize::try_from(partition).ok()?)?;
        if p.leader < 0 || !self.image.is_eligible_replica(p.leader) {
            return None;
        }
        self.leaders.insert(p.leader);
        Some((p.leader, p.leader_epoch))
    }

    /// The brokers named by the hints given so far, in id order.
    pub fn endpoints(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.leaders
            .iter()
            .filter_map(|id| self.image.brokers.get(id))
    }
}

/// The `node_endpoints` of a Produce or Fetch response for the brokers `hints` named:
/// the two responses have distinct generated `NodeEndpoint` types of the same shape.
macro_rules! node_endpoints {
    ($hints:expr, $endpoint:ty) => {
        $hints
            .endpoints()
            .filter_map(|b| {
                let (host, port) = $hints.host_port(b)?;
                Some(
                    <$endpoint>::default()
                        .with_node_id(kafka_protocol::messages::BrokerId(b.node_id))
                        .with_host($crate::handlers::str_bytes(host))
                        .with_port(port)
                        .with_rack(b.rack.clone().map($crate::handlers::str_bytes)),
                )
            })
            .collect()
    };
}
pub(crate) use node_endpoints;
