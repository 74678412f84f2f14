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
use crate::{Backend, Controller, ControllerError, ControllerOp, MetadataImage};

/// Kafka's `broker.session.timeout.ms` default.
pub const DEFAULT_BROKER_SESSION_TIMEOUT: Duration = Duration::from_millis(9000);

/// When the active controller last heard from each broker.
#[derive(Debug, Default)]
pub(crate) struct BrokerSessions {
    last_heartbeat: Mutex<HashMap<i32, Instant>>,
}

impl Controller {
    /// A session starts (or goes on) for `node_id` now.
    pub(crate) fn sessions_started(&self, node_id: i32) {
        self.sessions
            .last_heartbeat
            .lock()
            .insert(node_id, Instant::now());
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
        self.sessions_started(node_id);
        if !self.image().fenced_brokers.contains(&node_id) {
            return Ok(());
        }
        let moved = self.commit(|image| Ok(unfence(image, node_id)))?;
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
        self.sessions.last_heartbeat.lock().remove(&node_id);
        let moved = self.commit(|image| Ok(fence(image, node_id)))?;
        tracing::info!(
            "[QuorumController id={}] Broker {node_id} is in controlled shutdown: moved {moved} partitions off it and fenced it",
            self.config.node_id
        );
        Ok(())
    }

    /// On the active controller: fence the brokers whose session expired. Elsewhere:
    /// forget every session (the next active controller starts them afresh).
    fn fence_expired_sessions(&self, session_timeout: Duration) {
        if !self.is_active() {
            self.sessions.last_heartbeat.lock().clear();
            return;
        }
        let image = self.image();
        let now = Instant::now();
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
            match self.commit(|image| Ok(fence(image, broker))) {
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

    /// Whether this controller is the active one of its quorum.
    fn is_active(&self) -> bool {
        match &self.backend {
            Backend::Local(_) => true,
            Backend::Raft(b) => {
                b.raft.metrics().borrow().current_leader == Some(self.config.node_id as u64)
            }
        }
    }
}

/// The records fencing `broker` in `image` (none if it is fenced already), and how many
/// partition changes they carry.
fn fence(image: &MetadataImage, broker: i32) -> (Vec<MetadataRecord>, usize) {
    if image.fenced_brokers.contains(&broker) || !image.brokers.contains_key(&broker) {
        return (Vec::new(), 0);
    }
    let record = MetadataRecord::FenceBroker { node_id: broker };
    let mut fenced = image.clone();
    fenced
        .replay(&record)
        .expect("a registered broker can be fenced");
    let changes = remove_broker(&fenced, broker);
    let moved = changes.len();
    let mut records = vec![record];
    records.extend(changes);
    (records, moved)
}

/// The records unfencing `broker` and electing leaders it makes possible.
pub(crate) fn unfence(image: &MetadataImage, broker: i32) -> (Vec<MetadataRecord>, usize) {
    if !image.fenced_brokers.contains(&broker) {
        return (Vec::new(), 0);
    }
    let record = MetadataRecord::UnfenceBroker { node_id: broker };
    let mut unfenced = image.clone();
    unfenced.replay(&record).expect("unfencing always applies");
    let elections = elect_offline_leaders(&unfenced);
    let moved = elections.len();
    let mut records = vec![record];
    records.extend(elections);
    (records, moved)
}

/// The active controller's session check, on its own thread (changes are committed
/// with blocking waits), every quarter session, until the controller is dropped.
pub(crate) fn spawn_session_checker(controller: Weak<Controller>, session_timeout: Duration) {
    let period = (session_timeout / 4).max(Duration::from_millis(50));
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
                Backend::Local(_) => None,
            };
            controller.fence_expired_sessions(session_timeout);
        });
    if let Err(e) = spawned {
        tracing::error!("Cannot start the broker session checker: {e}");
    }
}
