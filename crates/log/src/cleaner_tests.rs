//! The cleaner against a model: what a compacted log must still hold, computed from
//! what was appended, never from the cleaner's own output.

use std::collections::HashMap;
use std::fs;

use ottla_protocol::batch::{BatchIter, RecordBatchMut};
use ottla_protocol::compression::Compression;
use ottla_protocol::control::{build_end_txn_marker, ControlRecordType};
use ottla_protocol::records::{build_record_batch, decode_records, Record};
use tempfile::TempDir;

use crate::cleaner::{clean, DEFAULT_DEDUPE_BUFFER_BYTES};
use crate::{Log, LogConfig};

const NOW: i64 = 1_700_000_000_000;

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
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            offset: i as i64,
            timestamp: NOW,
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
