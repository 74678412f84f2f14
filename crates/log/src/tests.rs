//! Behaviour of [`Log`] against real files in a temporary directory.

use std::fs;
use std::path::Path;

use ottla_protocol::batch::{build_batch, BatchIter, RecordBatch};
use ottla_protocol::compression::Compression;

use crate::{FlushReason, Log, LogConfig, LogError};

const NOW: i64 = 1_700_000_000_000;

fn zigzag(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// One uncompressed v2 record: length, attributes, timestamp delta, offset delta,
/// null key, value, no headers.
fn record(timestamp_delta: i64, offset_delta: i64, value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    zigzag(&mut body, timestamp_delta);
    zigzag(&mut body, offset_delta);
    zigzag(&mut body, -1);
    zigzag(&mut body, value.len() as i64);
    body.extend_from_slice(value);
    zigzag(&mut body, 0);
    let mut r = Vec::new();
    zigzag(&mut r, body.len() as i64);
    r.extend_from_slice(&body);
    r
}

/// A batch with one record per timestamp (base offset 0, as a producer sends it).
fn batch_ts(timestamps: &[i64], pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let base_ts = timestamps[0];
    let max_ts = *timestamps.iter().max().unwrap();
    let mut payload = Vec::new();
    for (i, ts) in timestamps.iter().enumerate() {
        payload.extend(record(
            ts - base_ts,
            i as i64,
            format!("value-{i:07}").as_bytes(),
        ));
    }
    let n = timestamps.len() as i32;
    build_batch(
        0,
        Compression::None,
        n - 1,
        base_ts,
        max_ts,
        pid,
        epoch,
        seq,
        n,
        &payload,
    )
}

fn batch(records: usize, ts: i64) -> Vec<u8> {
    batch_ts(&vec![ts; records], -1, -1, -1)
}

fn idempotent(records: usize, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    batch_ts(&vec![NOW; records], pid, epoch, seq)
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 0,
        ..LogConfig::default()
    }
}

/// Base offsets of the whole batches in `bytes`.
fn base_offsets(bytes: &[u8]) -> Vec<i64> {
    BatchIter::new(bytes)
        .map(|b| b.unwrap().base_offset())
        .collect()
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

fn log_file(dir: &Path, base: i64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.log"))
}

#[test]
fn append_and_read_back_identical_bytes_with_offsets_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("foo-0");
    let mut log = Log::open(&dir, LogConfig::default(), 0).unwrap();
    let mut expected = Vec::new();
    let mut next = 0;
    for n in [3usize, 1, 2] {
        let mut b = batch(n, NOW);
        let info = log.append_as_leader(&mut b, 7).unwrap();
        assert_eq!(
            (info.first_offset, info.last_offset),
            (next, next + n as i64 - 1)
        );
        assert!(!info.duplicate);
        assert_eq!(info.log_append_time, -1);
        let view = RecordBatch::new(&b).unwrap();
        assert_eq!(view.base_offset(), next);
        assert_eq!(view.partition_leader_epoch(), 7);
        view.validate().unwrap();
        expected.extend_from_slice(&b);
        next += n as i64;
    }
    assert_eq!(log.log_end_offset(), 6);
    let read = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(&read[..], &expected[..]);
    assert_eq!(base_offsets(&read), vec![0, 3, 4]);
    assert_eq!(log.size_bytes(), expected.len() as u64);
    assert_eq!(
        files_with_suffix(&dir, ".log"),
        vec!["00000000000000000000.log"]
    );
    assert_eq!(fs::read(log_file(&dir, 0)).unwrap(), expected);
}

#[test]
fn read_from_the_middle_of_a_batch_returns_the_whole_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Log::open(tmp.path(), LogConfig::default(), 0).unwrap();
    for n in [3usize, 4, 2] {
        log.append_as_leader(&mut batch(n, NOW), 0).unwrap();
    }
    assert_eq!(
        base_offsets(&log.read(5, 1 << 20, i64::MAX, false).unwrap()),
        vec![3, 7]
    );
    assert_eq!(
        base_offsets(&log.read(8, 1 << 20, i64::MAX, false).unwrap()),
        vec![7]
    );
    assert_eq!(
        base_offsets(&log.read(2, 1 << 20, i64::MAX, false).unwrap()),
        vec![0, 3, 7]
    );
}

#[test]
fn max_bytes_min_one_batch_and_max_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Log::open(tmp.path(), LogConfig::default(), 0).unwrap();
    let sizes: Vec<usize> = (0..4)
        .map(|_| {
            let mut b = batch(2, NOW);
            log.append_as_leader(&mut b, 0).unwrap();
            b.len()
        })
        .collect();
    // too small for one batch: nothing, unless min_one_batch (KIP-74)
    assert!(log.read(0, 10, i64::MAX, false).unwrap().is_empty());
    assert_eq!(
        base_offsets(&log.read(0, 10, i64::MAX, true).unwrap()),
        vec![0]
    );
    assert_eq!(
        base_offsets(&log.read(0, 0, i64::MAX, true).unwrap()),
        vec![0]
    );
    // room for two and a bit: exactly two whole batches
    let two = sizes[0] + sizes[1] + 10;
    let read = log.read(0, two, i64::MAX, true).unwrap();
    assert_eq!(base_offsets(&read), vec![0, 2]);
    assert_eq!(read.len(), sizes[0] + sizes[1]);
    // high watermark: no batch whose base offset is >= max_offset
    assert_eq!(
        base_offsets(&log.read(0, 1 << 20, 4, false).unwrap()),
        vec![0, 2]
    );
    assert_eq!(
        base_offsets(&log.read(0, 1 << 20, 5, false).unwrap()),
        vec![0, 2, 4]
    );
    assert!(log.read(4, 1 << 20, 4, true).unwrap().is_empty());
    // range checks
    assert!(log.read(8, 100, i64::MAX, true).unwrap().is_empty());
    let err = log.read(9, 100, i64::MAX, true).unwrap_err();
    assert!(matches!(
        err,
        LogError::OffsetOutOfRange {
            offset: 9,
            log_start_offset: 0,
            log_end_offset: 8
        }
    ));
    assert_eq!(err.kafka_error_code(), 1);
    assert!(matches!(
        log.read(-1, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

/// Reads are cut at batch boundaries found through the offset index and a short header
/// walk (no data is read); checked against the batch list for every start offset, a
/// range of budgets and high watermarks, across segments.
#[test]
fn slices_are_the_longest_run_of_whole_batches_that_fits() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 150,
        ..LogConfig::default()
    };
    let mut log = Log::open(tmp.path(), config, 0).unwrap();
    // (base offset, last offset, size) of every batch, in log order; sizes vary.
    let mut batches: Vec<(i64, i64, usize)> = Vec::new();
    for i in 0..60usize {
        let mut b = batch(1 + i % 4, NOW);
        let info = log.append_as_leader(&mut b, 0).unwrap();
        batches.push((info.first_offset, info.last_offset, b.len()));
    }
    assert!(log.segment_count() > 3, "the reads must cross segments");
    let end = log.log_end_offset();
    let expected = |start: i64, budget: usize, max_offset: i64, min_one: bool| -> Vec<i64> {
        let mut out = Vec::new();
        let mut total = 0;
        for &(base, last, size) in &batches {
            if last < start {
                continue;
            }
            if base >= max_offset {
                break;
            }
            let fits = total + size <= budget || (out.is_empty() && min_one);
            if !fits {
                break;
            }
            out.push(base);
            total += size;
        }
        out
    };
    for start in 0..end {
        // Fixed budgets, plus ones that end exactly on (and one byte short of) a batch
        // boundary.
        let mut budgets = vec![0, 1, 60, 100, 150, 333, 700, 2_500, 10_000];
        let mut sum = 0;
        for &(_, _, size) in batches.iter().filter(|b| b.1 >= start).take(12) {
            sum += size;
            budgets.extend([sum - 1, sum]);
        }
        for budget in budgets {
            for max_offset in [end, end - 7, start + 1] {
                for min_one in [false, true] {
                    let slices = log.slice(start, budget, max_offset, min_one).unwrap();
                    let bytes = slices.to_bytes().unwrap();
                    assert_eq!(
                        base_offsets(&bytes),
                        expected(start, budget, max_offset, min_one),
                        "start {start}, budget {budget}, max offset {max_offset}, min one {min_one}"
                    );
                }
            }
        }
    }
}

#[test]
fn rolling_by_segment_bytes_names_files_and_reads_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = Log::open(dir, small_segments(), 0).unwrap();
    let mut all = Vec::new();
    for i in 0..10 {
        let mut b = batch(2, NOW + i);
        log.append_as_leader(&mut b, 0).unwrap();
        all.extend_from_slice(&b);
    }
    // 2-record batches are 101 bytes: two per 300-byte segment
    assert_eq!(batch(2, NOW).len(), 101);
    assert_eq!(log.segment_count(), 5);
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8, 12, 16]);
    assert_eq!(
        files_with_suffix(dir, ".log"),
        vec![
            "00000000000000000000.log",
            "00000000000000000004.log",
            "00000000000000000008.log",
            "00000000000000000012.log",
            "00000000000000000016.log"
        ]
    );
    assert_eq!(files_with_suffix(dir, ".index").len(), 5);
    assert_eq!(files_with_suffix(dir, ".timeindex").len(), 5);
    // with index.interval.bytes = 0 every batch but a segment's first gets an entry
    assert_eq!(
        fs::read(dir.join("00000000000000000004.index")).unwrap(),
        vec![0, 0, 0, 3, 0, 0, 0, 101]
    );
    // a sealed segment's time index ends with its max timestamp and that batch's last offset
    let ti = fs::read(dir.join("00000000000000000004.timeindex")).unwrap();
    assert_eq!(ti.len() % 12, 0);
    assert_eq!(
        &ti[ti.len() - 12..],
        &[&(NOW + 3).to_be_bytes()[..], &[0, 0, 0, 3]].concat()[..]
    );
    // everything, spanning segments
    let read = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(&read[..], &all[..]);
    // from every offset: the containing batch first
    for offset in 0..20 {
        let read = log.read(offset, 1 << 20, i64::MAX, false).unwrap();
        assert_eq!(
            base_offsets(&read)[0],
            offset - offset % 2,
            "offset {offset}"
        );
        assert_eq!(*base_offsets(&read).last().unwrap(), 18);
    }
    // bounded read in a later segment
    assert_eq!(
        base_offsets(&log.read(9, 150, i64::MAX, true).unwrap()),
        vec![8]
    );
    assert_eq!(
        base_offsets(&log.read(9, 250, 14, true).unwrap()),
        vec![8, 10]
    );
}

#[test]
fn segment_ms_rolls_by_record_time() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = Log::open(tmp.path(), config, 0).unwrap();
    log.append_as_leader(&mut batch(1, NOW), 0).unwrap();
    log.append_as_leader(&mut batch(1, NOW + 1000), 0).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append_as_leader(&mut batch(1, NOW + 1001), 0).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
}

#[test]
fn offset_for_timestamp_across_segments_and_inside_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Log::open(tmp.path(), small_segments(), 0).unwrap();
    // offsets 0..=2 in one batch with differing timestamps, then more batches
    log.append_as_leader(&mut batch_ts(&[100, 300, 200], -1, -1, -1), 0)
        .unwrap();
    log.append_as_leader(&mut batch_ts(&[400, 400], -1, -1, -1), 0)
        .unwrap(); // 3, 4
    log.append_as_leader(&mut batch_ts(&[350, 600, 500], -1, -1, -1), 0)
        .unwrap(); // 5..=7
    log.append_as_leader(&mut batch_ts(&[700], -1, -1, -1), 0)
        .unwrap(); // 8
    assert!(log.segment_count() >= 2);
    let lookup = |ts, max| log.offset_for_timestamp(ts, max).unwrap();
    assert_eq!(lookup(0, i64::MAX), Some((0, 100)));
    assert_eq!(lookup(100, i64::MAX), Some((0, 100)));
    assert_eq!(lookup(150, i64::MAX), Some((1, 300)));
    assert_eq!(lookup(250, i64::MAX), Some((1, 300)));
    assert_eq!(lookup(301, i64::MAX), Some((3, 400)));
    assert_eq!(lookup(401, i64::MAX), Some((6, 600)));
    assert_eq!(lookup(650, i64::MAX), Some((8, 700)));
    assert_eq!(lookup(701, i64::MAX), None);
    // bounded by the high watermark
    assert_eq!(lookup(650, 8), None);
    assert_eq!(lookup(401, 6), None);
    assert_eq!(lookup(150, 1), None);
}

#[test]
fn offset_of_max_timestamp_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Log::open(tmp.path(), small_segments(), 0).unwrap();
    assert_eq!(log.offset_of_max_timestamp(i64::MAX).unwrap(), None);
    log.append_as_leader(&mut batch_ts(&[100, 900, 200], -1, -1, -1), 0)
        .unwrap(); // 0..=2
    log.append_as_leader(&mut batch_ts(&[400, 400], -1, -1, -1), 0)
        .unwrap(); // 3, 4
    log.append_as_leader(&mut batch_ts(&[350, 900, 950], -1, -1, -1), 0)
        .unwrap(); // 5..=7
    log.append_as_leader(&mut batch_ts(&[950], -1, -1, -1), 0)
        .unwrap(); // 8
    assert!(log.segment_count() >= 2);
    // the first of the tied 950s
    assert_eq!(
        log.offset_of_max_timestamp(i64::MAX).unwrap(),
        Some((7, 950))
    );
    // below offset 7: the 900 at offset 1 comes before the 900 at offset 6
    assert_eq!(log.offset_of_max_timestamp(7).unwrap(), Some((1, 900)));
    assert_eq!(log.offset_of_max_timestamp(1).unwrap(), Some((0, 100)));
}

#[test]
fn reopen_after_close_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-3");
    let mut log = Log::open(&dir, small_segments(), 0).unwrap();
    for i in 0..7 {
        log.append_as_leader(&mut idempotent(2, 42, 1, i * 2), 0)
            .unwrap();
        log.append_as_leader(&mut batch_ts(&[NOW + i64::from(i)], -1, -1, -1), 0)
            .unwrap();
    }
    let leo = log.log_end_offset();
    let bytes = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    let segments = log.segment_base_offsets();
    let indexes: Vec<Vec<u8>> = files_with_suffix(&dir, ".index")
        .iter()
        .map(|n| fs::read(dir.join(n)).unwrap())
        .collect();
    let by_time = log.offset_for_timestamp(NOW + 3, i64::MAX).unwrap();
    log.close().unwrap();
    assert!(!files_with_suffix(&dir, ".snapshot").is_empty());

    let mut log = Log::open(&dir, small_segments(), leo).unwrap();
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.segment_base_offsets(), segments);
    assert_eq!(log.read(0, 1 << 20, i64::MAX, false).unwrap(), bytes);
    assert_eq!(
        log.offset_for_timestamp(NOW + 3, i64::MAX).unwrap(),
        by_time
    );
    let reloaded: Vec<Vec<u8>> = files_with_suffix(&dir, ".index")
        .iter()
        .map(|n| fs::read(dir.join(n)).unwrap())
        .collect();
    assert_eq!(reloaded, indexes);
    // producer state: the last batch is still recognised, the sequence continues
    let state = log.producer_state().get(42).unwrap();
    assert_eq!((state.epoch(), state.last_sequence()), (1, Some(13)));
    let dup = log
        .append_as_leader(&mut idempotent(2, 42, 1, 12), 0)
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(log.log_end_offset(), leo);
    let next = log
        .append_as_leader(&mut idempotent(1, 42, 1, 14), 0)
        .unwrap();
    assert_eq!(next.first_offset, leo);
}

#[test]
fn torn_tail_is_truncated_to_the_last_whole_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("foo-0");
    let mut log = Log::open(&dir, LogConfig::default(), 0).unwrap();
    let mut sizes = Vec::new();
    for n in [2usize, 3, 1] {
        let mut b = batch(n, NOW);
        log.append_as_leader(&mut b, 0).unwrap();
        sizes.push(b.len() as u64);
    }
    drop(log); // a crash: no close, no snapshot
    let path = log_file(&dir, 0);
    let full: u64 = sizes.iter().sum();
    // chop 5 bytes off the last batch
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(full - 5)
        .unwrap();
    let mut log = Log::open(&dir, LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(fs::metadata(&path).unwrap().len(), sizes[0] + sizes[1]);
    assert_eq!(
        base_offsets(&log.read(0, 1 << 20, i64::MAX, false).unwrap()),
        vec![0, 2]
    );
    // the log carries on from there
    assert_eq!(
        log.append_as_leader(&mut batch(1, NOW), 0)
            .unwrap()
            .first_offset,
        5
    );
    drop(log);

    // garbage after the last batch
    let before = fs::metadata(&path).unwrap().len();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0xab; 40]);
    fs::write(&path, &bytes).unwrap();
    let log = Log::open(&dir, LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(fs::metadata(&path).unwrap().len(), before);
    // a header-sized tail (fewer bytes than LOG_OVERHEAD) too
    drop(log);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0, 0, 0]);
    fs::write(&path, &bytes).unwrap();
    let log = Log::open(&dir, LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(fs::metadata(&path).unwrap().len(), before);
}

#[test]
fn crc_corruption_in_the_middle_truncates_there_and_drops_later_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = Log::open(dir, small_segments(), 0).unwrap();
    for _ in 0..6 {
        log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
    drop(log);
    // flip a payload byte of the second batch of segment 4 (offsets 6..=7)
    let path = log_file(dir, 4);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let log = Log::open(dir, small_segments(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(log.segment_base_offsets(), vec![0, 4]);
    assert!(!log_file(dir, 8).exists());
    assert!(!dir.join("00000000000000000008.index").exists());
    assert_eq!(fs::metadata(&path).unwrap().len(), 101);
    assert_eq!(
        base_offsets(&log.read(0, 1 << 20, i64::MAX, false).unwrap()),
        vec![0, 2, 4]
    );
}

#[test]
fn segments_below_the_recovery_point_are_trusted_but_bad_indexes_are_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir, config.clone(), 0).unwrap();
    for i in 0..12 {
        log.append_as_leader(&mut batch(2, NOW + i), 0).unwrap();
    }
    let recovery_point = log.flush().unwrap();
    assert_eq!(recovery_point, 24);
    let index0 = fs::read(dir.join("00000000000000000000.index")).unwrap();
    assert!(!index0.is_empty());
    drop(log);
    // a missing offset index and a truncated time index in trusted segments
    fs::remove_file(dir.join("00000000000000000000.index")).unwrap();
    let ti = dir.join("00000000000000000010.timeindex");
    let len = fs::metadata(&ti).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&ti)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let log = Log::open(dir, config, recovery_point).unwrap();
    assert_eq!(log.log_end_offset(), 24);
    assert_eq!(
        fs::read(dir.join("00000000000000000000.index")).unwrap(),
        index0
    );
    assert_eq!(fs::metadata(&ti).unwrap().len() % 12, 0);
    for offset in 0..24 {
        assert_eq!(
            base_offsets(&log.read(offset, 1, i64::MAX, true).unwrap()),
            vec![offset - offset % 2]
        );
    }
    assert_eq!(
        log.offset_for_timestamp(NOW + 6, i64::MAX).unwrap(),
        Some((12, NOW + 6))
    );
}

#[test]
fn retention_by_time_deletes_old_segments_and_advances_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = LogConfig {
        retention_ms: 1000,
        ..small_segments()
    };
    let mut log = Log::open(dir, config, 0).unwrap();
    for ts in [
        NOW - 5000,
        NOW - 5000,
        NOW - 4000,
        NOW - 4000,
        NOW - 10,
        NOW,
    ] {
        log.append_as_leader(&mut batch(2, ts), 0).unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
    assert_eq!(log.apply_retention(NOW).unwrap(), 2);
    assert_eq!(log.segment_base_offsets(), vec![8]);
    assert_eq!(log.log_start_offset(), 8);
    assert!(!log_file(dir, 0).exists());
    assert!(!log_file(dir, 4).exists());
    assert!(matches!(
        log.read(7, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        base_offsets(&log.read(8, 1 << 20, i64::MAX, true).unwrap()),
        vec![8, 10]
    );
    assert_eq!(log.apply_retention(NOW).unwrap(), 0);
    // later everything has expired: the active segment is rolled, then deleted
    assert_eq!(log.apply_retention(NOW + 10_000).unwrap(), 1);
    assert_eq!(log.segment_base_offsets(), vec![12]);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (12, 12, 0)
    );
    assert_eq!(
        log.append_as_leader(&mut batch(1, NOW), 0)
            .unwrap()
            .first_offset,
        12
    );
    drop(log);
    // the start offset survives a reopen (it is the first segment's base)
    let log = Log::open(dir, small_segments(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 13));
}

#[test]
fn retention_by_size_and_the_high_watermark_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 450,
        retention_ms: -1,
        ..small_segments()
    };
    let mut log = Log::open(tmp.path(), config, 0).unwrap();
    for _ in 0..9 {
        log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    }
    // segments of 202 bytes: 0, 4, 8, 12, and 16 holding one batch (101)
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8, 12, 16]);
    assert_eq!(log.size_bytes(), 909);
    // nothing may go above offset 4 yet
    assert_eq!(log.apply_retention_below(NOW, 3).unwrap(), 0);
    assert_eq!(log.apply_retention_below(NOW, 4).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 4);
    // 707 bytes left; deleting while the rest stays >= 450: one more (505 left)
    assert_eq!(log.apply_retention(NOW).unwrap(), 1);
    assert_eq!(log.segment_base_offsets(), vec![8, 12, 16]);
    assert_eq!(log.log_start_offset(), 8);
    assert_eq!(log.size_bytes(), 505);
}

#[test]
fn idempotent_producer_duplicates_gaps_and_fencing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = Log::open(dir, LogConfig::default(), 0).unwrap();
    log.append_as_leader(&mut batch(1, NOW), 0).unwrap(); // offset 0, no producer id
    let first = log
        .append_as_leader(&mut idempotent(3, 9, 0, 0), 0)
        .unwrap(); // 1..=3
    let second = log
        .append_as_leader(&mut idempotent(2, 9, 0, 3), 0)
        .unwrap(); // 4..=5
    assert_eq!((first.first_offset, first.last_offset), (1, 3));
    let size = log.size_bytes();

    // a retry of the first batch: its original offsets, nothing written
    let dup = log
        .append_as_leader(&mut idempotent(3, 9, 0, 0), 0)
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!((dup.first_offset, dup.last_offset), (1, 3));
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(log.size_bytes(), size);

    // a gap
    let err = log
        .append_as_leader(&mut idempotent(1, 9, 0, 6), 0)
        .unwrap_err();
    assert!(matches!(
        err,
        LogError::OutOfOrderSequence {
            expected: 5,
            received: 6,
            ..
        }
    ));
    assert_eq!(err.kafka_error_code(), 45);
    // an overlapping range that is not a cached batch
    assert!(matches!(
        log.append_as_leader(&mut idempotent(2, 9, 0, 1), 0),
        Err(LogError::OutOfOrderSequence { .. })
    ));
    // a new epoch must start at 0 ...
    assert!(matches!(
        log.append_as_leader(&mut idempotent(1, 9, 1, 5), 0),
        Err(LogError::OutOfOrderSequence { expected: 0, .. })
    ));
    assert_eq!(log.log_end_offset(), 6);
    // ... and, once bumped, fences the old one
    log.append_as_leader(&mut idempotent(1, 9, 1, 0), 0)
        .unwrap(); // 6
    let err = log
        .append_as_leader(&mut idempotent(1, 9, 0, 5), 0)
        .unwrap_err();
    assert!(matches!(
        err,
        LogError::InvalidProducerEpoch {
            current: 1,
            received: 0,
            ..
        }
    ));
    assert_eq!(err.kafka_error_code(), 47);
    assert_eq!(log.size_bytes(), size + idempotent(1, 9, 1, 0).len() as u64);
    // an unknown producer may start anywhere
    assert_eq!(
        log.append_as_leader(&mut idempotent(1, 10, 4, 77), 0)
            .unwrap()
            .first_offset,
        7
    );
    let _ = second;

    // after a crash (no snapshot), the state is rebuilt from the batch headers: all
    // cached batches are recognised again
    for seq in 1..=5 {
        log.append_as_leader(&mut idempotent(1, 9, 1, seq), 0)
            .unwrap();
    }
    drop(log);
    let mut log = Log::open(dir, LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 13);
    for seq in 1..=5 {
        let dup = log
            .append_as_leader(&mut idempotent(1, 9, 1, seq), 0)
            .unwrap();
        assert!(dup.duplicate, "seq {seq}");
        assert_eq!(dup.first_offset, 7 + i64::from(seq));
    }
    assert!(matches!(
        log.append_as_leader(&mut idempotent(1, 9, 1, 7), 0),
        Err(LogError::OutOfOrderSequence { .. })
    ));
    assert!(matches!(
        log.append_as_leader(&mut idempotent(1, 9, 0, 7), 0),
        Err(LogError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(
        log.producer_state().get(10).unwrap().last_sequence(),
        Some(77)
    );
    assert_eq!(
        log.append_as_leader(&mut idempotent(1, 9, 1, 6), 0)
            .unwrap()
            .first_offset,
        13
    );
}

#[test]
fn corrupt_snapshot_is_ignored_and_state_rebuilt_from_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Small segments: each roll writes a snapshot at the new segment's base, and the
    // one at the active segment's base is what the next open starts from.
    let mut log = Log::open(dir, small_segments(), 0).unwrap();
    for seq in [0, 2, 4, 6] {
        log.append_as_leader(&mut idempotent(2, 5, 0, seq), 0)
            .unwrap();
    }
    let active_base = *log.segment_base_offsets().last().unwrap();
    assert!(active_base > 0, "the appends rolled");
    let end = log.log_end_offset();
    log.close().unwrap();
    let snapshot = dir.join(format!("{active_base:020}.snapshot"));
    let mut bytes = fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&snapshot, &bytes).unwrap();
    let mut log = Log::open(dir, small_segments(), end).unwrap();
    assert!(!snapshot.exists());
    assert!(
        log.append_as_leader(&mut idempotent(2, 5, 0, 6), 0)
            .unwrap()
            .duplicate
    );
    assert!(
        log.append_as_leader(&mut idempotent(2, 5, 0, 4), 0)
            .unwrap()
            .duplicate
    );
}

#[test]
fn truncate_to_removes_the_tail_and_rolls_back_producer_state() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Log::open(tmp.path(), small_segments(), 0).unwrap();
    for i in 0..5 {
        log.append_as_leader(&mut idempotent(2, 1, 0, i * 2), 0)
            .unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
    log.truncate_to(5).unwrap();
    // the batch holding offset 5 goes whole
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.segment_base_offsets(), vec![0, 4]);
    assert_eq!(log.size_bytes(), 2 * 101);
    assert_eq!(
        log.producer_state().get(1).unwrap().last_sequence(),
        Some(3)
    );
    assert_eq!(
        log.append_as_leader(&mut idempotent(2, 1, 0, 4), 0)
            .unwrap()
            .first_offset,
        4
    );
    assert_eq!(
        base_offsets(&log.read(0, 1 << 20, i64::MAX, false).unwrap()),
        vec![0, 2, 4]
    );
    // below the first segment: everything goes, the log restarts there
    log.truncate_to(0).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (0, 0, 0)
    );
    assert!(log.producer_state().is_empty());
}

#[test]
fn follower_append_keeps_offsets_and_rejects_going_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut leader = Log::open(&tmp.path().join("leader"), LogConfig::default(), 0).unwrap();
    for _ in 0..3 {
        leader
            .append_as_leader(&mut idempotent(2, 3, 0, leader.log_end_offset() as i32), 5)
            .unwrap();
    }
    let fetched = leader.read(0, 1 << 20, i64::MAX, false).unwrap();
    let mut follower = Log::open(&tmp.path().join("follower"), LogConfig::default(), 0).unwrap();
    let info = follower.append_as_follower(&fetched).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 5));
    assert_eq!(follower.log_end_offset(), 6);
    assert_eq!(follower.read(0, 1 << 20, i64::MAX, false).unwrap(), fetched);
    assert_eq!(
        follower.producer_state().get(3).unwrap().last_sequence(),
        Some(5)
    );
    let err = follower.append_as_follower(&fetched).unwrap_err();
    assert!(matches!(
        err,
        LogError::UnexpectedAppendOffset {
            expected_at_least: 6,
            got: 0
        }
    ));
    // a corrupted batch is refused before anything is written
    let mut bad = fetched.to_vec();
    let last = bad.len() - 2;
    bad[last] ^= 1;
    let mut follower2 = Log::open(&tmp.path().join("follower2"), LogConfig::default(), 0).unwrap();
    assert_eq!(
        follower2
            .append_as_follower(&bad)
            .unwrap_err()
            .kafka_error_code(),
        2
    );
    assert_eq!(follower2.log_end_offset(), 0);
}

#[test]
fn invalid_batches_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = Log::open(tmp.path(), config, 0).unwrap();
    let err = log.append_as_leader(&mut batch(3, NOW), 0).unwrap_err();
    assert!(matches!(err, LogError::BatchTooLarge { .. }));
    assert_eq!(err.kafka_error_code(), 18);
    let mut empty = build_batch(0, Compression::None, 0, NOW, NOW, -1, -1, -1, 0, &[]);
    assert!(matches!(
        log.append_as_leader(&mut empty, 0),
        Err(LogError::InvalidBatch(_))
    ));
    let mut short = batch(1, NOW);
    short.truncate(70);
    assert!(matches!(
        log.append_as_leader(&mut short, 0),
        Err(LogError::InvalidBatch(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn flush_policy_and_recovery_point() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_interval_messages: 3,
        ..LogConfig::default()
    };
    let mut log = Log::open(tmp.path(), config, 0).unwrap();
    log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    assert_eq!(log.flush_wanted(NOW), None);
    log.append_as_leader(&mut batch(1, NOW), 0).unwrap();
    assert_eq!(
        log.flush_wanted(NOW),
        Some(FlushReason::Policy),
        "3 unflushed messages"
    );
    assert_eq!(
        log.recovery_point(),
        0,
        "appending never waits for the disk"
    );
    assert_eq!(log.flush().unwrap(), 3);
    assert_eq!(log.flush_wanted(NOW), None);
    log.append_as_leader(&mut batch(1, NOW), 0).unwrap();
    assert_eq!(log.recovery_point(), 3);
    assert_eq!(log.flush().unwrap(), 4);
    assert_eq!(log.recovery_point(), 4);
}

/// Kafka's `flush.ms` is a scheduled flush no produce waits for; only
/// `flush.messages` is checked inside the append.
#[test]
fn flush_ms_asks_for_a_background_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_interval_ms: 1_000,
        ..LogConfig::default()
    };
    let mut log = Log::open(tmp.path(), config, 0).unwrap();
    log.append_as_leader(&mut batch(1, NOW), 0).unwrap();
    let opened = crate::now_ms();
    assert_eq!(log.flush_wanted(opened), None, "flushed at open");
    assert_eq!(
        log.flush_wanted(opened + 1_000),
        Some(FlushReason::Background)
    );
    // a retry is not held back for flush.ms (nothing waits for that flush)
    let mut original = idempotent(1, 5, 0, 0);
    log.append_as_leader(&mut original.clone(), 0).unwrap();
    let retry = log.append_as_leader(&mut original, 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        log.flush_wanted(opened + 1_000),
        Some(FlushReason::Background)
    );
}

/// The file names a flush plan would sync.
fn plan_file_names(plan: &crate::FlushPlan) -> Vec<String> {
    plan.files
        .iter()
        .map(|t| t.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Whether `plan` would sync the file called `name`.
fn plan_takes(plan: &crate::FlushPlan, name: &str) -> bool {
    plan_file_names(plan).iter().any(|n| n == name)
}

/// Steps 2 and 3 of a flush, without a lock to release in between.
fn sync_and_finish(log: &mut Log, plan: crate::FlushPlan) -> Result<i64, LogError> {
    let synced = plan.sync();
    log.finish_flush(plan, synced)
}

#[test]
fn a_roll_defers_its_fsyncs_to_the_next_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = Log::open(dir, small_segments(), 0).unwrap();
    log.flush().unwrap();
    for _ in 0..4 {
        log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    }
    assert!(log.segment_count() >= 2, "rolled");
    assert_eq!(log.recovery_point(), 0, "a roll does not fsync");
    assert_eq!(log.flush_wanted(NOW), Some(FlushReason::Background));
    let plan = log.prepare_flush();
    assert_eq!(log.flush_wanted(NOW), None);
    let paths = plan_file_names(&plan);
    // the sealed first segment with its indexes, the roll's producer snapshot, and the
    // active segment's data
    for name in [
        "00000000000000000000.log",
        "00000000000000000000.index",
        "00000000000000000000.timeindex",
    ] {
        assert!(paths.iter().any(|p| p == name), "{name} not in {paths:?}");
    }
    assert!(paths.iter().any(|p| p.ends_with(".snapshot")), "{paths:?}");
    assert_eq!(
        plan.dir.as_deref(),
        Some(dir),
        "new files need a directory sync"
    );
    assert_eq!(sync_and_finish(&mut log, plan).unwrap(), 8);
    let again = log.prepare_flush();
    assert!(again.files.is_empty() && again.dir.is_none(), "{again:?}");
}

#[test]
fn appends_during_a_flush_are_not_covered_by_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Log::open(tmp.path(), LogConfig::default(), 0).unwrap();
    log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    let plan = log.prepare_flush();
    assert_eq!(plan.end_offset(), 2);
    // the lock is free while the plan syncs: another producer appends meanwhile
    log.append_as_leader(&mut batch(3, NOW), 0).unwrap();
    assert_eq!(sync_and_finish(&mut log, plan).unwrap(), 2);
    let plan = log.prepare_flush();
    assert_eq!(
        plan.files.len(),
        1,
        "the .log written after the first plan: {plan:?}"
    );
    assert_eq!(sync_and_finish(&mut log, plan).unwrap(), 5);
}

#[test]
fn a_plan_also_syncs_what_unfinished_plans_took() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Log::open(tmp.path(), small_segments(), 0).unwrap();
    while log.segment_count() < 2 {
        log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    }
    // a roll's background flush takes the sealed segment and is slow to finish ...
    let roll = log.prepare_flush();
    assert!(plan_takes(&roll, "00000000000000000000.log"));
    // ... while a produce's policy flush is made, synced and finished first: it must
    // not claim the sealed segment is on disk without syncing it itself
    log.append_as_leader(&mut batch(1, NOW), 0).unwrap();
    let policy = log.prepare_flush();
    assert!(
        plan_takes(&policy, "00000000000000000000.log"),
        "{:?}",
        plan_file_names(&policy)
    );
    assert!(policy.dir.is_some(), "the roll's directory entries too");
    let end = policy.end_offset();
    assert_eq!(
        sync_and_finish(&mut log, policy).unwrap(),
        0,
        "the older plan has not finished: its fsync could still fail"
    );
    assert_eq!(sync_and_finish(&mut log, roll).unwrap(), end);
    // both finished: nothing is carried any more
    log.append_as_leader(&mut batch(1, NOW), 0).unwrap();
    let next = log.prepare_flush();
    assert!(
        !plan_takes(&next, "00000000000000000000.log"),
        "{:?}",
        plan_file_names(&next)
    );
    sync_and_finish(&mut log, next).unwrap();
}

#[test]
fn a_flush_overtaken_by_a_truncation_proves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Log::open(tmp.path(), LogConfig::default(), 0).unwrap();
    for _ in 0..3 {
        log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    }
    let plan = log.prepare_flush();
    assert_eq!(plan.end_offset(), 6);
    log.truncate_to(2).unwrap();
    // offsets 2..6 now hold different, unsynced records
    for _ in 0..2 {
        log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    }
    assert_eq!(sync_and_finish(&mut log, plan).unwrap(), 0);
    assert_eq!(log.flush().unwrap(), 6);
}

#[test]
fn after_a_failed_fsync_the_recovery_point_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Log::open(tmp.path(), LogConfig::default(), 0).unwrap();
    log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    let plan = log.prepare_flush();
    let failed = Err(LogError::Io(std::io::Error::other("EIO")));
    assert!(log.finish_flush(plan, failed).is_err());
    // a later fsync succeeding says nothing about the pages the failed one dropped
    assert!(
        log.flush().is_err(),
        "every later flush reports the failure"
    );
    assert_eq!(log.recovery_point(), 0);
    // and nothing more is appended on top (Kafka takes the log directory offline)
    let refused = log.append_as_leader(&mut batch(2, NOW), 0).unwrap_err();
    assert_eq!(
        refused.kafka_error_code(),
        56,
        "KAFKA_STORAGE_ERROR: {refused}"
    );
    assert_eq!(log.log_end_offset(), 2);
    let follower = log.append_as_follower(&batch(1, NOW)).unwrap_err();
    assert_eq!(follower.kafka_error_code(), 56);
}

#[test]
fn an_older_plan_failing_after_a_younger_one_succeeded_moves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Log::open(tmp.path(), LogConfig::default(), 0).unwrap();
    log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    let older = log.prepare_flush();
    log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    let younger = log.prepare_flush();
    // the younger fsync of the same file "succeeds": Linux told only the older one
    assert_eq!(sync_and_finish(&mut log, younger).unwrap(), 0);
    let failed = Err(LogError::Io(std::io::Error::other("EIO")));
    assert!(log.finish_flush(older, failed).is_err());
    assert_eq!(log.recovery_point(), 0);
}

#[test]
fn delete_removes_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gone-1");
    let mut log = Log::open(&dir, LogConfig::default(), 0).unwrap();
    log.append_as_leader(&mut batch(1, NOW), 0).unwrap();
    assert!(dir.exists());
    log.delete().unwrap();
    assert!(!dir.exists());
}

#[test]
fn stray_files_are_cleaned_and_foreign_ones_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = Log::open(dir, LogConfig::default(), 0).unwrap();
    log.append_as_leader(&mut batch(1, NOW), 0).unwrap();
    log.close().unwrap();
    fs::write(dir.join("00000000000000000050.index"), [0u8; 8]).unwrap();
    fs::write(dir.join("00000000000000000000.log.deleted"), b"x").unwrap();
    fs::write(dir.join("leader-epoch-checkpoint"), b"0\n0\n").unwrap();
    let log = Log::open(dir, LogConfig::default(), 1).unwrap();
    assert_eq!(log.log_end_offset(), 1);
    assert!(!dir.join("00000000000000000050.index").exists());
    assert!(!dir.join("00000000000000000000.log.deleted").exists());
    assert!(dir.join("leader-epoch-checkpoint").exists());
}

thread_local! {
    /// WARN lines logged on this thread (see `captured_warnings`).
    static CAPTURED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes into the calling thread's `CAPTURED` buffer.
struct ThreadLocalWriter;

impl std::io::Write for ThreadLocalWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with(|c| c.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run `f` and return the WARN lines it logged on this thread. A single global
/// subscriber writes each thread's lines to that thread's buffer: a scoped
/// (`with_default`) subscriber is not reliable while other tests run in parallel,
/// because `tracing` caches per-callsite interest across threads.
fn captured_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadLocalWriter)
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in these tests");
    });
    CAPTURED.with(|c| c.borrow_mut().clear());
    let out = f();
    let text = CAPTURED.with(|c| String::from_utf8(std::mem::take(&mut *c.borrow_mut())).unwrap());
    (
        out,
        text.lines()
            .filter(|l| l.contains("WARN"))
            .map(String::from)
            .collect(),
    )
}

#[test]
fn one_warning_line_per_truncation_names_partition_offset_and_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("foo-0");
    let mut log = Log::open(&dir, small_segments(), 0).unwrap();
    for _ in 0..5 {
        log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    }
    drop(log);
    // segment 4 loses 5 bytes of its last batch; segment 8 (101 bytes) then goes too
    let path = log_file(&dir, 4);
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(202 - 5)
        .unwrap();
    let (log, warnings) = captured_warnings(|| Log::open(&dir, small_segments(), 0).unwrap());
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("Truncated torn tail of foo-0 at offset 6 (197 bytes dropped, including 1 later segment(s))"),
        "{}",
        warnings[0]
    );
}

/// Deterministic xorshift, so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn corrupted_files_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..40 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let config = LogConfig {
            segment_bytes: 400,
            index_interval_bytes: 50,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir, config.clone(), 0).unwrap();
        let mut seq = 0;
        for i in 0..12 {
            let ts: Vec<i64> = (0..(1 + i % 3)).map(|j| NOW + i * 10 - j).collect();
            log.append_as_leader(&mut batch_ts(&ts, 1, 0, seq), 0)
                .unwrap();
            seq += ts.len() as i32;
        }
        let leo = log.log_end_offset();
        log.close().unwrap();
        // damage a few files: overwrite bytes, chop, or extend with garbage
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for _ in 0..3 {
            let name = &names[rng.below(names.len() as u64) as usize];
            let path = dir.join(name);
            let mut bytes = fs::read(&path).unwrap();
            match rng.below(3) {
                0 if !bytes.is_empty() => {
                    for _ in 0..1 + rng.below(8) {
                        let at = rng.below(bytes.len() as u64) as usize;
                        bytes[at] = rng.next() as u8;
                    }
                }
                1 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
                _ => bytes.extend((0..rng.below(100)).map(|_| rng.next() as u8)),
            }
            fs::write(&path, &bytes).unwrap();
        }
        // trusted (recovery point at the end) and fully recovered opens
        for recovery_point in [leo, 0] {
            let Ok(log) = Log::open(dir, config.clone(), recovery_point) else {
                continue;
            };
            for offset in log.log_start_offset()..=log.log_end_offset() {
                let _ = log.read(
                    offset,
                    1 + rng.below(500) as usize,
                    i64::MAX,
                    rng.below(2) == 0,
                );
            }
            for ts in [NOW - 50, NOW, NOW + 55, NOW + 500] {
                let _ = log.offset_for_timestamp(ts, i64::MAX);
            }
            let _ = log.offset_of_max_timestamp(i64::MAX);
            let _ = log.offset_of_max_timestamp(leo / 2);
            drop(log);
        }
        // after a full recovery the log is consistent: every batch reads back whole and valid
        let log = Log::open(dir, config, 0).unwrap();
        let all = log
            .read(log.log_start_offset(), 1 << 20, i64::MAX, false)
            .unwrap();
        let mut next = log.log_start_offset();
        for b in BatchIter::new(&all) {
            let b = b.unwrap();
            b.validate().unwrap();
            assert!(b.base_offset() >= next, "round {round}");
            next = b.next_offset();
        }
        assert_eq!(next, log.log_end_offset(), "round {round}");
    }
}

#[test]
fn truncate_fully_restarts_the_log_at_an_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &tmp.path().join("f-0");
    let mut log = Log::open(dir, small_segments(), 0).unwrap();
    for i in 0..5 {
        log.append_as_leader(&mut idempotent(2, 1, 0, i * 2), 0)
            .unwrap();
    }
    log.truncate_fully_and_start_at(1000).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![1000]);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.recovery_point()
        ),
        (1000, 1000, 1000)
    );
    assert!(log.producer_state().is_empty());
    assert_eq!(
        files_with_suffix(dir, ".log"),
        vec!["00000000000000001000.log"]
    );
    assert!(files_with_suffix(dir, ".snapshot").is_empty());
    // a follower continues from there with the leader's offsets
    let mut leader = Log::open(&tmp.path().join("l-0"), LogConfig::default(), 0).unwrap();
    leader.truncate_fully_and_start_at(1000).unwrap();
    leader.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    let fetched = leader.read(1000, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(log.append_as_follower(&fetched).unwrap().first_offset, 1000);
    assert_eq!(log.log_end_offset(), 1002);
    drop(log);
    let log = Log::open(dir, small_segments(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (1000, 1002));
}

#[test]
fn timestamp_lookups_decode_compressed_batches() {
    use ottla_protocol::records::{build_record_batch, Record};
    let records = |timestamps: &[i64]| -> Vec<Record> {
        timestamps
            .iter()
            .enumerate()
            .map(|(i, &timestamp)| Record {
                offset: i as i64,
                timestamp,
                key: Some(format!("k{i}").into_bytes()),
                value: Some(vec![b'v'; 50]),
                headers: vec![],
            })
            .collect()
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Log::open(tmp.path(), LogConfig::default(), 0).unwrap();
    let mut gzip = build_record_batch(&records(&[10, 30, 20]), Compression::Gzip, -1, -1, -1);
    let mut zstd = build_record_batch(&records(&[25, 40, 40]), Compression::Zstd, -1, -1, -1);
    log.append_as_leader(&mut gzip, 0).unwrap(); // 0..=2
    log.append_as_leader(&mut zstd, 0).unwrap(); // 3..=5
    assert_eq!(
        log.offset_for_timestamp(15, i64::MAX).unwrap(),
        Some((1, 30))
    );
    assert_eq!(
        log.offset_for_timestamp(31, i64::MAX).unwrap(),
        Some((4, 40))
    );
    assert_eq!(
        log.offset_of_max_timestamp(i64::MAX).unwrap(),
        Some((4, 40))
    );
    assert_eq!(log.offset_of_max_timestamp(4).unwrap(), Some((1, 30)));
    let mut expected = gzip.clone();
    expected.extend_from_slice(&zstd);
    assert_eq!(
        &log.read(0, 1 << 20, i64::MAX, false).unwrap()[..],
        &expected[..]
    );
}

#[test]
fn an_index_write_failure_undoes_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = Log::open(dir, small_segments(), 0).unwrap();
    log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    let log_file = dir.join("00000000000000000000.log");
    let size = fs::metadata(&log_file).unwrap().len();
    // Reopened, the log opens the offset index's append handle at its next entry,
    // which then fails: a directory stands in the file's place.
    drop(log);
    let mut log = Log::open(dir, small_segments(), 2).unwrap();
    let index = dir.join("00000000000000000000.index");
    // The file exists only once the index has an entry (see `SegmentIndex::create`).
    let _ = fs::remove_file(&index);
    fs::create_dir(&index).unwrap();
    assert!(log.append_as_leader(&mut batch(3, NOW), 0).is_err());
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(
        fs::metadata(&log_file).unwrap().len(),
        size,
        "the batch's bytes are gone"
    );
    fs::remove_dir(&index).unwrap();
    fs::write(&index, []).unwrap();
    assert_eq!(
        log.append_as_leader(&mut batch(1, NOW), 0)
            .unwrap()
            .first_offset,
        2
    );
    let read = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(base_offsets(&read), vec![0, 2]);
    drop(log);
    let log = Log::open(dir, small_segments(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(
        base_offsets(&log.read(0, 1 << 20, i64::MAX, false).unwrap()),
        vec![0, 2]
    );
}

/// (epoch, start offset) of every entry of the log's leader-epoch cache.
fn epochs(log: &Log) -> Vec<(i32, i64)> {
    log.leader_epoch_cache()
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

fn checkpoint(dir: &Path) -> String {
    fs::read_to_string(dir.join(crate::LEADER_EPOCH_CHECKPOINT)).unwrap()
}

/// Four 2-record batches (101 bytes each) with leader epochs 0, 0, 2, 5: offsets 0, 2,
/// 4, 6, in segments 0 and 4 (two batches per segment with `small_segments`).
fn log_with_epochs_0_0_2_5(dir: &Path) -> Log {
    let mut log = Log::open(dir, small_segments(), 0).unwrap();
    for epoch in [0, 0, 2, 5] {
        log.append_as_leader(&mut batch(2, NOW), epoch).unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 4]);
    assert_eq!(log.log_end_offset(), 8);
    log
}

#[test]
fn leader_appends_record_the_first_offset_of_each_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &tmp.path().join("e-0");
    // a new log has no epoch yet, and no checkpoint: a missing file means no epochs
    let log = Log::open(dir, small_segments(), 0).unwrap();
    assert!(!dir.join("leader-epoch-checkpoint").exists());
    assert_eq!(log.latest_epoch(), None);
    drop(log);
    let log = log_with_epochs_0_0_2_5(dir);
    assert_eq!(epochs(&log), vec![(0, 0), (2, 4), (5, 6)]);
    assert_eq!(checkpoint(dir), "0\n3\n0 0\n2 4\n5 6\n");
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(0), (0, 4));
    assert_eq!(log.end_offset_for_epoch(1), (0, 4));
    assert_eq!(log.end_offset_for_epoch(2), (2, 6));
    assert_eq!(log.end_offset_for_epoch(5), (5, 8));
    assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
    assert_eq!(log.end_offset_for_epoch(-1), (-1, -1));
    assert_eq!(log.epoch_for_offset(3), Some(0));
    assert_eq!(log.epoch_for_offset(4), Some(2));
    assert_eq!(log.epoch_for_offset(7), Some(5));
}

#[test]
fn a_duplicate_or_an_append_without_an_epoch_records_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = Log::open(dir, LogConfig::default(), 0).unwrap();
    log.append_as_leader(&mut idempotent(2, 7, 0, 0), 1)
        .unwrap();
    // the retry reaches a newer leader: answered from the original, no new epoch
    let retry = log
        .append_as_leader(&mut idempotent(2, 7, 0, 0), 2)
        .unwrap();
    assert!(retry.duplicate);
    log.append_as_leader(&mut batch(1, NOW), -1).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0)]);
    assert_eq!(checkpoint(dir), "0\n1\n1 0\n");
}

#[test]
fn reopen_keeps_the_leader_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = log_with_epochs_0_0_2_5(dir);
    log.close().unwrap();
    for recovery_point in [8, 0] {
        let log = Log::open(dir, small_segments(), recovery_point).unwrap();
        assert_eq!(epochs(&log), vec![(0, 0), (2, 4), (5, 6)]);
        assert_eq!(checkpoint(dir), "0\n3\n0 0\n2 4\n5 6\n");
    }
}

#[test]
fn a_missing_checkpoint_is_rebuilt_from_every_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    log_with_epochs_0_0_2_5(dir).close().unwrap();
    fs::remove_file(dir.join("leader-epoch-checkpoint")).unwrap();
    // the recovery point at the log end: recovery scans segment 4 only, the rebuild
    // still walks segment 0 for epoch 0
    let log = Log::open(dir, small_segments(), 8).unwrap();
    assert_eq!(epochs(&log), vec![(0, 0), (2, 4), (5, 6)]);
    assert_eq!(checkpoint(dir), "0\n3\n0 0\n2 4\n5 6\n");
}

#[test]
fn a_present_checkpoint_is_completed_from_the_recovered_segments_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    log_with_epochs_0_0_2_5(dir).close().unwrap();
    // a checkpoint that knows nothing: as Kafka's recovery, only the batches of the
    // segments from the recovery point on (segment 4) are looked at
    fs::write(dir.join("leader-epoch-checkpoint"), "0\n0\n").unwrap();
    let log = Log::open(dir, small_segments(), 8).unwrap();
    assert_eq!(epochs(&log), vec![(2, 4), (5, 6)]);
    assert_eq!(checkpoint(dir), "0\n2\n2 4\n5 6\n");
    drop(log);
    // a checkpoint behind the log (epoch 2 only): recovery from offset 4 adds epoch 5
    // and keeps the older entries, which it meets again in the batches
    fs::write(dir.join("leader-epoch-checkpoint"), "0\n2\n0 0\n2 4\n").unwrap();
    let log = Log::open(dir, small_segments(), 4).unwrap();
    assert_eq!(epochs(&log), vec![(0, 0), (2, 4), (5, 6)]);
    drop(log);
    // entries past the log end (a crash after the checkpoint but before the batches
    // reached the disk) are cut to the log end
    fs::write(
        dir.join("leader-epoch-checkpoint"),
        "0\n4\n0 0\n2 4\n5 6\n9 8\n",
    )
    .unwrap();
    let log = Log::open(dir, small_segments(), 8).unwrap();
    assert_eq!(epochs(&log), vec![(0, 0), (2, 4), (5, 6)]);
    assert_eq!(checkpoint(dir), "0\n3\n0 0\n2 4\n5 6\n");
}

#[test]
fn a_malformed_checkpoint_is_rebuilt_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m-2");
    log_with_epochs_0_0_2_5(&dir).close().unwrap();
    fs::write(dir.join("leader-epoch-checkpoint"), "0\n3\n0 0\n2 four\n").unwrap();
    let (log, warnings) = captured_warnings(|| Log::open(&dir, small_segments(), 8).unwrap());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("Ignoring malformed")
            && warnings[0].contains("leader-epoch-checkpoint of m-2"),
        "{}",
        warnings[0]
    );
    assert_eq!(epochs(&log), vec![(0, 0), (2, 4), (5, 6)]);
    assert_eq!(checkpoint(&dir), "0\n3\n0 0\n2 4\n5 6\n");
}

#[test]
fn truncation_drops_the_epochs_at_and_after_the_new_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = log_with_epochs_0_0_2_5(dir);
    // offset 7 is inside the batch at 6 (epoch 5): the batch and its epoch go
    log.truncate_to(7).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(epochs(&log), vec![(0, 0), (2, 4)]);
    assert_eq!(checkpoint(dir), "0\n2\n0 0\n2 4\n");
    // offset 5 is inside the batch at 4, the first of epoch 2
    log.truncate_to(5).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(epochs(&log), vec![(0, 0)]);
    assert_eq!(log.end_offset_for_epoch(0), (0, 4));
    // a new leader continues with its own epoch
    log.append_as_leader(&mut batch(1, NOW), 6).unwrap();
    assert_eq!(epochs(&log), vec![(0, 0), (6, 4)]);
    assert_eq!(log.end_offset_for_epoch(5), (0, 4));
    // below the first segment: the log restarts empty, and so does the cache
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!(epochs(&log), vec![]);
    assert_eq!(checkpoint(dir), "0\n0\n");
    drop(log);
    let log = Log::open(dir, small_segments(), 0).unwrap();
    assert_eq!(epochs(&log), vec![]);
}

#[test]
fn retention_moves_the_first_epoch_to_the_new_log_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = LogConfig {
        retention_ms: 1000,
        ..small_segments()
    };
    let mut log = Log::open(dir, config.clone(), 0).unwrap();
    for (ts, epoch) in [
        (NOW - 5000, 1),
        (NOW - 5000, 1),
        (NOW - 4000, 1),
        (NOW - 4000, 3),
        (NOW - 10, 3),
        (NOW, 4),
    ] {
        log.append_as_leader(&mut batch(2, ts), epoch).unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
    assert_eq!(epochs(&log), vec![(1, 0), (3, 6), (4, 10)]);
    // segment 0 goes: offset 4, the new start, was written in epoch 1
    assert_eq!(log.apply_retention_below(NOW, 4).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(epochs(&log), vec![(1, 4), (3, 6), (4, 10)]);
    // segment 4 goes: epoch 1 is gone, epoch 3 now starts at 8
    assert_eq!(log.apply_retention(NOW).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 8);
    assert_eq!(epochs(&log), vec![(3, 8), (4, 10)]);
    assert_eq!(checkpoint(dir), "0\n2\n3 8\n4 10\n");
    drop(log);
    let log = Log::open(dir, config, 0).unwrap();
    assert_eq!(epochs(&log), vec![(3, 8), (4, 10)]);
}

#[test]
fn follower_appends_take_the_epochs_stamped_by_the_leader() {
    let tmp = tempfile::tempdir().unwrap();
    let mut leader = Log::open(&tmp.path().join("leader"), LogConfig::default(), 0).unwrap();
    for epoch in [1, 1, 4] {
        leader.append_as_leader(&mut batch(2, NOW), epoch).unwrap();
    }
    let fetched = leader.read(0, 1 << 20, i64::MAX, false).unwrap();
    let follower_dir = tmp.path().join("follower");
    let mut follower = Log::open(&follower_dir, LogConfig::default(), 0).unwrap();
    follower.append_as_follower(&fetched).unwrap();
    assert_eq!(epochs(&follower), vec![(1, 0), (4, 4)]);
    assert_eq!(checkpoint(&follower_dir), "0\n2\n1 0\n4 4\n");
    // a batch without a leader epoch (-1) changes nothing
    let mut unstamped = batch(1, NOW);
    ottla_protocol::batch::RecordBatchMut::new(&mut unstamped)
        .unwrap()
        .set_base_offset(6);
    assert_eq!(
        RecordBatch::new(&unstamped)
            .unwrap()
            .partition_leader_epoch(),
        -1
    );
    follower.append_as_follower(&unstamped).unwrap();
    assert_eq!(follower.log_end_offset(), 7);
    assert_eq!(epochs(&follower), vec![(1, 0), (4, 4)]);
}

#[test]
fn delete_segments_below_keeps_the_segment_holding_the_offset_and_the_active_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = LogConfig {
        retention_ms: -1,
        ..small_segments()
    };
    let mut log = Log::open(dir, config.clone(), 0).unwrap();
    for epoch in [0, 0, 1, 1, 2, 2, 3] {
        log.append_as_leader(&mut batch(2, NOW), epoch).unwrap();
    }
    // two batches of 101 bytes per segment: 0, 4, 8, and 12 (active, one batch)
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8, 12]);
    // offset 5 lies inside segment 4: only segment 0 is wholly below it
    assert_eq!(log.delete_segments_below(3).unwrap(), 0);
    assert_eq!(log.delete_segments_below(5).unwrap(), 1);
    assert_eq!(log.segment_base_offsets(), vec![4, 8, 12]);
    assert_eq!(log.log_start_offset(), 4);
    assert!(!log_file(dir, 0).exists());
    // the first offset keeps its epoch; epoch 0 is gone from the checkpoint
    assert_eq!(log.epoch_for_offset(4), Some(1));
    assert_eq!(log.leader_epoch_cache().entries()[0].start_offset, 4);
    // past the log end: everything but the active segment
    assert_eq!(log.delete_segments_below(100).unwrap(), 2);
    assert_eq!(log.segment_base_offsets(), vec![12]);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 14));
    assert_eq!(
        base_offsets(&log.read(12, 1 << 20, i64::MAX, true).unwrap()),
        vec![12]
    );
    log.flush().unwrap();
    drop(log);
    let log = Log::open(dir, config, 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 14));
    assert_eq!(log.latest_epoch(), Some(3));
}

fn transactional(records: usize, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let mut b = idempotent(records, pid, epoch, seq);
    ottla_protocol::batch::RecordBatchMut::new(&mut b)
        .unwrap()
        .set_transactional(false);
    b
}

fn marker(pid: i64, epoch: i16, commit: bool) -> Vec<u8> {
    use ottla_protocol::control::{build_end_txn_marker, ControlRecordType};
    let kind = if commit {
        ControlRecordType::Commit
    } else {
        ControlRecordType::Abort
    };
    build_end_txn_marker(pid, epoch, 0, kind, NOW)
}

#[test]
fn open_transactions_bound_the_stable_offset_and_aborts_are_indexed_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments(), 0).unwrap();
    // pid 1 opens a transaction at 0; pid 2 opens one at 2 and pid 3 writes plainly.
    log.append_as_leader(&mut transactional(2, 1, 0, 0), 0)
        .unwrap();
    assert_eq!(log.first_unstable_offset(), Some(0));
    log.append_as_leader(&mut transactional(1, 2, 0, 0), 0)
        .unwrap();
    log.append_as_leader(&mut idempotent(1, 3, 0, 0), 0)
        .unwrap();
    // pid 1 commits at 4: the oldest open transaction is now pid 2's at 2.
    log.append_as_leader(&mut marker(1, 0, true), 0).unwrap();
    assert_eq!(log.first_unstable_offset(), Some(2));
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    // pid 2 aborts at 5: nothing is open, and its transaction [2, 5] is indexed.
    log.append_as_leader(&mut marker(2, 0, false), 0).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
    let aborted = log.aborted_transactions(0, i64::MAX);
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (
            aborted[0].producer_id,
            aborted[0].first_offset,
            aborted[0].last_offset
        ),
        (2, 2, 5)
    );
    // A fetch that ends before the transaction or starts after its marker skips it.
    assert!(log.aborted_transactions(0, 2).is_empty());
    assert!(log.aborted_transactions(6, i64::MAX).is_empty());
    assert_eq!(log.aborted_transactions(5, 6).len(), 1);
    // pid 1 opens another transaction, left open across a crash (no close).
    log.append_as_leader(&mut transactional(1, 1, 0, 2), 0)
        .unwrap();
    assert_eq!(log.first_unstable_offset(), Some(6));
    assert!(!files_with_suffix(dir.path(), "txnindex").is_empty());
    drop(log);

    // Reopened with recovery from 0: the index is rebuilt from the markers.
    let log = Log::open(dir.path(), small_segments(), 0).unwrap();
    assert_eq!(log.first_unstable_offset(), Some(6));
    let again = log.aborted_transactions(0, i64::MAX);
    assert_eq!(again, aborted);
    // Reopened after a clean close: the entries come from the .txnindex files.
    log.close().unwrap();
    let mut log = Log::open(dir.path(), small_segments(), 7).unwrap();
    assert_eq!(log.aborted_transactions(0, i64::MAX), aborted);
    assert_eq!(log.first_unstable_offset(), Some(6));
    // Truncating below the abort marker forgets it, in memory and on disk.
    log.truncate_to(5).unwrap();
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    assert_eq!(log.first_unstable_offset(), Some(2));
    drop(log);
    let log = Log::open(dir.path(), small_segments(), 5).unwrap();
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
}

#[test]
fn incrementing_the_log_start_offset_hides_records_and_deletes_whole_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = Log::open(dir, small_segments(), 0).unwrap();
    for _ in 0..6 {
        log.append_as_leader(&mut batch(2, NOW), 0).unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
    // Inside the second segment: the first goes, the second stays but starts later.
    assert!(log
        .increment_log_start_offset(5, "ClientRecordDeletion")
        .unwrap());
    assert_eq!(log.segment_base_offsets(), vec![4, 8]);
    assert_eq!(log.log_start_offset(), 5);
    assert!(!log_file(dir, 0).exists());
    assert!(matches!(
        log.read(4, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Never backwards, never past the log end.
    assert!(!log
        .increment_log_start_offset(3, "ClientRecordDeletion")
        .unwrap());
    assert!(log
        .increment_log_start_offset(99, "ClientRecordDeletion")
        .unwrap());
    assert_eq!(log.log_start_offset(), 12);
    assert_eq!(log.log_end_offset(), 12);
    // A reopen starts at the first segment's base again: the owner's checkpoint
    // (log-start-offset-checkpoint) restores the rest.
    drop(log);
    let log = Log::open(dir, small_segments(), 0).unwrap();
    assert!(log.log_start_offset() <= 12);
}

#[test]
fn deleted_segments_are_renamed_and_removed_after_the_delay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = LogConfig {
        retention_ms: 1000,
        file_delete_delay_ms: 60_000,
        ..small_segments()
    };
    let mut log = Log::open(dir, config, 0).unwrap();
    for ts in [NOW - 5000, NOW - 5000, NOW, NOW] {
        log.append_as_leader(&mut batch(2, ts), 0).unwrap();
    }
    assert_eq!(log.apply_retention(NOW).unwrap(), 1);
    assert!(!log_file(dir, 0).exists());
    assert_eq!(
        files_with_suffix(dir, ".deleted"),
        vec![
            "00000000000000000000.index.deleted",
            "00000000000000000000.log.deleted",
            "00000000000000000000.timeindex.deleted"
        ]
    );
    assert_eq!(log.remove_deleted_files(NOW + 59_999), 0, "not yet");
    assert_eq!(log.remove_deleted_files(NOW + 60_000), 1);
    assert!(files_with_suffix(dir, ".deleted").is_empty());
    // A crash before the delay: the next open removes the leftovers.
    log.append_as_leader(&mut batch(2, NOW + 10_000), 0)
        .unwrap();
    assert!(log.apply_retention(NOW + 100_000).unwrap() > 0);
    assert!(!files_with_suffix(dir, ".deleted").is_empty());
    drop(log);
    let _log = Log::open(dir, small_segments(), 0).unwrap();
    assert!(files_with_suffix(dir, ".deleted").is_empty());
}

/// A log holds no open file after an open; reads reopen the files, and two sweeps
/// without reads close them again.
#[test]
fn segment_files_open_when_read_and_close_when_idle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir, config.clone(), 0).unwrap();
    for i in 0..30 {
        log.append_as_leader(&mut batch(2, NOW + i), 0).unwrap();
    }
    let segments = log.segment_count();
    assert!(segments >= 5, "{segments} segments");
    let recovery_point = log.flush().unwrap();
    drop(log);
    let log = Log::open(dir, config, recovery_point).unwrap();
    // Open leaves no file open, not even the active segment's (recovered) `.log`.
    assert_eq!(log.close_idle_files(), 0);
    assert_eq!(log.close_idle_files(), 0);
    // Reading every offset opens the sealed segments again, and gives right answers.
    for offset in 0..60 {
        assert_eq!(
            base_offsets(&log.read(offset, 1, i64::MAX, true).unwrap()),
            vec![offset - offset % 2]
        );
    }
    assert_eq!(
        log.offset_for_timestamp(NOW + 17, i64::MAX).unwrap(),
        Some((34, NOW + 17))
    );
    // Used since the last sweep: kept; then closed, one `.log` per segment.
    assert_eq!(log.close_idle_files(), 0);
    assert_eq!(log.close_idle_files(), segments);
}

/// Issue 11's bounded cache: a sealed index's summary is built by the first lookup,
/// dropped by the idle sweep with the segment's file handles, and rebuilt by the next
/// lookup, which still answers right; so the summaries held stay bounded by the
/// segments in use (here at most two of 23), not by the segments in the log.
#[test]
fn sealed_index_summaries_are_dropped_when_idle_and_rebuilt_by_the_next_lookup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir, config.clone(), 0).unwrap();
    for i in 0..120 {
        log.append_as_leader(&mut batch(2, NOW + i), 0).unwrap();
    }
    let recovery_point = log.flush().unwrap();
    drop(log);
    let log = Log::open(dir, config, recovery_point).unwrap();
    let bases = log.segment_base_offsets();
    let sealed = bases.len() - 1;
    assert!(sealed >= 20, "{sealed} sealed segments");
    assert_eq!(
        log.resident_index_summary_bytes(),
        0,
        "nothing built at open"
    );
    let read_all = |log: &Log| {
        for offset in 0..240 {
            assert_eq!(
                base_offsets(&log.read(offset, 1, i64::MAX, true).unwrap()),
                vec![offset - offset % 2]
            );
        }
        for i in 0..120 {
            assert_eq!(
                log.offset_for_timestamp(NOW + i, i64::MAX).unwrap(),
                Some((2 * i, NOW + i))
            );
        }
    };
    read_all(&log);
    let all = log.resident_index_summary_bytes();
    assert!(all > 0, "lookups built the summaries");
    // Used since the last sweep: kept; then dropped with the idle files.
    log.close_idle_files();
    assert_eq!(log.resident_index_summary_bytes(), all);
    log.close_idle_files();
    assert_eq!(
        log.resident_index_summary_bytes(),
        0,
        "idle summaries dropped"
    );
    // Lookups rebuild them and still answer right.
    read_all(&log);
    assert_eq!(log.resident_index_summary_bytes(), all);
    log.close_idle_files();
    log.close_idle_files();
    // A reader moving through the log, one segment per sweep interval: at most the
    // segment it reads and the one before it hold a summary.
    let per_segment = all / sealed;
    for pair in bases.windows(2) {
        for offset in pair[0]..pair[1] {
            assert_eq!(
                base_offsets(&log.read(offset, 1, i64::MAX, true).unwrap()),
                vec![offset - offset % 2]
            );
            let ts = NOW + offset / 2;
            assert_eq!(
                log.offset_for_timestamp(ts, i64::MAX).unwrap(),
                Some((offset - offset % 2, ts))
            );
        }
        let resident = log.resident_index_summary_bytes();
        assert!(
            resident > 0 && resident <= 2 * per_segment,
            "segment {}: {resident} bytes resident, {per_segment} per segment",
            pair[0]
        );
        log.close_idle_files();
    }
    assert!(log.resident_index_summary_bytes() <= per_segment);
}

/// A `.log` and index written and then closed by the sweep before the flush are synced
/// by reopening them: the flush succeeds, the recovery point advances, and a reopen
/// trusts the sealed segments (nothing is rebuilt or lost).
#[test]
fn a_flush_after_the_sweep_closed_written_files_reopens_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir, config.clone(), 0).unwrap();
    for i in 0..20 {
        log.append_as_leader(&mut batch(2, NOW + i), 0).unwrap();
    }
    log.close_idle_files();
    assert!(
        log.close_idle_files() > 0,
        "written files are closed when idle"
    );
    let recovery_point = log.flush().unwrap();
    assert_eq!(recovery_point, 40);
    drop(log);
    let log = Log::open(dir, config, recovery_point).unwrap();
    assert_eq!(log.log_end_offset(), 40);
    for offset in 0..40 {
        assert_eq!(
            base_offsets(&log.read(offset, 1, i64::MAX, true).unwrap()),
            vec![offset - offset % 2]
        );
    }
}

/// Producer 9 (epoch 0) appends six 2-record batches, sequences 0, 2, …, 10 at the same
/// offsets, over three 2-batch segments [0, 4, 8]: the active segment holds only the
/// last two batches, and the roll snapshot at its base (what every open starts from)
/// has room, in Kafka's format, for the fourth batch only.
fn six_batches_over_three_segments(dir: &Path) -> Log {
    let mut log = Log::open(dir, small_segments(), 0).unwrap();
    for seq in (0..12).step_by(2) {
        let appended = log
            .append_as_leader(&mut idempotent(2, 9, 0, seq), 0)
            .unwrap();
        assert_eq!(appended.first_offset, i64::from(seq));
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
    log
}

/// Retries of sequences `dups` are answered with their original offsets and write
/// nothing; `out_of_window` is OUT_OF_ORDER_SEQUENCE_NUMBER (Kafka's answer for a batch
/// no longer cached: `ProducerAppendInfo.checkSequence`); the next sequence goes on.
fn assert_retries(log: &mut Log, dups: &[i32], out_of_window: &[i32]) {
    let end = log.log_end_offset();
    for &seq in dups {
        let dup = log
            .append_as_leader(&mut idempotent(2, 9, 0, seq), 0)
            .unwrap();
        assert!(dup.duplicate, "seq {seq} is a duplicate");
        assert_eq!(
            (dup.first_offset, dup.last_offset),
            (i64::from(seq), i64::from(seq) + 1),
            "seq {seq} answered with its original offsets"
        );
    }
    for &seq in out_of_window {
        let err = log
            .append_as_leader(&mut idempotent(2, 9, 0, seq), 0)
            .unwrap_err();
        assert!(
            matches!(
                err,
                LogError::OutOfOrderSequence {
                    expected: 12,
                    received,
                    ..
                } if received == seq
            ),
            "seq {seq}: {err:?}"
        );
        assert_eq!(err.kafka_error_code(), 45);
    }
    assert_eq!(log.log_end_offset(), end, "nothing was written");
}

#[test]
fn clean_restart_recognises_retries_of_the_last_five_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = six_batches_over_three_segments(dir);
    // Each roll snapshot has its companion, synced by the next flush with it.
    let plan = log.prepare_flush();
    for name in [
        "00000000000000000004.snapshot",
        "00000000000000000004.snapshot.batches",
        "00000000000000000008.snapshot",
        "00000000000000000008.snapshot.batches",
    ] {
        assert!(
            plan_takes(&plan, name),
            "{name} not in {:?}",
            plan_file_names(&plan)
        );
    }
    sync_and_finish(&mut log, plan).unwrap();
    let leo = log.log_end_offset();
    log.close().unwrap();
    // The `.snapshot` files stay Kafka's version 1, one 46-byte entry per producer.
    let snapshots = files_with_suffix(dir, ".snapshot");
    assert_eq!(
        snapshots,
        [
            "00000000000000000004.snapshot",
            "00000000000000000008.snapshot",
            "00000000000000000012.snapshot"
        ]
    );
    for name in &snapshots {
        let bytes = fs::read(dir.join(name)).unwrap();
        assert_eq!(&bytes[..2], &1i16.to_be_bytes(), "{name}");
        assert_eq!(bytes.len(), 10 + 46, "{name}");
    }

    let mut log = Log::open(dir, small_segments(), leo).unwrap();
    let state = log.producer_state().get(9).unwrap();
    let firsts: Vec<i32> = state.batches().map(|b| b.first_seq).collect();
    assert_eq!(firsts, vec![2, 4, 6, 8, 10]);
    assert_retries(&mut log, &[2, 4, 6, 8, 10], &[0]);
    assert_eq!(
        log.append_as_leader(&mut idempotent(2, 9, 0, 12), 0)
            .unwrap()
            .first_offset,
        12
    );
    // The companions go with their snapshots.
    log.truncate_fully_and_start_at(100).unwrap();
    assert!(files_with_suffix(dir, ".snapshot.batches").is_empty());
}

#[test]
fn crash_restart_recognises_retries_of_the_last_five_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = six_batches_over_three_segments(dir);
    let recovery_point = log.flush().unwrap();
    assert_eq!(recovery_point, 12);
    drop(log); // a crash: no close, no snapshot at the log end
    assert!(!dir.join("00000000000000000012.snapshot").exists());
    let mut log = Log::open(dir, small_segments(), recovery_point).unwrap();
    assert_retries(&mut log, &[2, 4, 6, 8, 10], &[0]);
}

#[test]
fn without_its_companion_a_snapshot_restores_what_kafka_does() {
    // Kafka's snapshot alone gives each producer its last batch (Kafka's own
    // `readSnapshot`): seq 6 from the roll snapshot at 8, then 8 and 10 replayed from
    // the active segment. The older two are out of order, as Kafka answers them.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = six_batches_over_three_segments(dir);
    let leo = log.log_end_offset();
    log.close().unwrap();
    let companions = files_with_suffix(dir, ".snapshot.batches");
    assert!(!companions.is_empty());
    for name in companions {
        fs::remove_file(dir.join(name)).unwrap();
    }
    let mut log = Log::open(dir, small_segments(), leo).unwrap();
    assert_retries(&mut log, &[6, 8, 10], &[0, 2, 4]);
}

#[test]
fn damaged_stray_or_mismatched_companions_are_ignored_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = six_batches_over_three_segments(dir);
    let leo = log.log_end_offset();
    log.close().unwrap();
    let at_4 = dir.join("00000000000000000004.snapshot.batches");
    let at_8 = dir.join("00000000000000000008.snapshot.batches");
    // Another snapshot's companion (valid on its own): its CRC tie does not match.
    fs::copy(&at_4, &at_8).unwrap();
    // A companion whose snapshot is gone (a crash between their writes).
    let stray = dir.join("00000000000000000002.snapshot.batches");
    fs::copy(&at_4, &stray).unwrap();
    let mut log = Log::open(dir, small_segments(), leo).unwrap();
    assert!(
        !stray.exists(),
        "a companion without its snapshot is deleted"
    );
    assert!(!at_8.exists(), "an ignored companion is deleted");
    assert!(dir.join("00000000000000000008.snapshot").exists());
    assert_retries(&mut log, &[6, 8, 10], &[0, 2, 4]);
    drop(log);

    // A torn companion.
    let log = six_batches_over_three_segments(&dir.join("torn"));
    log.close().unwrap();
    let at_8 = dir.join("torn/00000000000000000008.snapshot.batches");
    let bytes = fs::read(&at_8).unwrap();
    fs::write(&at_8, &bytes[..bytes.len() - 3]).unwrap();
    let mut log = Log::open(&dir.join("torn"), small_segments(), leo).unwrap();
    assert!(!at_8.exists());
    assert_retries(&mut log, &[6, 8, 10], &[0, 2, 4]);
}

/// Kafka's `checkCoordinatorEpoch`: a marker from an older coordinator epoch than the
/// producer's last marker is a zombie coordinator's, refused with
/// TRANSACTION_COORDINATOR_FENCED; the epoch survives a clean restart (snapshot) and a
/// crash (rebuilt from the markers).
#[test]
fn markers_from_an_older_coordinator_epoch_are_fenced_across_restarts() {
    use ottla_protocol::control::{build_end_txn_marker, ControlRecordType};
    let marker_at = |coordinator_epoch: i32| {
        build_end_txn_marker(7, 0, coordinator_epoch, ControlRecordType::Commit, NOW)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments(), 0).unwrap();
    log.append_as_leader(&mut transactional(1, 7, 0, 0), 0)
        .unwrap();
    log.append_as_coordinator(&mut marker_at(5), 0).unwrap();
    assert_eq!(log.producer_state().get(7).unwrap().coordinator_epoch(), 5);
    let end = log.log_end_offset();
    let err = log.append_as_coordinator(&mut marker_at(4), 0).unwrap_err();
    assert!(matches!(
        err,
        LogError::TransactionCoordinatorFenced {
            producer_id: 7,
            current: 5,
            received: 4
        }
    ));
    assert_eq!(err.kafka_error_code(), 52);
    assert_eq!(log.log_end_offset(), end, "a fenced marker was appended");
    // The same epoch is accepted (a retry), a newer one moves the fence.
    log.append_as_leader(&mut transactional(1, 7, 0, 1), 0)
        .unwrap();
    log.append_as_coordinator(&mut marker_at(5), 0).unwrap();
    log.append_as_leader(&mut transactional(1, 7, 0, 2), 0)
        .unwrap();
    log.append_as_coordinator(&mut marker_at(6), 0).unwrap();

    // A crash: the producer state is rebuilt from the log, markers read whole.
    drop(log);
    let mut log = Log::open(dir.path(), small_segments(), 0).unwrap();
    assert_eq!(log.producer_state().get(7).unwrap().coordinator_epoch(), 6);
    assert!(matches!(
        log.append_as_coordinator(&mut marker_at(5), 0),
        Err(LogError::TransactionCoordinatorFenced { current: 6, .. })
    ));
    // A clean close: from the snapshot.
    let end = log.log_end_offset();
    log.close().unwrap();
    let mut log = Log::open(dir.path(), small_segments(), end).unwrap();
    assert_eq!(log.producer_state().get(7).unwrap().coordinator_epoch(), 6);
    assert!(matches!(
        log.append_as_coordinator(&mut marker_at(5), 0),
        Err(LogError::TransactionCoordinatorFenced { current: 6, .. })
    ));
}
