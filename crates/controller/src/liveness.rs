//! Broker liveness (Kafka's `BrokerHeartbeatManager` and the fencing half of
//! `ReplicationControlManager`).
//!
//! Every broker heartbeats to the active controller each `broker.heartbeat.interval.ms`.
//! The active controller remembers when it last heard from each broker (in memory: a
//! newly active controller gives every broker a fresh session) and fences a broker
//! silent for longer than `broker.session.timeout.ms`: the broker leaves every ISR and
//! its leaderships move to the next eligible in-sync replica, in one metadata change. A
//! fenced broker that heartbeats (or registers) again is unfenced, and partitions left
//! without a leader elect one from their ISR. A broker shutting down cleanly asks for
//! the same move first (controlled shutdown), so its partitions never wait for a
//! session to expire.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::records::MetadataRecord;
use crate::replication::{elect_offline_leaders, remove_broker};
use crate::{Backend, Controller, ControllerError, ControllerOp, MetadataImage, TopicInfo};

/// The topic config (and broker default) allowing unclean leader election.
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// When the active controller last heard from each broker.
#[derive(Debug, Default)]
pub(crate) struct BrokerSessions {
    last_heartbeat: Mutex<HashMap<i32, Instant>>,
}

impl Controller {
    /// A session starts (or goes on) for `node_id` now.
    pub(crate) fn sessions_started(&self, node_id: i32) {
        self.session_started_at(node_id, Instant::now());
    }

    fn session_started_at(&self, node_id: i32, at: Instant) {
        self.sessions.last_heartbeat.lock().insert(node_id, at);
    }

    /// A broker's heartbeat: its session goes on, and a fenced broker is unfenced.
    pub fn broker_heartbeat(&self, node_id: i32) -> Result<(), ControllerError> {
        self.run_change(
            &|| ControllerOp::BrokerHeartbeat { node_id },
            &|| self.broker_heartbeat_here(node_id),
            &|_| Ok(()),
        )
    }

    pub(crate) fn broker_heartbeat_here(&self, node_id: i32) -> Result<(), ControllerError> {
        let image = self.image();
        if !image.brokers.contains_key(&node_id) {
            return Err(ControllerError::StaleBrokerEpoch(node_id));
        }
        self.sessions_started(node_id);
        if !image.fenced_brokers.contains(&node_id) {
            return Ok(());
        }
        let moved = self.commit(|image| Ok(self.unfence(image, node_id)))?;
        tracing::info!(
            "[QuorumController id={}] Unfenced broker {node_id}; elected leaders for {moved} partitions",
            self.config.node_id
        );
        Ok(())
    }

    /// Controlled shutdown: move `node_id`'s leaderships away and take it out of every
    /// ISR before it stops (it is fenced until it registers again).
    pub fn controlled_shutdown(&self, node_id: i32) -> Result<(), ControllerError> {
        self.run_change(
            &|| ControllerOp::ControlledShutdown { node_id },
            &|| self.controlled_shutdown_here(node_id),
            &|_| Ok(()),
        )
    }

    pub(crate) fn controlled_shutdown_here(&self, node_id: i32) -> Result<(), ControllerError> {
        if !self.image().brokers.contains_key(&node_id) {
            return Err(ControllerError::StaleBrokerEpoch(node_id));
        }
        self.sessions.last_heartbeat.lock().remove(&node_id);
        let moved = self.commit(|image| Ok(self.fence(image, node_id)))?;
        tracing::info!(
            "[QuorumController id={}] Broker {node_id} is in controlled shutdown: moved {moved} partitions off it and fenced it",
            self.config.node_id
        );
        Ok(())
    }

    /// On the active controller: fence the brokers whose session expired. Elsewhere:
    /// forget every session (the next active controller starts them afresh).
    fn fence_expired_sessions(&self, session_timeout: Duration, now: Instant) {
        if !self.is_active() {
            self.sessions.last_heartbeat.lock().clear();
            return;
        }
        let image = self.image();
        let expired: Vec<i32> = {
            let mut sessions = self.sessions.last_heartbeat.lock();
            image
                .brokers
                .keys()
                .filter(|b| !image.fenced_brokers.contains(b))
                .filter(|b| {
                    now.duration_since(*sessions.entry(**b).or_insert(now)) > session_timeout
                })
                .copied()
                .collect()
        };
        for broker in expired {
            tracing::info!(
                "[QuorumController id={}] Fencing broker {broker} because its session has timed out.",
                self.config.node_id
            );
            match self.commit(|image| Ok(self.fence(image, broker))) {
                Ok(moved) => tracing::info!(
                    "[QuorumController id={}] Fenced broker {broker}: {moved} partitions changed leader or ISR",
                    self.config.node_id
                ),
                Err(e) => tracing::warn!(
                    "[QuorumController id={}] Failed to fence broker {broker}: {e}",
                    self.config.node_id
                ),
            }
        }
    }

    /// Whether `topic` may elect a leader outside its ISR: its
    /// `unclean.leader.election.enable`, else the cluster's (default false).
    pub(crate) fn unclean_allowed(&self, topic: &TopicInfo) -> bool {
        match topic.configs.get(UNCLEAN_LEADER_ELECTION) {
            Some(value) => value.trim().eq_ignore_ascii_case("true"),
            None => self
                .config
                .quorum
                .as_ref()
                .is_some_and(|q| q.unclean_leader_election),
        }
    }

    /// Whether this controller is the active one of its quorum.
    fn is_active(&self) -> bool {
        match &self.backend {
            Backend::Local(_) => true,
            Backend::Raft(b) => {
                b.raft.metrics().borrow().current_leader == Some(self.config.node_id as u64)
            }
            Backend::Observer(_) => false,
        }
    }
}

impl Controller {
    /// The records fencing `broker` in `image` (none if it is fenced already), and how
    /// many partition changes they carry.
    fn fence(&self, image: &MetadataImage, broker: i32) -> (Vec<MetadataRecord>, usize) {
        if image.fenced_brokers.contains(&broker) || !image.brokers.contains_key(&broker) {
            return (Vec::new(), 0);
        }
        let record = MetadataRecord::FenceBroker { node_id: broker };
        let mut fenced = image.clone();
        fenced
            .replay(&record)
            .expect("a registered broker can be fenced");
        let changes = remove_broker(&fenced, broker, &|t| self.unclean_allowed(t));
        let moved = changes.len();
        let mut records = vec![record];
        records.extend(changes);
        (records, moved)
    }

    /// The records unfencing `broker` and electing the leaders it makes possible.
    pub(crate) fn unfence(
        &self,
        image: &MetadataImage,
        broker: i32,
    ) -> (Vec<MetadataRecord>, usize) {
        if !image.fenced_brokers.contains(&broker) {
            return (Vec::new(), 0);
        }
        let record = MetadataRecord::UnfenceBroker { node_id: broker };
        let mut unfenced = image.clone();
        unfenced.replay(&record).expect("unfencing always applies");
        let elections = elect_offline_leaders(&unfenced, &|t| self.unclean_allowed(t));
        let moved = elections.len();
        let mut records = vec![record];
        records.extend(elections);
        (records, moved)
    }
}

/// The active controller's session check, on its own thread (changes are committed
/// with blocking waits), every quarter session, until the controller is dropped; and,
/// every `rebalance_interval`, its preferred-leader rebalancing.
pub(crate) fn spawn_session_checker(
    controller: Weak<Controller>,
    session_timeout: Duration,
    rebalance_interval: Option<Duration>,
) {
    let period = (session_timeout / 4).max(Duration::from_millis(50));
    let mut last_rebalance = Instant::now();
    let spawned = std::thread::Builder::new()
        .name("controller-sessions".into())
        .spawn(move || loop {
            std::thread::sleep(period);
            let Some(controller) = controller.upgrade() else {
                return;
            };
            if controller.is_shut_down() {
                return;
            }
            // Commits build their timeouts in the quorum's runtime.
            let _runtime = match &controller.backend {
                Backend::Raft(b) => Some(b.runtime.enter()),
                Backend::Observer(o) => Some(o.runtime.enter()),
                Backend::Local(_) => None,
            };
            let now = Instant::now();
            controller.fence_expired_sessions(session_timeout, now);
            if rebalance_interval.is_some_and(|every| now.duration_since(last_rebalance) >= every) {
                last_rebalance = now;
                if controller.is_active() {
                    controller.balance_partition_leaders();
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("Cannot start the broker session checker: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::NO_LEADER as NO_LEADER_ID;
    use crate::{BrokerInfo, CreateTopicSpec};
    use std::sync::Arc;

    const SESSION: Duration = Duration::from_secs(9);

    /// An embedded controller with brokers 1-3 registered and a topic with one
    /// partition replicated on all three, led by broker 1.
    fn three_brokers(dir: &std::path::Path) -> Arc<Controller> {
        let c = crate::tests::controller(dir);
        for node_id in 2..=3 {
            c.register_broker(BrokerInfo {
                node_id,
                host: "localhost".into(),
                port: 9090 + node_id,
                rack: None,
                listeners: Vec::new(),
            })
            .unwrap();
        }
        let spec = CreateTopicSpec {
            name: "orders".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: [(0, vec![1, 2, 3])].into(),
            ..Default::default()
        };
        c.create_topic(&spec, false).unwrap();
        c
    }

    fn partition(c: &Controller) -> (i32, i32, Vec<i32>) {
        let image = c.image();
        let p = &image.topic("orders").unwrap().partitions[0];
        (p.leader, p.leader_epoch, p.isr.clone())
    }

    #[test]
    fn an_expired_session_fences_the_broker_and_moves_its_leadership() {
        let dir = tempfile::tempdir().unwrap();
        let c = three_brokers(dir.path());
        assert_eq!(partition(&c), (1, 0, vec![1, 2, 3]));
        let start = Instant::now();
        for b in 1..=3 {
            c.session_started_at(b, start);
        }
        // Brokers 2 and 3 keep heartbeating; 1 falls silent.
        let later = start + SESSION + Duration::from_millis(1);
        c.session_started_at(2, later);
        c.session_started_at(3, later);
        c.fence_expired_sessions(SESSION, start + SESSION);
        assert!(
            c.image().fenced_brokers.is_empty(),
            "not expired at exactly the timeout"
        );
        c.fence_expired_sessions(SESSION, later);
        assert_eq!(c.image().fenced_brokers, [1].into());
        assert_eq!(partition(&c), (2, 1, vec![2, 3]));
        assert_eq!(c.image().live_brokers().len(), 2);

        // Its heartbeat unfences it; it rejoins the ISR later, as a follower.
        c.broker_heartbeat(1).unwrap();
        assert!(c.image().fenced_brokers.is_empty());
        assert_eq!(partition(&c), (2, 1, vec![2, 3]));
    }

    #[test]
    fn the_last_in_sync_replica_stays_in_the_isr_and_leads_again_on_return() {
        let dir = tempfile::tempdir().unwrap();
        let c = three_brokers(dir.path());
        c.controlled_shutdown(2).unwrap();
        c.controlled_shutdown(3).unwrap();
        assert_eq!(partition(&c), (1, 0, vec![1]));
        // Kafka keeps the last ISR member (it may hold records no one else has): the
        // partition is offline, not led by a replica that may have lost data.
        c.controlled_shutdown(1).unwrap();
        assert_eq!(partition(&c), (NO_LEADER_ID, 1, vec![1]));
        // A returning out-of-sync replica does not take over (no unclean election)…
        c.broker_heartbeat(2).unwrap();
        assert_eq!(partition(&c).0, NO_LEADER_ID);
        // …the last in-sync one does.
        c.broker_heartbeat(1).unwrap();
        assert_eq!(partition(&c), (1, 2, vec![1]));
    }

    #[test]
    fn heartbeats_and_shutdowns_from_unregistered_brokers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = three_brokers(dir.path());
        let before = c.image();
        for err in [
            c.broker_heartbeat(7).unwrap_err(),
            c.controlled_shutdown(7).unwrap_err(),
        ] {
            assert_eq!(err.kafka_error_code(), 77, "{err}");
        }
        assert_eq!(c.image().brokers.len(), before.brokers.len());
        assert!(c.image().fenced_brokers.is_empty());
    }
}
