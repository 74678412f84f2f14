//! The log cleaner threads' work (Kafka's `LogCleanerManager` and `CleanerThread`):
//! pick the dirtiest compacted log, clean it without its partition's lock (see
//! `ottla_log::cleaner`), swap the result in, and go on until no log needs it.

use std::collections::HashSet;

use ottla_log::cleaner::clean;
use parking_lot::Mutex;
use uuid::Uuid;

use crate::partition::now_ms;
use crate::ReplicaManager;

/// The broker's `log.cleaner.*` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerConfig {
    /// `log.cleaner.threads`: logs cleaned at the same time.
    pub threads: usize,
    /// `log.cleaner.dedupe.buffer.size`: the offset maps' memory, shared by the threads.
    pub dedupe_buffer_bytes: usize,
    /// Fault injection for crash tests: abort the process as soon as a swap is
    /// committed, before the replaced segments are deleted.
    pub crash_after_swap_commit: bool,
}

/// What the cleaner threads share: which logs are being cleaned, and which failed.
pub struct LogCleaner {
    config: CleanerConfig,
    in_progress: Mutex<HashSet<(Uuid, i32)>>,
    /// Logs whose cleaning failed on bad data: not tried again until a restart
    /// (Kafka's "uncleanable" partitions).
    uncleanable: Mutex<HashSet<(Uuid, i32)>>,
}

impl LogCleaner {
    pub fn new(config: CleanerConfig) -> LogCleaner {
        LogCleaner {
            config,
            in_progress: Mutex::new(HashSet::new()),
            uncleanable: Mutex::new(HashSet::new()),
        }
    }

    pub fn config(&self) -> CleanerConfig {
        self.config
    }

    /// Clean the dirtiest log that needs it, then the next, until none does or
    /// `stopping` says so (checked between logs and before each swap). Returns how
    /// many logs were cleaned.
    pub fn clean_dirty_logs(
        &self,
        replicas: &ReplicaManager,
        stopping: impl Fn() -> bool,
    ) -> usize {
        let mut cleaned = 0;
        let buffer = self.config.dedupe_buffer_bytes / self.config.threads.max(1);
        while !stopping() {
            let now = now_ms();
            let mut best = None;
            {
                let mut in_progress = self.in_progress.lock();
                let uncleanable = self.uncleanable.lock();
                for p in replicas.all() {
                    let key = (p.topic_id, p.index);
                    if in_progress.contains(&key) || uncleanable.contains(&key) {
                        continue;
                    }
                    if let Some(plan) = p.cleaning_plan(now) {
                        let dirtier = best.as_ref().is_none_or(
                            |(_, b): &(_, ottla_log::cleaner::CleaningPlan)| {
                                plan.dirty_ratio > b.dirty_ratio
                            },
                        );
                        if dirtier {
                            best = Some((p, plan));
                        }
                    }
                }
                if let Some((p, _)) = &best {
                    in_progress.insert((p.topic_id, p.index));
                }
            }
            let Some((partition, plan)) = best else {
                break;
            };
            let key = (partition.topic_id, partition.index);
            tracing::debug!(
                "Beginning cleaning of log {} (dirty ratio {:.2})",
                plan.name(),
                plan.dirty_ratio
            );
            let outcome = clean(&plan, buffer);
            drop(plan);
            match outcome {
                Ok(result) if !stopping() => match partition.swap_cleaned(result, || {
                    if self.config.crash_after_swap_commit {
                        tracing::error!(
                            "The crash-after-swap fault is set: aborting after committing the swap of {}",
                            partition.name()
                        );
                        std::process::abort();
                    }
                }) {
                    Ok(true) => {
                        cleaned += 1;
                        // As Kafka's `updateCheckpoints`: the next start resumes here.
                        if let Err(e) = replicas.checkpoint_cleaner_offsets() {
                            tracing::warn!("Failed to write the cleaner offset checkpoint: {e}");
                        }
                    }
                    Ok(false) => {}
                    Err(e) => self.give_up(replicas, &partition, key, &e),
                },
                Ok(_) => {}
                Err(e) => self.give_up(replicas, &partition, key, &e),
            }
            self.in_progress.lock().remove(&key);
        }
        cleaned
    }

    fn give_up(
        &self,
        replicas: &ReplicaManager,
        partition: &crate::Partition,
        key: (Uuid, i32),
        e: &dyn std::fmt::Display,
    ) {
        // A partition deleted meanwhile took its directory along: nothing to report.
        if replicas.get(&key.0, key.1).is_none() {
            return;
        }
        tracing::error!(
            "Unexpected exception thrown when cleaning log {}. Marking its partition ({}) as uncleanable: {e}",
            partition.dir().display(),
            partition.name()
        );
        self.uncleanable.lock().insert(key);
    }
}
