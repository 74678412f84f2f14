//! The leader's path to the controller for ISR changes (Kafka's
//! `AlterPartitionManager`): partitions propose an ISR (a follower caught up, or fell
//! behind), proposals queue here, and one task sends whatever has queued as one
//! AlterPartition change. The committed ISR reaches the partition through the metadata
//! publisher like any other change; a proposal the controller refused is forgotten so
//! that the partition proposes again.

use std::sync::Arc;

use ottla_controller::AlterPartitionSpec;
use ottla_replica::{IsrProposal, Partition};
use tokio::sync::mpsc;

use crate::broker::Broker;

/// Proposals waiting to be sent. Each partition has at most one in flight, so this is
/// reached only with that many partitions changing their ISR at once; beyond it a
/// proposal is dropped and made again at the partition's next fetch or shrink check.
pub const MAX_QUEUED_ISR_PROPOSALS: usize = 4096;

/// A proposal and the partition that made it.
type Proposal = (Arc<Partition>, IsrProposal);

/// Where partitions hand their ISR proposals.
pub struct AlterPartitionManager {
    queue: mpsc::Sender<Proposal>,
    /// Taken by the sending task when it starts.
    receiver: parking_lot::Mutex<Option<mpsc::Receiver<Proposal>>>,
}

impl Default for AlterPartitionManager {
    fn default() -> Self {
        let (queue, receiver) = mpsc::channel(MAX_QUEUED_ISR_PROPOSALS);
        AlterPartitionManager {
            queue,
            receiver: parking_lot::Mutex::new(Some(receiver)),
        }
    }
}

impl AlterPartitionManager {
    /// Queue `proposal` of `partition`; never waits.
    pub fn submit(&self, partition: &Arc<Partition>, proposal: IsrProposal) {
        if let Err(e) = self.queue.try_send((partition.clone(), proposal)) {
            let (partition, proposal) = e.into_inner();
            partition.abandon_isr_proposal(&proposal);
        }
    }

    /// The task that sends queued proposals to the controller until `stop` flips.
    pub fn spawn(
        &self,
        broker: Arc<Broker>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let mut receiver = self.receiver.lock().take()?;
        Some(tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    next = receiver.recv() => next,
                    _ = stop.changed() => None,
                };
                let Some(first) = first else { return };
                let mut batch = vec![first];
                while let Ok(next) = receiver.try_recv() {
                    batch.push(next);
                }
                let broker = broker.clone();
                let sent = tokio::select! {
                    sent = tokio::task::spawn_blocking(move || send(&broker, batch)) => sent,
                    // Shutting down: the controller may be gone; do not wait for it.
                    _ = stop.changed() => return,
                };
                if let Err(e) = sent {
                    tracing::error!("AlterPartition task failed: {e}");
                }
            }
        }))
    }
}

/// One AlterPartition change for `batch` (blocking: it waits for the controller).
fn send(broker: &Broker, batch: Vec<Proposal>) {
    let specs: Vec<AlterPartitionSpec> = batch
        .iter()
        .map(|(_, p)| AlterPartitionSpec {
            topic_id: p.topic_id,
            partition: p.partition,
            leader_id: p.leader_id,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: p.new_isr.clone(),
        })
        .collect();
    if let Err(e) = broker.controller.alter_partitions(&specs) {
        tracing::warn!(
            "[AlterPartitionManager id={}] Failed to send AlterPartition for {} partitions: {e}",
            broker.config.node_id,
            specs.len()
        );
    }
    // Committed proposals were applied by the publisher before this returned; what is
    // still pending was refused or lost.
    for (partition, proposal) in batch {
        partition.abandon_isr_proposal(&proposal);
    }
}
