//! Small files Kafka keeps next to the partition logs, in Kafka's own formats so that
//! operators (and Kafka's tools) recognise them:
//!
//! - `recovery-point-offset-checkpoint` in each log dir: per partition, the offset up to
//!   which data is known to be flushed; recovery after a crash scans only beyond it.
//! - `replication-offset-checkpoint` in each log dir: per partition, the high
//!   watermark, so a restarted replica does not expose records that were never
//!   committed (or hide committed ones) before its leader tells it the current one.
//! - `.kafka_cleanshutdown` in each log dir: present only after a clean shutdown, in
//!   which case the checkpoint equals the log end and no scan is needed.
//! - `partition.metadata` in each partition dir: the topic id, so that a directory left
//!   behind by a deleted topic is never mistaken for a new topic of the same name.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use ottla_protocol::kafka_uuid::{decode_topic_id, encode_topic_id};
use uuid::Uuid;

pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
pub const REPLICATION_OFFSET_CHECKPOINT: &str = "replication-offset-checkpoint";
/// Kafka's per-log-dir file of log start offsets (those DeleteRecords moved).
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
/// Kafka's `cleaner-offset-checkpoint`: where each compacted log's dirty part begins.
pub const CLEANER_OFFSET_CHECKPOINT: &str = "cleaner-offset-checkpoint";
pub const CLEAN_SHUTDOWN_MARKER: &str = ".kafka_cleanshutdown";
pub const PARTITION_METADATA: &str = "partition.metadata";
const CHECKPOINT_VERSION: i32 = 0;

/// (topic, partition) → offset.
pub type OffsetCheckpoint = BTreeMap<(String, i32), i64>;

/// Write atomically: temp file, fsync, rename, so a crash leaves the old or the new file.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        // Make the rename itself durable.
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Kafka's checkpoint text format: version line, count line, `topic partition offset` lines.
pub fn write_offset_checkpoint(path: &Path, offsets: &OffsetCheckpoint) -> std::io::Result<()> {
    let mut s = format!("{CHECKPOINT_VERSION}\n{}\n", offsets.len());
    for ((topic, partition), offset) in offsets {
        s.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    write_atomically(path, s.as_bytes())
}

/// Read a checkpoint; a missing file is empty, a malformed one is ignored with a
/// warning (the cost is a longer recovery scan, never lost data).
pub fn read_offset_checkpoint(path: &Path) -> OffsetCheckpoint {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return OffsetCheckpoint::new(),
        Err(e) => {
            tracing::warn!("Ignoring unreadable checkpoint {}: {e}", path.display());
            return OffsetCheckpoint::new();
        }
    };
    match parse_offset_checkpoint(&text) {
        Some(c) => c,
        None => {
            tracing::warn!("Ignoring malformed checkpoint {}", path.display());
            OffsetCheckpoint::new()
        }
    }
}

fn parse_offset_checkpoint(text: &str) -> Option<OffsetCheckpoint> {
    let mut lines = text.lines();
    if lines.next()?.trim().parse::<i32>().ok()? != CHECKPOINT_VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut out = OffsetCheckpoint::new();
    for line in lines.by_ref().take(count) {
        let mut parts = line.split(' ');
        let topic = parts.next()?.to_string();
        let partition = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        out.insert((topic, partition), offset);
    }
    (out.len() == count).then_some(out)
}

/// Kafka's `partition.metadata`: `version: 0` and `topic_id: <base64 uuid>`.
pub fn write_partition_metadata(partition_dir: &Path, topic_id: Uuid) -> std::io::Result<()> {
    let text = format!("version: 0\ntopic_id: {}\n", encode_topic_id(topic_id));
    write_atomically(&partition_dir.join(PARTITION_METADATA), text.as_bytes())
}

/// Write a new partition's `partition.metadata` without fsyncs: creating thousands of
/// partitions must not cost thousands of fsyncs (Kafka flushes this file later, in the
/// background, too). The partition's first log flush syncs its directory; a file lost
/// or torn by a crash before that reads as no topic id and is written again when the
/// partition is claimed.
pub fn write_new_partition_metadata(partition_dir: &Path, topic_id: Uuid) -> std::io::Result<()> {
    let text = format!("version: 0\ntopic_id: {}\n", encode_topic_id(topic_id));
    std::fs::write(partition_dir.join(PARTITION_METADATA), text)
}

pub fn read_partition_metadata(partition_dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(partition_dir.join(PARTITION_METADATA)).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("topic_id: "))?;
    decode_topic_id(line.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECOVERY_POINT_CHECKPOINT);
        assert!(read_offset_checkpoint(&path).is_empty());
        let mut c = OffsetCheckpoint::new();
        c.insert(("a".into(), 0), 10);
        c.insert(("b.c".into(), 3), 7);
        write_offset_checkpoint(&path, &c).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "0\n2\na 0 10\nb.c 3 7\n"
        );
        assert_eq!(read_offset_checkpoint(&path), c);
        std::fs::write(&path, "0\n5\na 0 1\n").unwrap();
        assert!(
            read_offset_checkpoint(&path).is_empty(),
            "count mismatch is malformed"
        );
    }

    #[test]
    fn partition_metadata_round_trip() {
        let random = Uuid::new_v4();
        let dir = tempfile::tempdir().unwrap();
        write_partition_metadata(dir.path(), random).unwrap();
        assert_eq!(read_partition_metadata(dir.path()), Some(random));
    }
}
