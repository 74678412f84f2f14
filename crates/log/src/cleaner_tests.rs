//! The cleaner against a model: what a compacted log must still hold, computed from
//! what was appended, never from the cleaner's own output.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use ottla_protocol::batch::{BatchIter, RecordBatchMut};
use ottla_protocol::compression::Compression;
use ottla_protocol::control::{build_end_txn_marker, ControlRecordType};
use ottla_protocol::records::{build_record_batch, decode_records, Record};
use tempfile::TempDir;

use crate::cleaner::{clean, clean_with, DEFAULT_DEDUPE_BUFFER_BYTES};
use crate::{Log, LogConfig};

const NOW: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn compacted() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 0,
        compact: true,
        retention_ms: -1,
        // Tombstones stay unless a test says otherwise.
        delete_retention_ms: i64::MAX / 2,
        ..LogConfig::default()
    }
}

/// One appended record as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    offset: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// Append one batch of `(key, value)` records; returns the model's entries.
fn append(log: &mut Log, records: &[(&str, Option<&str>)], codec: Compression) -> Vec<Entry> {
    append_stamped(log, records, codec, NOW)
}

/// [`append`] with every record stamped `timestamp` (CreateTime).
fn append_stamped(
    log: &mut Log,
    records: &[(&str, Option<&str>)],
    codec: Compression,
    timestamp: i64,
) -> Vec<Entry> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            offset: i as i64,
            timestamp,
            key: Some(k.as_bytes().to_vec()),
            value: v.map(|v| v.as_bytes().to_vec()),
            headers: Vec::new(),
        })
        .collect();
    let mut b = build_record_batch(&recs, codec, -1, -1, -1);
    let info = log.append_as_leader(&mut b, 0).unwrap();
    records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Entry {
            offset: info.first_offset + i as i64,
            key: k.as_bytes().to_vec(),
            value: v.map(|v| v.as_bytes().to_vec()),
        })
        .collect()
}

/// Every data record in the log, in order, and how many control batches it holds.
fn contents(log: &Log) -> (Vec<Entry>, usize) {
    let bytes = log
        .read(log.log_start_offset(), usize::MAX >> 1, i64::MAX, true)
        .unwrap();
    let mut out = Vec::new();
    let mut controls = 0;
    for b in BatchIter::new(&bytes) {
        let b = b.unwrap();
        b.validate().unwrap();
        if b.is_control() {
            controls += 1;
            continue;
        }
        for r in decode_records(&b, 1 << 24).unwrap() {
            out.push(Entry {
                offset: r.offset,
                key: r.key.unwrap(),
                value: r.value,
            });
        }
    }
    (out, controls)
}

/// What compaction up to `end` must leave: records at or after `end` all stay, and
/// below it a record stays iff no later record below `end` has its key.
fn model(appended: &[Entry], end: i64) -> Vec<Entry> {
    let mut latest: HashMap<&[u8], i64> = HashMap::new();
    for e in appended.iter().filter(|e| e.offset < end) {
        latest.insert(&e.key, e.offset);
    }
    appended
        .iter()
        .filter(|e| e.offset >= end || latest[e.key.as_slice()] == e.offset)
        .cloned()
        .collect()
}

/// Plan, clean and swap; returns the offset the cleaning covered up to.
fn clean_now(log: &mut Log, force: bool) -> Option<i64> {
    let plan = log.cleaning_plan(NOW, i64::MAX, force)?;
    let cleaned = clean(&plan, DEFAULT_DEDUPE_BUFFER_BYTES).unwrap();
    let end = cleaned.end;
    assert!(
        log.swap_cleaned(cleaned).unwrap(),
        "the log did not change meanwhile"
    );
    Some(end)
}

/// A small deterministic generator (xorshift64*), so a failure replays exactly.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn compaction_keeps_the_latest_record_of_each_key_at_its_offset() {
    let dir = TempDir::new().unwrap();
    let mut log = Log::open(dir.path(), compacted(), 0).unwrap();
    let mut appended = Vec::new();
    for round in 0..40 {
        let v = format!("v{round}");
        let batch: Vec<(&str, Option<&str>)> =
            vec![("a", Some(&v)), ("b", Some(&v)), ("c", Some(&v))];
        appended.extend(append(&mut log, &batch, Compression::None));
    }
    let (size_before, segments_before, end_before) =
        (log.size_bytes(), log.segment_count(), log.log_end_offset());
    assert!(
        segments_before > 5,
        "the test needs several sealed segments"
    );
    let end = clean_now(&mut log, false).expect("a fully dirty log is worth cleaning");
    let (got, _) = contents(&log);
    assert_eq!(got, model(&appended, end));
    assert_eq!(
        log.log_end_offset(),
        end_before,
        "cleaning never moves the log end"
    );
    assert_eq!(log.log_start_offset(), 0, "nor the log start");
    assert!(
        log.size_bytes() < size_before / 2,
        "{} of {size_before} bytes left",
        log.size_bytes()
    );
    // Cleaned again with nothing new: nothing is dirty, so nothing is planned.
    assert!(log.cleaning_plan(NOW, i64::MAX, false).is_none());
    // A fetch from inside a removed range starts at the next record kept.
    let bytes = log.read(1, 1 << 20, i64::MAX, true).unwrap();
    let first = BatchIter::new(&bytes).next().unwrap().unwrap();
    assert!(first.last_offset() >= 1);
    // The next cleaning merges the small cleaned segments (grouped up to
    // segment.bytes, as Kafka groups them by their current sizes).
    for round in 40..60 {
        let v = format!("v{round}");
        appended.extend(append(
            &mut log,
            &[("a", Some(&v)), ("b", Some(&v))],
            Compression::None,
        ));
    }
    let end = clean_now(&mut log, true).unwrap();
    assert_eq!(contents(&log).0, model(&appended, end));
    assert!(
        log.segment_count() < segments_before,
        "{} segments, {segments_before} before",
        log.segment_count()
    );
    // It all survives a reopen.
    drop(log);
    let log = Log::open(dir.path(), compacted(), 0).unwrap();
    assert_eq!(contents(&log).0, model(&appended, end));
}

#[test]
fn a_random_history_of_updates_and_tombstones_matches_the_model() {
    for seed in 1..=8u64 {
        let dir = TempDir::new().unwrap();
        let mut log = Log::open(dir.path(), compacted(), 0).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut appended = Vec::new();
        let mut cleaned_to = 0;
        let keys: Vec<String> = (0..12).map(|k| format!("key-{k}")).collect();
        let codecs = [
            Compression::None,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Gzip,
        ];
        for step in 0..120 {
            let n = 1 + rng.below(4) as usize;
            let values: Vec<String> = (0..n).map(|i| format!("s{step}-{i}")).collect();
            let batch: Vec<(&str, Option<&str>)> = (0..n)
                .map(|i| {
                    let key = keys[rng.below(keys.len() as u64) as usize].as_str();
                    let tombstone = rng.below(6) == 0;
                    (key, (!tombstone).then_some(values[i].as_str()))
                })
                .collect();
            let codec = codecs[rng.below(codecs.len() as u64) as usize];
            appended.extend(append(&mut log, &batch, codec));
            if rng.below(15) == 0 {
                if let Some(end) = clean_now(&mut log, true) {
                    cleaned_to = end;
                }
                assert_eq!(
                    contents(&log).0,
                    model(&appended, cleaned_to),
                    "seed {seed}, step {step}"
                );
            }
        }
        if let Some(end) = clean_now(&mut log, true) {
            cleaned_to = end;
        }
        let (got, _) = contents(&log);
        assert_eq!(got, model(&appended, cleaned_to), "seed {seed} at the end");
        // Whatever the history, a reader from the start sees each key's latest value
        // below the cleaned offset exactly once.
        let mut seen: HashMap<&[u8], usize> = HashMap::new();
        for e in got.iter().filter(|e| e.offset < cleaned_to) {
            *seen.entry(&e.key).or_default() += 1;
        }
        assert!(seen.values().all(|&n| n == 1), "seed {seed}: {seen:?}");
    }
}

#[test]
fn tombstones_go_once_past_the_delete_horizon() {
    let dir = TempDir::new().unwrap();
    let config = LogConfig {
        delete_retention_ms: 0,
        ..compacted()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for round in 0..20 {
        let v = format!("v{round}");
        // "gone" is deleted in round 9 and never written again.
        let gone = match round {
            0..=8 => Some(Some(v.as_str())),
            9 => Some(None),
            _ => None,
        };
        let mut batch = vec![("live", Some(v.as_str()))];
        batch.extend(gone.map(|value| ("gone", value)));
        append(&mut log, &batch, Compression::None);
    }
    // The first cleaning keeps the tombstone: no segment was cleaned before it.
    let end = clean_now(&mut log, true).unwrap();
    let (got, _) = contents(&log);
    let gone: Vec<&Entry> = got.iter().filter(|e| e.key == b"gone").collect();
    assert!(
        gone.iter().any(|e| e.value.is_none() && e.offset < end),
        "the tombstone is kept by the first cleaning: {gone:?}"
    );
    // More data, a second cleaning: the tombstone's segment is now older than the
    // horizon (delete.retention.ms = 0), so it goes, and with it every "gone" record.
    std::thread::sleep(std::time::Duration::from_millis(20));
    for round in 0..30 {
        append(
            &mut log,
            &[("live", Some(&format!("w{round}")))],
            Compression::None,
        );
    }
    clean_now(&mut log, true).unwrap();
    let (got, _) = contents(&log);
    assert!(
        got.iter().all(|e| e.key != b"gone" || e.offset >= end),
        "a tombstone past the horizon was removed: {:?}",
        got.iter().filter(|e| e.key == b"gone").collect::<Vec<_>>()
    );
    assert!(got.iter().any(|e| e.key == b"live"));
}

#[test]
fn aborted_transactions_lose_their_records_and_markers_stay() {
    let dir = TempDir::new().unwrap();
    let mut log = Log::open(dir.path(), compacted(), 0).unwrap();
    let txn_batch = |log: &mut Log, pid: i64, key: &str, value: &str| {
        let recs = vec![Record {
            offset: 0,
            timestamp: NOW,
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
        }];
        let mut b = build_record_batch(&recs, Compression::None, pid, 0, 0);
        RecordBatchMut::new(&mut b)
            .unwrap()
            .set_transactional(false);
        log.append_as_leader(&mut b, 0).unwrap().first_offset
    };
    let marker = |log: &mut Log, pid: i64, kind: ControlRecordType| {
        let mut m = build_end_txn_marker(pid, 0, 0, kind, NOW);
        log.append_as_coordinator(&mut m, 0).unwrap();
    };
    let aborted = txn_batch(&mut log, 5, "a", "aborted");
    let committed = txn_batch(&mut log, 6, "b", "committed");
    marker(&mut log, 5, ControlRecordType::Abort);
    marker(&mut log, 6, ControlRecordType::Commit);
    for i in 0..40 {
        append(
            &mut log,
            &[("filler", Some(&format!("{i}")))],
            Compression::None,
        );
    }
    assert_eq!(log.aborted_transactions(0, i64::MAX).len(), 1);
    clean_now(&mut log, true).unwrap();
    let (got, controls) = contents(&log);
    assert!(
        !got.iter().any(|e| e.offset == aborted),
        "aborted data removed"
    );
    assert!(
        got.iter().any(|e| e.offset == committed),
        "committed data kept"
    );
    assert_eq!(controls, 2, "both markers are kept");
    // The aborted-transaction index survives the swap and a reopen.
    drop(log);
    let log = Log::open(dir.path(), compacted(), 0).unwrap();
    assert_eq!(log.aborted_transactions(0, i64::MAX).len(), 1);
}

#[test]
fn an_open_transaction_bounds_the_cleaning() {
    let dir = TempDir::new().unwrap();
    let mut log = Log::open(dir.path(), compacted(), 0).unwrap();
    for i in 0..10 {
        append(&mut log, &[("k", Some(&format!("{i}")))], Compression::None);
    }
    let recs = vec![Record {
        offset: 0,
        timestamp: NOW,
        key: Some(b"k".to_vec()),
        value: Some(b"open".to_vec()),
        headers: Vec::new(),
    }];
    let mut b = build_record_batch(&recs, Compression::None, 9, 0, 0);
    RecordBatchMut::new(&mut b)
        .unwrap()
        .set_transactional(false);
    let open_at = log.append_as_leader(&mut b, 0).unwrap().first_offset;
    for i in 0..40 {
        append(
            &mut log,
            &[("k", Some(&format!("after-{i}")))],
            Compression::None,
        );
    }
    let end = clean_now(&mut log, true).unwrap();
    assert!(
        end <= open_at,
        "cleaned to {end}, past the open transaction at {open_at}"
    );
}

#[test]
fn a_crash_during_the_swap_leaves_a_consistent_log() {
    for committed in [false, true] {
        let dir = TempDir::new().unwrap();
        let mut log = Log::open(dir.path(), compacted(), 0).unwrap();
        let mut appended = Vec::new();
        for round in 0..40 {
            let v = format!("v{round}");
            appended.extend(append(
                &mut log,
                &[("a", Some(&v)), ("b", Some(&v))],
                Compression::None,
            ));
        }
        log.flush().unwrap();
        let plan = log.cleaning_plan(NOW, i64::MAX, true).unwrap();
        let cleaned = clean(&plan, DEFAULT_DEDUPE_BUFFER_BYTES).unwrap();
        let end = cleaned.end;
        // The crash: the process dies before the swap finishes. Uncommitted: only the
        // `.cleaned` files exist. Committed: the `.log.cleaned` became `.log.swap`
        // (and so did its indexes) but no old segment was deleted yet.
        if committed {
            for entry in fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_string();
                if let Some(stem) = name.strip_suffix(".cleaned") {
                    fs::rename(&path, dir.path().join(format!("{stem}.swap"))).unwrap();
                }
            }
        }
        drop(cleaned);
        drop(plan);
        drop(log);
        let log = Log::open(dir.path(), compacted(), i64::MAX).unwrap();
        let expected = if committed {
            model(&appended, end)
        } else {
            appended.clone()
        };
        assert_eq!(contents(&log).0, expected, "committed: {committed}");
        let leftovers: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// Kafka's marker rules: a marker goes only past the delete horizon and only once a
/// pass read no batch of its transaction; so the ABORT marker outlives its (removed)
/// data by one pass, and the COMMIT marker stays while the committed record does and
/// goes the pass after it was superseded. The log reopens with nothing open.
#[test]
fn markers_go_once_their_transactions_have_no_data_left() {
    let dir = TempDir::new().unwrap();
    let config = LogConfig {
        delete_retention_ms: 0,
        ..compacted()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    let txn_batch = |log: &mut Log, pid: i64, key: &str, value: &str| {
        let recs = vec![Record {
            offset: 0,
            timestamp: NOW,
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
        }];
        let mut b = build_record_batch(&recs, Compression::None, pid, 0, 0);
        // Transactional, not control.
        RecordBatchMut::new(&mut b)
            .unwrap()
            .set_transactional(false);
        log.append_as_leader(&mut b, 0).unwrap();
    };
    let marker = |log: &mut Log, pid: i64, kind: ControlRecordType| {
        let mut m = build_end_txn_marker(pid, 0, 0, kind, NOW);
        log.append_as_coordinator(&mut m, 0).unwrap();
    };
    let filler = |log: &mut Log, tag: &str| {
        for i in 0..30 {
            append(
                log,
                &[("filler", Some(&format!("{tag}{i}")))],
                Compression::None,
            );
        }
    };
    txn_batch(&mut log, 5, "a", "aborted");
    txn_batch(&mut log, 6, "b", "committed");
    marker(&mut log, 5, ControlRecordType::Abort);
    marker(&mut log, 6, ControlRecordType::Commit);
    filler(&mut log, "x");
    let pass = |log: &mut Log| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        clean_now(log, true).unwrap();
        contents(log)
    };
    // Pass 1 reads both transactions' data: both markers stay.
    let (got, controls) = pass(&mut log);
    assert_eq!(log.aborted_transactions(0, i64::MAX).len(), 1);
    assert!(!got.iter().any(|e| e.key == b"a"), "aborted data removed");
    assert!(got.iter().any(|e| e.key == b"b"), "committed data kept");
    assert_eq!(controls, 2);
    // "b" is superseded; pass 2 no longer finds the aborted data: the ABORT marker goes,
    // the COMMIT marker stays (its batch was still read in this pass).
    append(&mut log, &[("b", Some("later"))], Compression::None);
    filler(&mut log, "y");
    let (got, controls) = pass(&mut log);
    assert_eq!(
        got.iter()
            .filter(|e| e.key == b"b")
            .map(|e| e.value.clone())
            .collect::<Vec<_>>(),
        vec![Some(b"later".to_vec())]
    );
    assert_eq!(controls, 1, "the ABORT marker went");
    // And with it the aborted transaction's entry: a read_committed consumer told of it
    // would skip the producer's records until a marker that no longer exists.
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    filler(&mut log, "z");
    let (_, controls) = pass(&mut log);
    assert_eq!(
        controls, 0,
        "the COMMIT marker went the pass after its data"
    );
    let end = log.log_end_offset();
    assert_eq!(log.first_unstable_offset(), None);
    drop(log);
    let log = Log::open(dir.path(), config, 0).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(
        log.first_unstable_offset(),
        None,
        "no transaction left open by the cleaning"
    );
    assert!(
        log.aborted_transactions(0, i64::MAX).is_empty(),
        "nor in the .txnindex files"
    );
}

/// The `.log` files in `dir` as (base offset, size), by base offset: what is on disk,
/// not what the log believes.
fn logs_on_disk(dir: &Path) -> Vec<(i64, u64)> {
    let mut logs: Vec<(i64, u64)> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().ok()?;
            let base = name.strip_suffix(".log")?.parse().ok()?;
            Some((base, entry.metadata().unwrap().len()))
        })
        .collect();
    logs.sort_unstable();
    logs
}

/// (dirty, cleanable) bytes by the files on disk: every segment but the active (last)
/// one is cleanable, and those based at or after `first_dirty` are dirty.
fn dirty_and_cleanable_bytes(dir: &Path, first_dirty: i64) -> (u64, u64) {
    let mut logs = logs_on_disk(dir);
    logs.pop();
    let dirty = logs
        .iter()
        .filter(|(base, _)| *base >= first_dirty)
        .map(|(_, size)| size)
        .sum();
    (dirty, logs.iter().map(|(_, size)| size).sum())
}

/// `min.cleanable.dirty.ratio` as Kafka's `LogCleanerManager.grabFilthiestCompactedLog`
/// applies it: a log is chosen when its dirty bytes are more than that share of its
/// cleanable bytes, and not at the ratio itself or below it.
#[test]
fn a_log_is_chosen_only_once_its_dirty_ratio_exceeds_min_cleanable_dirty_ratio() {
    let dir = TempDir::new().unwrap();
    let mut log = Log::open(dir.path(), compacted(), 0).unwrap();
    let mut appended = Vec::new();
    // A clean head of distinct keys: the cleaning keeps all of it.
    for i in 0..30 {
        let key = format!("key-{i:02}");
        appended.extend(append(
            &mut log,
            &[(&key, Some("first"))],
            Compression::None,
        ));
    }
    let first_dirty = *log.segment_base_offsets().last().unwrap();
    assert_eq!(clean_now(&mut log, true), Some(first_dirty));
    assert!(log.cleaning_plan(NOW, i64::MAX, false).is_none());
    // Updates of those keys, one at a time, checked at each step against ratios just
    // below, at and just above the one the files on disk give.
    let (mut below, mut above) = (0, 0);
    let mut i = 0;
    while above < 2 {
        let (key, value) = (format!("key-{:02}", i % 30), format!("update-{i}"));
        appended.extend(append(&mut log, &[(&key, Some(&value))], Compression::None));
        i += 1;
        let (dirty, cleanable) = dirty_and_cleanable_bytes(dir.path(), first_dirty);
        if dirty == 0 {
            // Only the active segment is dirty, and it is never cleaned.
            assert!(log.cleaning_plan(NOW, i64::MAX, false).is_none());
            continue;
        }
        let ratio = dirty as f64 / cleanable as f64;
        for (min, chosen) in [(ratio - 0.01, true), (ratio, false), (ratio + 0.01, false)] {
            log.set_config(LogConfig {
                min_cleanable_dirty_ratio: min,
                ..compacted()
            });
            let plan = log.cleaning_plan(NOW, i64::MAX, false);
            assert_eq!(
                plan.is_some(),
                chosen,
                "dirty ratio {ratio} ({dirty} of {cleanable} bytes), min.cleanable.dirty.ratio {min}"
            );
            if let Some(plan) = plan {
                assert_eq!(plan.dirty_ratio, ratio);
            }
        }
        log.set_config(compacted());
        let chosen = log.cleaning_plan(NOW, i64::MAX, false).is_some();
        assert_eq!(chosen, ratio > 0.5, "dirty ratio {ratio}, default 0.5");
        if chosen {
            above += 1;
        } else {
            below += 1;
        }
    }
    assert!(below > 0, "no step was below the default ratio");
    let end = clean_now(&mut log, false).unwrap();
    assert_eq!(contents(&log).0, model(&appended, end));
}

/// `max.compaction.lag.ms` as Kafka's `LogCleanerManager.maxCompactionDelay`: a log
/// below `min.cleanable.dirty.ratio` is chosen, not forced, once the first batch of its
/// oldest dirty segment is older than the lag (measured from that batch, not from the
/// segment's newest record), and the same after a restart, when the segment's batches
/// were not scanned.
#[test]
fn a_log_below_the_dirty_ratio_is_chosen_once_its_oldest_dirty_batch_is_older_than_max_compaction_lag(
) {
    let config = LogConfig {
        max_compaction_lag_ms: HOUR,
        ..compacted()
    };
    let dir = TempDir::new().unwrap();
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    // Record time: a minute per offset, from ten hours ago.
    let stamp = |offset: i64| NOW - 10 * HOUR + offset * MINUTE;
    let mut appended = Vec::new();
    let mut add = |log: &mut Log, key: &str, value: &str| {
        let ts = stamp(log.log_end_offset());
        appended.extend(append_stamped(
            log,
            &[(key, Some(value))],
            Compression::None,
            ts,
        ));
    };
    for i in 0..30 {
        add(&mut log, &format!("key-{i:02}"), "first");
    }
    let first_dirty = *log.segment_base_offsets().last().unwrap();
    assert_eq!(clean_now(&mut log, true), Some(first_dirty));
    // Updates until the first dirty segment is sealed (the active one never counts).
    let mut i = 0;
    while *log.segment_base_offsets().last().unwrap() == first_dirty {
        add(
            &mut log,
            &format!("key-{:02}", i % 30),
            &format!("update-{i}"),
        );
        i += 1;
    }
    let sealed_end = *log.segment_base_offsets().last().unwrap();
    let (dirty, cleanable) = dirty_and_cleanable_bytes(dir.path(), first_dirty);
    assert!(
        dirty > 0 && (dirty as f64) < 0.5 * cleanable as f64,
        "below the default ratio: {dirty} dirty of {cleanable} bytes"
    );
    // Record times grow with offsets: the oldest dirty batch is the first of the first
    // dirty segment, and that segment's newest record is younger.
    let oldest = stamp(first_dirty);
    assert!(stamp(sealed_end - 1) > oldest + 1);
    let chosen = |log: &Log, now: i64| log.cleaning_plan(now, i64::MAX, false).is_some();
    for phase in ["before a restart", "after a restart"] {
        assert!(
            !chosen(&log, oldest + HOUR - 1),
            "{phase}: younger than the lag"
        );
        assert!(
            !chosen(&log, oldest + HOUR),
            "{phase}: exactly the lag old is not older than it"
        );
        assert!(
            chosen(&log, oldest + HOUR + 1),
            "{phase}: the oldest dirty batch is older than max.compaction.lag.ms"
        );
        if phase == "before a restart" {
            // Everything flushed: the sealed segments are trusted, not scanned, at open.
            log.flush().unwrap();
            let checkpoint = log.cleaner_checkpoint().unwrap();
            let recovery_point = log.recovery_point();
            drop(log);
            log = Log::open(dir.path(), config.clone(), recovery_point).unwrap();
            log.resume_cleaning_from(checkpoint);
        }
    }
    let plan = log
        .cleaning_plan(oldest + HOUR + 1, i64::MAX, false)
        .unwrap();
    let cleaned = clean(&plan, DEFAULT_DEDUPE_BUFFER_BYTES).unwrap();
    assert_eq!(cleaned.end, sealed_end);
    drop(plan);
    assert!(log.swap_cleaned(cleaned).unwrap());
    assert_eq!(contents(&log).0, model(&appended, sealed_end));
}

/// Kafka's `maxCompactionDelay` looks at the first batch of every dirty segment but
/// the active one, cleanable or not: a log is chosen when a dirty segment past the high
/// watermark (not cleanable yet) holds a batch older than `max.compaction.lag.ms`, as
/// long as something before it is cleanable; the active segment's batches do not count.
#[test]
fn max_compaction_lag_counts_the_first_batch_of_every_dirty_segment_but_the_active_one() {
    let config = LogConfig {
        max_compaction_lag_ms: HOUR,
        ..compacted()
    };
    let dir = TempDir::new().unwrap();
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    // Record time going backwards (producers' clocks disagree): a minute per offset.
    let stamp = |offset: i64| NOW - offset * MINUTE;
    let add = |log: &mut Log, key: &str, value: &str| {
        let ts = stamp(log.log_end_offset());
        append_stamped(log, &[(key, Some(value))], Compression::None, ts);
    };
    for i in 0..30 {
        add(&mut log, &format!("key-{i:02}"), "first");
    }
    let first_dirty = *log.segment_base_offsets().last().unwrap();
    assert_eq!(clean_now(&mut log, true), Some(first_dirty));
    // Two dirty segments sealed, then one record in the active one.
    let mut i = 0;
    while log
        .segment_base_offsets()
        .iter()
        .filter(|&&b| b >= first_dirty)
        .count()
        < 3
    {
        add(
            &mut log,
            &format!("key-{:02}", i % 30),
            &format!("update-{i}"),
        );
        i += 1;
    }
    let bases = log.segment_base_offsets();
    let (second, active) = (bases[bases.len() - 2], bases[bases.len() - 1]);
    // The high watermark at the second dirty segment: only the first one is cleanable.
    let high_watermark = second;
    let sizes = logs_on_disk(dir.path());
    let size_below = |end: i64| -> u64 { sizes.iter().filter(|l| l.0 < end).map(|l| l.1).sum() };
    let (dirty, cleanable) = (
        size_below(second) - size_below(first_dirty),
        size_below(second),
    );
    assert!(
        (dirty as f64) < 0.5 * cleanable as f64,
        "below the default ratio: {dirty} dirty of {cleanable} bytes"
    );
    // The second dirty segment's first batch is the oldest outside the active segment.
    let oldest = stamp(second);
    assert!(stamp(active) < oldest && stamp(first_dirty) > oldest);
    let plan = |now: i64| log.cleaning_plan(now, high_watermark, false);
    assert!(plan(oldest + HOUR).is_none(), "not older than the lag yet");
    let plan = plan(oldest + HOUR + 1).expect("the oldest dirty batch is past the lag");
    assert_eq!(
        plan.sources.last().unwrap().end,
        second,
        "cleanable up to the watermark"
    );
}

/// `min.compaction.lag.ms` as Kafka's `LogCleanerManager.cleanableOffsets`: the
/// cleanable part ends at the first dirty segment whose newest record is not older
/// than the lag, so every record from that segment on stays, even those a later
/// record supersedes; a log whose dirty segments are all that young is not cleaned
/// at all, even when forced.
#[test]
fn a_dirty_segment_younger_than_min_compaction_lag_is_not_cleaned() {
    let config = LogConfig {
        min_compaction_lag_ms: HOUR,
        ..compacted()
    };
    {
        let dir = TempDir::new().unwrap();
        let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
        let young = NOW - HOUR + 1;
        for i in 0..40 {
            append_stamped(
                &mut log,
                &[("k", Some(&format!("{i}")))],
                Compression::None,
                young,
            );
        }
        assert!(log.segment_count() > 3);
        assert!(
            log.cleaning_plan(NOW, i64::MAX, true).is_none(),
            "every dirty segment is younger than the lag"
        );
        // A millisecond later the newest record is exactly the lag old: cleanable.
        let plan = log.cleaning_plan(NOW + 1, i64::MAX, true).unwrap();
        assert_eq!(
            plan.sources.last().unwrap().end,
            *log.segment_base_offsets().last().unwrap()
        );
    }
    let dir = TempDir::new().unwrap();
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let mut appended = Vec::new();
    for (round, ts) in (0..60).map(|r| {
        (
            r,
            if r < 30 {
                NOW - 2 * HOUR
            } else {
                NOW - 30 * MINUTE
            },
        )
    }) {
        let value = format!("{round}");
        appended.extend(append_stamped(
            &mut log,
            &[("a", Some(&value)), ("b", Some(&value))],
            Compression::None,
            ts,
        ));
    }
    let young_from = appended[60].offset;
    // The cleanable part ends at the segment holding the first young record.
    let bases: Vec<i64> = logs_on_disk(dir.path()).iter().map(|l| l.0).collect();
    let young_segment = *bases.iter().rfind(|&&b| b <= young_from).unwrap();
    assert!(young_segment > 0, "old sealed segments come first");
    assert!(
        bases.iter().filter(|&&b| b > young_segment).count() >= 2,
        "young sealed segments follow: {bases:?}"
    );
    assert_eq!(clean_now(&mut log, true), Some(young_segment));
    let (got, _) = contents(&log);
    assert_eq!(got, model(&appended, young_segment));
    // What cleaning the young segments too would have removed is still there.
    assert_ne!(
        got,
        model(&appended, *bases.last().unwrap()),
        "the young records were compacted"
    );
    assert_eq!(
        got.iter()
            .filter(|e| e.key == b"a" && e.offset >= young_from)
            .count(),
        30
    );
}

/// One transactional record from producer `pid` (epoch 0).
fn append_transactional(log: &mut Log, pid: i64, sequence: i32, key: &str, value: &str) -> Entry {
    let recs = vec![Record {
        offset: 0,
        timestamp: NOW,
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: Vec::new(),
    }];
    let mut b = build_record_batch(&recs, Compression::None, pid, 0, sequence);
    RecordBatchMut::new(&mut b)
        .unwrap()
        .set_transactional(false);
    Entry {
        offset: log.append_as_leader(&mut b, 0).unwrap().first_offset,
        key: key.as_bytes().to_vec(),
        value: Some(value.as_bytes().to_vec()),
    }
}

fn end_transaction(log: &mut Log, pid: i64, kind: ControlRecordType) {
    let mut m = build_end_txn_marker(pid, 0, 0, kind, NOW);
    log.append_as_coordinator(&mut m, 0).unwrap();
}

fn copy_files(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn file_name(base: i64, suffix: &str) -> String {
    format!("{base:020}.{suffix}")
}

/// A log cleaned but not swapped yet: nine sealed two-record segments at 0, 2, … 16
/// and the active one at 18, cleaned in three groups of three sources, each of whose
/// last sources comes out empty. [0, 6) keeps k and l only (its a and b are updated in
/// [6, 12)); [6, 12) keeps a and b (its c and d are updated in [12, 18)); the last
/// source of [12, 18) holds only an aborted transaction, whose ABORT marker opens the
/// active segment.
struct SwapFixture {
    /// The log's directory as a crash right before the swap leaves it.
    before_swap: TempDir,
    config: LogConfig,
    appended: Vec<Entry>,
    aborted: Vec<Entry>,
    /// (base offset, base offsets of its sources) of each group.
    groups: Vec<(i64, Vec<i64>)>,
    end: i64,
    log_end: i64,
    /// The log itself, still open, and its cleaning, for the real swap.
    dir: TempDir,
    log: Log,
    cleaned: crate::cleaner::CleanedLog,
}

fn swap_fixture() -> SwapFixture {
    let one_record = [Record {
        offset: 0,
        timestamp: NOW,
        key: Some(b"k".to_vec()),
        value: Some(b"1".to_vec()),
        headers: Vec::new(),
    }];
    let one = build_record_batch(&one_record, Compression::None, -1, -1, -1).len() as u64;
    let config = LogConfig {
        segment_bytes: 2 * one + one / 2,
        ..compacted()
    };
    let dir = TempDir::new().unwrap();
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    let mut appended = Vec::new();
    for (key, value) in [
        ("k", "1"),
        ("l", "1"),
        ("a", "1"),
        ("b", "1"),
        ("a", "2"),
        ("b", "2"),
        ("a", "3"),
        ("b", "3"),
        ("c", "1"),
        ("d", "1"),
        ("c", "2"),
        ("d", "2"),
        ("c", "3"),
        ("d", "3"),
        ("g", "1"),
        ("h", "1"),
    ] {
        appended.extend(append(&mut log, &[(key, Some(value))], Compression::None));
    }
    let aborted = vec![
        append_transactional(&mut log, 7, 0, "x", "1"),
        append_transactional(&mut log, 7, 1, "y", "1"),
    ];
    appended.extend(aborted.iter().cloned());
    end_transaction(&mut log, 7, ControlRecordType::Abort);
    appended.extend(append(&mut log, &[("z", Some("1"))], Compression::None));
    assert_eq!(
        log.segment_base_offsets(),
        (0..=18).step_by(2).collect::<Vec<i64>>()
    );
    log.flush().unwrap();
    let config = LogConfig {
        segment_bytes: 6 * one,
        ..config
    };
    log.set_config(config.clone());
    let plan = log.cleaning_plan(NOW, i64::MAX, true).unwrap();
    let cleaned = clean(&plan, DEFAULT_DEDUPE_BUFFER_BYTES).unwrap();
    drop(plan);
    let groups: Vec<(i64, Vec<i64>)> = cleaned
        .groups
        .iter()
        .map(|g| (g.base, g.sources.iter().map(|s| s.0).collect()))
        .collect();
    assert_eq!(
        groups,
        vec![
            (0, vec![0, 2, 4]),
            (6, vec![6, 8, 10]),
            (12, vec![12, 14, 16])
        ]
    );
    assert_eq!(cleaned.end, 18);
    let before_swap = TempDir::new().unwrap();
    copy_files(dir.path(), before_swap.path());
    SwapFixture {
        before_swap,
        config,
        appended,
        aborted,
        groups,
        end: 18,
        log_end: log.log_end_offset(),
        dir,
        log,
        cleaned,
    }
}

/// One file-system step of a swap.
#[derive(Debug, Clone)]
enum Step {
    Rename(String, String),
    Unlink(String),
}

impl Step {
    fn apply(&self, dir: &Path) {
        match self {
            Step::Rename(from, to) => fs::rename(dir.join(from), dir.join(to)).unwrap(),
            Step::Unlink(name) => fs::remove_file(dir.join(name)).unwrap(),
        }
    }

    /// The group this step commits: the rename of its `.log.cleaned` to `.log.swap`.
    fn commits(&self, f: &SwapFixture) -> Option<usize> {
        match self {
            Step::Rename(from, to) if to.ends_with(".log.swap") => {
                let base: i64 = from[..20].parse().unwrap();
                f.groups.iter().position(|g| g.0 == base)
            }
            _ => None,
        }
    }
}

impl SwapFixture {
    fn has(&self, name: &str) -> bool {
        self.before_swap.path().join(name).exists()
    }

    /// `<base>.<suffix>` renamed to `<base>.<suffix>.<to>` (or back), for the files
    /// that exist.
    fn renames(&self, base: i64, suffixes: &[&str], from: &str, to: &str) -> Vec<Step> {
        let with = |s: &str, extra: &str| {
            if extra.is_empty() {
                file_name(base, s)
            } else {
                file_name(base, &format!("{s}.{extra}"))
            }
        };
        suffixes
            .iter()
            .filter(|s| self.has(&with(s, CLEANED)) || self.has(&with(s, "")))
            .map(|s| Step::Rename(with(s, from), with(s, to)))
            .collect()
    }

    /// A source's files renamed `.deleted`, the `.log` first.
    fn renames_for_deletion(&self, source: i64) -> Vec<Step> {
        LOG_THEN_INDEXES
            .iter()
            .map(|suffix| file_name(source, suffix))
            .filter(|name| self.has(name))
            .map(|name| Step::Rename(name.clone(), format!("{name}.deleted")))
            .collect()
    }

    /// Every source's `.deleted` files removed (once `file.delete.delay.ms` passed).
    fn removals_of_deleted(&self) -> Vec<Step> {
        self.sources()
            .flat_map(|source| LOG_THEN_INDEXES.map(|suffix| file_name(source, suffix)))
            .filter(|name| self.has(name))
            .map(|name| Step::Unlink(format!("{name}.deleted")))
            .collect()
    }

    fn sources(&self) -> impl Iterator<Item = i64> + '_ {
        self.groups.iter().flat_map(|g| g.1.iter().copied())
    }
}

const CLEANED: &str = "cleaned";
/// A segment's files in the order the swap renames them (the `.log` last: its
/// `.log.swap` is what commits a group).
const INDEXES_THEN_LOG: [&str; 4] = ["index", "timeindex", "txnindex", "log"];
/// A segment's files in the order `Segment::delete_files` and Kafka's
/// `LogSegment.changeFileSuffixes` take them (the `.log` first).
const LOG_THEN_INDEXES: [&str; 4] = ["log", "index", "timeindex", "txnindex"];

/// Ottla's swap (`Log::swap_cleaned`) step by step: every group's `.cleaned` files
/// become `.swap` (the `.log` last), then group by group its sources are renamed
/// `.deleted` (`Segment::rename_for_deletion`, the `.log` first) and its `.swap` files
/// take their final names; the `.deleted` files are removed last (after
/// `file.delete.delay.ms`).
fn ottla_swap_steps(f: &SwapFixture) -> Vec<Step> {
    let mut steps = Vec::new();
    for (base, _) in &f.groups {
        steps.extend(f.renames(*base, &INDEXES_THEN_LOG, CLEANED, "swap"));
    }
    for (base, sources) in &f.groups {
        for &source in sources {
            steps.extend(f.renames_for_deletion(source));
        }
        steps.extend(f.renames(*base, &INDEXES_THEN_LOG, "swap", ""));
    }
    steps.extend(f.removals_of_deleted());
    steps
}

/// Kafka's (`LocalLog.replaceSegments`): `.cleaned` → `.swap` from the last group to
/// the first (each segment's `.log` first), every source renamed `.deleted`, every
/// `.swap` renamed to its final name, then the `.deleted` files removed (after
/// `file.delete.delay.ms`).
fn kafka_swap_steps(f: &SwapFixture) -> Vec<Step> {
    let mut steps = Vec::new();
    for (base, _) in f.groups.iter().rev() {
        steps.extend(f.renames(*base, &LOG_THEN_INDEXES, CLEANED, "swap"));
    }
    for source in f.sources() {
        steps.extend(f.renames_for_deletion(source));
    }
    for (base, _) in &f.groups {
        steps.extend(f.renames(*base, &LOG_THEN_INDEXES, "swap", ""));
    }
    steps.extend(f.removals_of_deleted());
    steps
}

/// What a reader must find once a crash left the groups in `committed` committed: in
/// a committed group's offsets only the records the cleaning keeps (the latest of each
/// key below the cleaned end, and nothing of the aborted transaction), elsewhere every
/// record appended.
fn expected_after_crash(f: &SwapFixture, committed: &[bool]) -> Vec<Entry> {
    let live: Vec<Entry> = f
        .appended
        .iter()
        .filter(|e| !f.aborted.contains(e))
        .cloned()
        .collect();
    let kept: BTreeSet<i64> = model(&live, f.end).iter().map(|e| e.offset).collect();
    f.appended
        .iter()
        .filter(|e| {
            let group = f
                .groups
                .iter()
                .rposition(|g| g.0 <= e.offset && e.offset < f.end);
            match group {
                Some(g) if committed[g] => kept.contains(&e.offset),
                _ => true,
            }
        })
        .cloned()
        .collect()
}

/// Open the log a crash left in `dir` (a copy: opening finishes the swap), with the
/// segments below `recovery_point` trusted, and check what it holds, twice (a second
/// open finds nothing more to repair), then that a new cleaning of it still gives the
/// model.
fn check_recovered(
    f: &SwapFixture,
    crashed: &Path,
    recovery_point: i64,
    expected: &[Entry],
    what: &str,
) {
    let dir = TempDir::new().unwrap();
    copy_files(crashed, dir.path());
    for open in ["first open", "second open"] {
        let log = Log::open(dir.path(), f.config.clone(), recovery_point)
            .unwrap_or_else(|e| panic!("{what}, {open}: {e}"));
        let what = format!("{what}, {open}, recovery point {recovery_point}");
        assert_eq!(contents(&log).0, expected, "{what}");
        assert_eq!(log.log_end_offset(), f.log_end, "{what}");
        assert_eq!(
            log.aborted_transactions(0, i64::MAX).len(),
            1,
            "{what}: the aborted transaction is still known"
        );
        assert_eq!(log.first_unstable_offset(), None, "{what}");
        let leftovers: Vec<String> = file_names(dir.path())
            .into_iter()
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".deleted"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    }
    let mut log = Log::open(dir.path(), f.config.clone(), recovery_point).unwrap();
    clean_now(&mut log, true);
    let live: Vec<Entry> = f
        .appended
        .iter()
        .filter(|e| !f.aborted.contains(e))
        .cloned()
        .collect();
    assert_eq!(
        contents(&log).0,
        model(&live, f.end),
        "{what}: cleaned again"
    );
}

/// Apply the first `done` of `steps` to a copy of the state before the swap; returns
/// the copy and which groups those steps committed.
fn crash_after(f: &SwapFixture, steps: &[Step], done: usize) -> (TempDir, Vec<bool>) {
    let dir = TempDir::new().unwrap();
    copy_files(f.before_swap.path(), dir.path());
    let mut committed = vec![false; f.groups.len()];
    for step in &steps[..done] {
        step.apply(dir.path());
        if let Some(g) = step.commits(f) {
            committed[g] = true;
        }
    }
    (dir, committed)
}

/// A crash after any step of the swap, in Ottla's order or in Kafka's, then a
/// restart: each record that must survive is there exactly once, in offset order, and
/// nothing a committed group removed comes back (obsolete updates, aborted data).
#[test]
fn recovery_from_a_crash_after_any_step_of_the_swap_keeps_each_surviving_record_once() {
    let f = swap_fixture();
    for (order, steps) in [
        ("Ottla's", ottla_swap_steps(&f)),
        ("Kafka's", kafka_swap_steps(&f)),
    ] {
        assert!(steps.len() > 40, "{order}: {steps:?}");
        for done in 0..=steps.len() {
            let (crashed, committed) = crash_after(&f, &steps, done);
            let what = format!(
                "{order} swap, crash after step {done} of {} ({:?})",
                steps.len(),
                done.checked_sub(1).map(|i| &steps[i])
            );
            let expected = expected_after_crash(&f, &committed);
            for recovery_point in [0, f.log_end] {
                check_recovered(&f, crashed.path(), recovery_point, &expected, &what);
            }
        }
    }
}

/// The steps modelled above are the swap `Log::swap_cleaned` does: all of them but the
/// removal of the `.deleted` files leave the files the real swap leaves, the live log
/// reads what recovery gives, and the `.deleted` files go once `file.delete.delay.ms`
/// has passed, not before, leaving what the whole of either model leaves.
#[test]
fn the_modelled_swap_steps_end_where_the_real_swap_does() {
    let f = swap_fixture();
    let ottla_steps = ottla_swap_steps(&f);
    let kafka_steps = kafka_swap_steps(&f);
    let removals = f.removals_of_deleted().len();
    assert!(removals >= 9, "{removals}");
    let swapped = crash_after(&f, &ottla_steps, ottla_steps.len() - removals).0;
    let ottla = crash_after(&f, &ottla_steps, ottla_steps.len()).0;
    let kafka = crash_after(&f, &kafka_steps, kafka_steps.len()).0;
    let expected = expected_after_crash(&f, &[true, true, true]);
    let delay = f.config.file_delete_delay_ms;
    assert_eq!(delay, crate::DEFAULT_FILE_DELETE_DELAY_MS);
    let SwapFixture {
        dir,
        mut log,
        cleaned,
        ..
    } = f;
    let before = crate::now_ms();
    assert!(log.swap_cleaned(cleaned).unwrap());
    assert_eq!(contents(&log).0, expected);
    assert_eq!(file_names(dir.path()), file_names(swapped.path()));
    assert_eq!(log.remove_deleted_files(before + delay - 1), 0);
    assert_eq!(file_names(dir.path()), file_names(swapped.path()));
    assert_eq!(log.remove_deleted_files(crate::now_ms() + delay), 9);
    assert_eq!(file_names(dir.path()), file_names(ottla.path()));
    assert_eq!(file_names(dir.path()), file_names(kafka.path()));
    assert_eq!(contents(&log).0, expected);
}

/// The crash issue 11's audit asked about: every group committed (all `.swap`),
/// nothing deleted yet, and each group's last sources emptied by the cleaning, so the
/// cleaned segment ends below them. Recovery replaces every source of a group, not
/// only those up to the cleaned segment's last record: otherwise a=1, b=1, a=2, b=2,
/// c=1, d=1, c=2, d=2 and the aborted x and y come back.
#[test]
fn a_committed_group_whose_last_sources_came_out_empty_replaces_them_all_after_a_crash() {
    let f = swap_fixture();
    let steps = ottla_swap_steps(&f);
    let commit = steps
        .iter()
        .position(|s| matches!(s, Step::Rename(_, to) if to.ends_with(".deleted")))
        .unwrap();
    let (crashed, committed) = crash_after(&f, &steps, commit);
    assert_eq!(committed, vec![true; 3]);
    let expected = expected_after_crash(&f, &committed);
    let gone: Vec<i64> = vec![2, 3, 4, 5, 8, 9, 10, 11, 16, 17];
    assert!(expected.iter().all(|e| !gone.contains(&e.offset)));
    assert!(
        f.appended
            .iter()
            .filter(|e| gone.contains(&e.offset))
            .count()
            == gone.len()
    );
    check_recovered(&f, crashed.path(), f.log_end, &expected, "all committed");
    let log = Log::open(crashed.path(), f.config.clone(), f.log_end).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 6, 12, 18]);
}

/// A crash partway through renaming the replaced segments `.deleted`: the first
/// group's first two sources are renamed, its last one (emptied by the cleaning) is
/// still there.
#[test]
fn a_crash_partway_through_deleting_the_replaced_segments_finishes_the_swap() {
    let f = swap_fixture();
    let steps = ottla_swap_steps(&f);
    let at = steps
        .iter()
        .position(|s| matches!(s, Step::Rename(n, _) if *n == file_name(4, "log")))
        .unwrap();
    let (crashed, committed) = crash_after(&f, &steps, at);
    let on_disk: Vec<i64> = logs_on_disk(crashed.path()).iter().map(|l| l.0).collect();
    assert_eq!(on_disk, vec![4, 6, 8, 10, 12, 14, 16, 18]);
    let expected = expected_after_crash(&f, &committed);
    assert!(expected.iter().all(|e| e.offset != 4 && e.offset != 5));
    for recovery_point in [0, f.log_end] {
        check_recovered(
            &f,
            crashed.path(),
            recovery_point,
            &expected,
            "sources half deleted",
        );
    }
}

/// A crash partway through renaming several `.swap` files to their final names: the
/// first group done, the second with its sources deleted and its indexes renamed but
/// not its `.log`, the third still all `.swap` with its sources in place.
#[test]
fn a_crash_partway_through_renaming_the_swap_files_finishes_the_swap() {
    let f = swap_fixture();
    let steps = ottla_swap_steps(&f);
    let at = steps
        .iter()
        .position(|s| matches!(s, Step::Rename(from, _) if *from == file_name(6, "log.swap")))
        .unwrap();
    let (crashed, committed) = crash_after(&f, &steps, at);
    let names = file_names(crashed.path());
    assert!(names.contains(&file_name(6, "index")) && names.contains(&file_name(6, "log.swap")));
    assert!(names.contains(&file_name(12, "log.swap")) && names.contains(&file_name(16, "log")));
    let expected = expected_after_crash(&f, &committed);
    for recovery_point in [0, f.log_end] {
        check_recovered(
            &f,
            crashed.path(),
            recovery_point,
            &expected,
            "renames half done",
        );
    }
}

/// A crash after the swap renamed a replaced segment's `.log` `.deleted` but not yet
/// its `.txnindex`, where the cleaned segment that takes its base offset has no
/// aborted transaction left (its ABORT marker was removed): the old index must not
/// become the new segment's, or a read_committed consumer is told of an aborted
/// transaction whose marker is gone and skips that producer's records for good.
#[test]
fn a_replaced_segments_leftover_transaction_index_is_not_taken_by_its_replacement() {
    let dir = TempDir::new().unwrap();
    let config = LogConfig {
        delete_retention_ms: 0,
        ..compacted()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    let filler = |log: &mut Log, tag: &str| {
        for i in 0..30 {
            append(
                log,
                &[("filler", Some(&format!("{tag}{i}")))],
                Compression::None,
            );
        }
    };
    append_transactional(&mut log, 5, 0, "a", "aborted");
    end_transaction(&mut log, 5, ControlRecordType::Abort);
    filler(&mut log, "x");
    // Pass 1 reads the aborted data, so its marker stays; pass 2 removes the marker.
    std::thread::sleep(std::time::Duration::from_millis(20));
    clean_now(&mut log, true).unwrap();
    assert_eq!(log.aborted_transactions(0, i64::MAX).len(), 1);
    filler(&mut log, "y");
    std::thread::sleep(std::time::Duration::from_millis(20));
    log.flush().unwrap();
    let plan = log.cleaning_plan(NOW, i64::MAX, true).unwrap();
    let cleaned = clean(&plan, DEFAULT_DEDUPE_BUFFER_BYTES).unwrap();
    assert_eq!(cleaned.stats.markers_removed, 1);
    drop(plan);
    let names = file_names(dir.path());
    assert!(names.contains(&file_name(0, "txnindex")));
    assert!(!names.contains(&file_name(0, "txnindex.cleaned")));
    // The crash: committed, then only the first file of the first source renamed
    // `.deleted`.
    for name in names.iter().filter(|n| n.ends_with(".cleaned")) {
        let swap = format!("{}.swap", name.strip_suffix(".cleaned").unwrap());
        fs::rename(dir.path().join(name), dir.path().join(swap)).unwrap();
    }
    fs::rename(
        dir.path().join(file_name(0, "log")),
        dir.path().join(file_name(0, "log.deleted")),
    )
    .unwrap();
    let recovery_point = log.recovery_point();
    drop(cleaned);
    drop(log);
    let log = Log::open(dir.path(), config, recovery_point).unwrap();
    assert_eq!(contents(&log).1, 0, "the ABORT marker is gone");
    assert!(
        log.aborted_transactions(0, i64::MAX).is_empty(),
        "and so is its aborted transaction: {:?}",
        log.aborted_transactions(0, i64::MAX)
    );
}

/// The empty batch a group ends with when its last source came out empty (so that
/// recovery finds every segment the group replaces) is only ever the last batch of a
/// segment, and a later cleaning drops it, keeping a new one only where that rule calls
/// for it: empty batches never pile up, and readers see only records.
#[test]
fn the_empty_batches_that_end_cleaned_groups_do_not_pile_up() {
    let dir = TempDir::new().unwrap();
    let mut log = Log::open(dir.path(), compacted(), 0).unwrap();
    let mut appended = Vec::new();
    let mut seen_empty = false;
    for pass in 0..10 {
        for round in 0..20 {
            let v = format!("{pass}-{round}");
            appended.extend(append(
                &mut log,
                &[("a", Some(&v)), ("b", Some(&v))],
                Compression::None,
            ));
        }
        let end = clean_now(&mut log, true).unwrap();
        assert_eq!(contents(&log).0, model(&appended, end), "pass {pass}");
        for (base, _) in logs_on_disk(dir.path()) {
            let bytes = fs::read(dir.path().join(file_name(base, "log"))).unwrap();
            let counts: Vec<i32> = BatchIter::new(&bytes)
                .map(|b| b.unwrap().records_count())
                .collect();
            let empty = counts.iter().filter(|&&n| n == 0).count();
            seen_empty |= empty > 0;
            assert!(
                empty == 0 || (empty == 1 && counts.last() == Some(&0)),
                "pass {pass}, segment {base}: records per batch {counts:?}"
            );
        }
    }
    assert!(seen_empty, "some group came out empty");
}

/// Kafka's `replaceSegments` + `asyncDeleteSegment`: the segments a swap replaces are
/// renamed `.deleted` and removed after `file.delete.delay.ms` (at once when it is 0),
/// and a fetch that sliced them before the swap reads the old bytes to the end either
/// way, even once their files are gone.
#[test]
fn replaced_segments_are_renamed_deleted_and_removed_after_the_delay_while_readers_finish() {
    for delay in [60_000, 0] {
        let dir = TempDir::new().unwrap();
        let config = LogConfig {
            file_delete_delay_ms: delay,
            ..compacted()
        };
        let mut log = Log::open(dir.path(), config, 0).unwrap();
        let mut appended = Vec::new();
        for round in 0..40 {
            let v = format!("v{round}");
            appended.extend(append(
                &mut log,
                &[("a", Some(&v)), ("b", Some(&v))],
                Compression::None,
            ));
        }
        log.flush().unwrap();
        let fetch = log.slice(0, usize::MAX >> 1, i64::MAX, true).unwrap();
        let before = fetch.to_bytes().unwrap();
        let sources: Vec<i64> = logs_on_disk(dir.path()).iter().map(|l| l.0).collect();
        let end = clean_now(&mut log, true).unwrap();
        assert_eq!(contents(&log).0, model(&appended, end), "delay {delay}");
        let deleted: Vec<String> = file_names(dir.path())
            .into_iter()
            .filter(|n| n.ends_with(".log.deleted"))
            .collect();
        let replaced = sources.iter().filter(|&&b| b < end).count();
        assert!(replaced > 1, "delay {delay}: {sources:?}, end {end}");
        if delay > 0 {
            assert_eq!(deleted.len(), replaced, "delay {delay}: {deleted:?}");
        } else {
            assert!(deleted.is_empty(), "delay 0: {deleted:?}");
        }
        // The sweep closes the log's idle handles; the fetch keeps its own.
        log.close_idle_files();
        log.close_idle_files();
        assert_eq!(fetch.to_bytes().unwrap(), before, "delay {delay}");
        let now = crate::now_ms();
        assert_eq!(log.remove_deleted_files(now + delay), deleted.len());
        assert!(
            !file_names(dir.path())
                .iter()
                .any(|n| n.ends_with(".deleted")),
            "delay {delay}"
        );
        assert_eq!(fetch.to_bytes().unwrap(), before, "delay {delay}");
        assert_eq!(contents(&log).0, model(&appended, end), "delay {delay}");
    }
}

/// The batch holding `offset`, read through the log as a fetch would: its records.
fn read_at(log: &Log, offset: i64) -> Vec<Entry> {
    let bytes = log.read(offset, 1, i64::MAX, true).unwrap();
    let batch = BatchIter::new(&bytes).next().unwrap().unwrap();
    decode_records(&batch, 1 << 24)
        .unwrap()
        .into_iter()
        .map(|r| Entry {
            offset: r.offset,
            key: r.key.unwrap(),
            value: r.value,
        })
        .collect()
}

/// The offset and time index files of the segments based below `end`, by name.
fn index_files_below(dir: &Path, end: i64) -> Vec<(String, Vec<u8>)> {
    logs_on_disk(dir)
        .into_iter()
        .filter(|&(base, _)| base < end)
        .flat_map(|(base, _)| ["index", "timeindex"].map(|s| file_name(base, s)))
        .map(|name| {
            let bytes = fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Issue 11: a cleaning needs the owner's lock only to plan and to swap. Here the three
/// steps are driven by hand, and after each new segment the cleaning writes (without
/// the lock: the cleaner holds the plan, not the log) the log takes appends, rolls,
/// flushes and serves reads of the very segments being cleaned, with `&mut Log`, what
/// the owner's write lock gives. The swap then keeps every append at the offset it got,
/// the cleaned part holds the latest value of each key, the swapped-in segments read
/// the same once their idle files are closed and reopened under their final names,
/// their indexes are those recovery builds, and the log reopens to the same content
/// (trusting the segments below the recovery point, and recovering all of them).
#[test]
fn appends_and_reads_go_on_while_a_cleaning_is_written_and_survive_its_swap() {
    let dir = TempDir::new().unwrap();
    let mut log = Log::open(dir.path(), compacted(), 0).unwrap();
    let mut appended = Vec::new();
    for round in 0..40 {
        let v = format!("v{round}");
        let k = format!("k{}", round % 7);
        appended.extend(append(
            &mut log,
            &[("a", Some(&v)), ("b", Some(&v)), (&k, Some(&v))],
            Compression::None,
        ));
    }
    log.flush().unwrap();
    let planned_end = log.log_end_offset();
    let plan = log.cleaning_plan(NOW, i64::MAX, true).unwrap();
    let segments_planned = log.segment_count();
    let mut during = Vec::new();
    let mut groups_written = 0;
    let cleaned = clean_with(&plan, DEFAULT_DEDUPE_BUFFER_BYTES, || {
        groups_written += 1;
        // The cleaning's output so far is on disk, not in the log.
        assert!(file_names(dir.path())
            .iter()
            .any(|n| n.ends_with(".log.cleaned")));
        // Reads of what is being cleaned: everything, and single batches from the
        // start, the middle and the end of the planned part.
        let mut all = appended.clone();
        all.extend(during.iter().cloned());
        assert_eq!(contents(&log).0, all, "group {groups_written}");
        for e in [
            &appended[0],
            &appended[appended.len() / 2],
            &appended[appended.len() - 1],
        ] {
            assert!(
                read_at(&log, e.offset).contains(e),
                "group {groups_written}: {e:?}"
            );
        }
        // Appends: new values for keys the cleaning is removing, and new keys.
        for i in 0..6 {
            let v = format!("during-{groups_written}-{i}");
            let k = format!("new{groups_written}");
            let entries = append(
                &mut log,
                &[("a", Some(&v)), (&k, Some(&v))],
                Compression::None,
            );
            assert_eq!(
                entries[0].offset,
                all.len() as i64 + 2 * i,
                "offsets run on"
            );
            for e in &entries {
                assert_eq!(
                    read_at(&log, e.offset),
                    entries,
                    "a fresh append reads back"
                );
            }
            during.extend(entries);
        }
        if groups_written % 2 == 0 {
            log.flush().unwrap();
        }
    })
    .unwrap();
    drop(plan);
    let end = cleaned.end;
    assert!(groups_written > 1, "{groups_written} groups");
    assert!(end <= planned_end);
    assert!(
        log.segment_count() > segments_planned,
        "the appends rolled new segments meanwhile"
    );
    assert!(during.iter().all(|e| e.offset >= planned_end));

    assert!(
        log.swap_cleaned(cleaned).unwrap(),
        "appends do not void a plan"
    );
    let mut all = appended.clone();
    all.extend(during.iter().cloned());
    let expected = model(&all, end);
    assert_eq!(contents(&log).0, expected);
    for e in &during {
        assert!(read_at(&log, e.offset).contains(e), "{e:?}");
    }
    // The cleaned part: one record per key, its latest value below the cleaned end.
    let cleaned_part: Vec<&Entry> = expected.iter().filter(|e| e.offset < end).collect();
    let mut keys: Vec<&[u8]> = cleaned_part.iter().map(|e| e.key.as_slice()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), cleaned_part.len(), "{cleaned_part:?}");
    for e in &cleaned_part {
        let latest = all
            .iter()
            .rfind(|x| x.key == e.key && x.offset < end)
            .unwrap();
        assert_eq!(*e, latest);
    }
    assert!(cleaned_part.len() < appended.len() / 2);
    let stats = log.last_cleaning().unwrap();
    assert!(stats.records_kept < stats.records_read, "{stats:?}");
    assert!(stats.swap_micros > 0, "{stats:?}");
    // The swapped-in segments reopen their files under their final names.
    log.close_idle_files();
    log.close_idle_files();
    assert_eq!(contents(&log).0, expected);

    log.flush().unwrap();
    let recovery_point = log.recovery_point();
    let indexes = index_files_below(dir.path(), end);
    assert!(!indexes.is_empty());
    drop(log);
    for recovery_point in [recovery_point, 0] {
        let log = Log::open(dir.path(), compacted(), recovery_point).unwrap();
        assert_eq!(
            contents(&log).0,
            expected,
            "recovery point {recovery_point}"
        );
        assert_eq!(log.log_end_offset(), all.len() as i64);
        assert_eq!(
            index_files_below(dir.path(), end),
            indexes,
            "recovery point {recovery_point}: the swapped-in indexes are recovery's"
        );
    }
}
