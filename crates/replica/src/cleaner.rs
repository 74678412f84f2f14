//! The log cleaner threads' work (Kafka's `LogCleanerManager` and `CleanerThread`):
//! pick the dirtiest compacted log, clean it without its partition's lock (see
//! `ottla_log::cleaner`), swap the result in, and go on until no log needs it.
//!
//! The partition's log lock is taken twice per cleaning, briefly: shared to plan
//! ([`crate::Partition::cleaning_plan`]; appends wait, reads do not) and exclusive to
//! swap ([`crate::Partition::swap_cleaned`]: renames, directory fsyncs and in-memory
//! bookkeeping, no segment data read or written). Reading the segments, writing the
//! cleaned ones and building their indexes ([`clean`]) happen with no lock held, so
//! produce and fetch go on meanwhile; how long each swap held the lock is logged with
//! the cleaning's summary (`Log::last_cleaning` keeps it).

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

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use ottla_protocol::batch::BatchIter;
    use ottla_protocol::compression::Compression;
    use ottla_protocol::records::{build_record_batch, decode_records, Record};
    use uuid::Uuid;

    use super::*;
    use crate::{FetchIsolation, Partition, PartitionConfig};

    /// (offset, key, value) of one record.
    type Entry = (i64, Vec<u8>, Vec<u8>);

    fn append(p: &Partition, key: &str, value: &str) -> Entry {
        let r = Record {
            offset: 0,
            timestamp: now_ms(),
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        };
        let batch = build_record_batch(&[r], Compression::None, -1, -1, -1);
        let appended = p.append_as_leader(batch, -1).unwrap();
        (
            appended.result.base_offset,
            key.as_bytes().to_vec(),
            value.as_bytes().to_vec(),
        )
    }

    /// What a fetch from `offset` returns (at most one batch when `one`).
    fn fetch(p: &Partition, offset: i64, one: bool) -> Vec<Entry> {
        let max_bytes = if one { 1 } else { usize::MAX >> 1 };
        let read = p
            .read(offset, max_bytes, FetchIsolation::HighWatermark, true)
            .unwrap();
        let bytes = read.records.to_bytes().unwrap();
        let mut out = Vec::new();
        for batch in BatchIter::new(&bytes) {
            for r in decode_records(&batch.unwrap(), 1 << 24).unwrap() {
                out.push((r.offset, r.key.unwrap(), r.value.unwrap()));
            }
        }
        out
    }

    /// Below `end` the latest record of each key there; from `end` on, every record.
    fn model(appended: &[Entry], end: i64) -> Vec<Entry> {
        let mut latest = HashMap::new();
        for (offset, key, _) in appended.iter().filter(|e| e.0 < end) {
            latest.insert(key.clone(), *offset);
        }
        appended
            .iter()
            .filter(|e| e.0 >= end || latest[&e.1] == e.0)
            .cloned()
            .collect()
    }

    /// Issue 11, through the cleaner thread's own loop: once the plan is taken, the
    /// partition's lock is free until the swap. At the point between the cleaning and
    /// its swap (the cleaned files written, not swapped in), another thread appends to
    /// and reads from the partition, which would block (and fail the test after a
    /// timeout) if the cleaner held the lock. After the swap every append is at the
    /// offset it got, the cleaned part holds the latest value of each key, and the
    /// partition reopens after a crash (no clean shutdown) to the same records.
    #[test]
    fn appends_and_reads_go_on_between_the_plan_and_the_swap() {
        let dir = tempfile::tempdir().unwrap();
        let topic_id = Uuid::new_v4();
        let config = PartitionConfig {
            log: ottla_log::LogConfig {
                segment_bytes: 600,
                compact: true,
                retention_ms: -1,
                ..ottla_log::LogConfig::default()
            },
            compacted: true,
            ..PartitionConfig::default()
        };
        let leader = crate::tests::leader_here();
        let open = |replicas: &ReplicaManager| {
            replicas
                .ensure_partition("compacted", topic_id, 0, config.clone(), leader.clone())
                .unwrap()
        };
        let replicas = ReplicaManager::open(vec![dir.path().to_path_buf()]).unwrap();
        let p = open(&replicas);
        let mut appended = Vec::new();
        for i in 0..60 {
            appended.push(append(&p, &format!("k{}", i % 4), &format!("v{i}")));
        }
        let before = appended.clone();
        let during: RefCell<Vec<Entry>> = RefCell::new(Vec::new());
        let calls = Cell::new(0);
        let cleaner = LogCleaner::new(CleanerConfig {
            threads: 1,
            dedupe_buffer_bytes: 1 << 20,
            crash_after_swap_commit: false,
        });
        let stopping = || {
            calls.set(calls.get() + 1);
            match calls.get() {
                1 => false,
                // After `clean`, before the swap: the cleaned files are written.
                2 => {
                    let names: Vec<String> = std::fs::read_dir(p.dir())
                        .unwrap()
                        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect();
                    assert!(
                        names.iter().any(|n| n.ends_with(".log.cleaned")),
                        "{names:?}"
                    );
                    let (tx, rx) = mpsc::channel();
                    let other = Arc::clone(&p);
                    let before = before.clone();
                    std::thread::spawn(move || {
                        assert_eq!(fetch(&other, 0, false), before);
                        let middle = &before[before.len() / 2];
                        assert_eq!(fetch(&other, middle.0, true), vec![middle.clone()]);
                        let mut new = Vec::new();
                        for i in 0..30 {
                            let e = append(&other, &format!("k{}", i % 6), &format!("during{i}"));
                            assert_eq!(fetch(&other, e.0, true), vec![e.clone()]);
                            new.push(e);
                        }
                        let _ = tx.send(new);
                    });
                    let new = rx.recv_timeout(Duration::from_secs(60)).expect(
                        "appends and reads between the cleaning and its swap did not finish: \
                         is the partition's lock held?",
                    );
                    during.borrow_mut().extend(new);
                    false
                }
                _ => true,
            }
        };
        assert_eq!(cleaner.clean_dirty_logs(&replicas, stopping), 1);
        let during = during.into_inner();
        assert_eq!(during.len(), 30);
        let first_during = appended.len() as i64;
        for (i, e) in during.iter().enumerate() {
            assert_eq!(
                e.0,
                first_during + i as i64,
                "offsets run on from the log end"
            );
        }
        appended.extend(during.iter().cloned());
        let end = p.cleaner_checkpoint().unwrap();
        assert!(0 < end && end <= first_during, "cleaned up to {end}");
        let expected = model(&appended, end);
        assert_eq!(fetch(&p, 0, false), expected);
        let cleaned_part: Vec<&Entry> = expected.iter().filter(|e| e.0 < end).collect();
        assert!(
            cleaned_part.len() <= 4,
            "one record per key: {cleaned_part:?}"
        );
        for e in &during {
            assert_eq!(fetch(&p, e.0, true), vec![e.clone()]);
        }

        // A crash: no clean shutdown, no checkpoint since the cleaning.
        drop(p);
        drop(replicas);
        let replicas = ReplicaManager::open(vec![dir.path().to_path_buf()]).unwrap();
        let p = open(&replicas);
        assert_eq!(p.log_end_offset(), appended.len() as i64);
        assert_eq!(fetch(&p, 0, false), expected);
    }
}
