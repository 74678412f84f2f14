//! Snapshot files: the metadata image written out as records, in Kafka's record-batch
//! format, named as KRaft names its snapshots.
//!
//! # Name
//!
//! `<end offset, 20 digits>-<epoch, 10 digits>.checkpoint` in `__cluster_metadata-0`,
//! KRaft's `Snapshots.filenameFromSnapshotId`: the end offset is the index after the
//! last entry the snapshot includes (KRaft's snapshot id offset is exclusive), the epoch
//! that entry's term. A snapshot being written is `<name>.part` (KRaft's suffix) and is
//! renamed into place once complete and fsynced; leftovers are deleted on open. The two
//! latest snapshots are kept.
//!
//! # Content
//!
//! A concatenation of v2 record batches, as a segment is (uncompressed, no producer id,
//! partition leader epoch = the last included term, offsets consecutive from 0):
//!
//! 1. a batch holding one record with key `header` and as value the JSON of
//!    [`SnapshotHeader`]: the format version, openraft's [`SnapshotMeta`] (last included
//!    log id, last membership, snapshot id) and the image's record count
//!    ([`MetadataImage::offset`]);
//! 2. batches of up to [`RECORDS_PER_BATCH`] records with a null key and as value the
//!    JSON of one [`MetadataRecord`] each: [`MetadataImage::to_records`];
//! 3. a batch holding one record with key `footer` and as value `{"records":<n>}`, the
//!    number of metadata records: a snapshot without it is incomplete (KRaft ends its
//!    snapshots with a `SnapshotFooterRecord` for the same reason).
//!
//! Every batch's CRC is checked on read; a snapshot received from the leader is decoded
//! (and its records replayed) before it is written.

use std::fs;
use std::path::{Path, PathBuf};

use openraft::{LogId, SnapshotMeta};
use ottla_protocol::batch::{
    BatchIter, RecordBatchMut, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use ottla_protocol::compression::Compression;
use ottla_protocol::records::{build_record_batch, decode_records, Record};
use serde::{Deserialize, Serialize};

use super::{ControllerNode, QuorumError};
use crate::image::MetadataImage;
use crate::records::MetadataRecord;

/// The suffix of a complete snapshot file (KRaft's).
pub const SNAPSHOT_SUFFIX: &str = ".checkpoint";
/// The suffix a snapshot is written under until it is complete (KRaft's).
pub(crate) const PARTIAL_SUFFIX: &str = ".part";
/// Metadata records per batch: batches stay well under a megabyte.
pub(crate) const RECORDS_PER_BATCH: usize = 1000;
const HEADER_KEY: &[u8] = b"header";
const FOOTER_KEY: &[u8] = b"footer";
const FORMAT_VERSION: u32 = 0;

/// A snapshot's bytes: the file's content, exactly (see the module docs). This is what
/// openraft hands the network to send to a follower (`RaftNetwork::full_snapshot`),
/// and what the follower's transport hands back to `Raft::install_full_snapshot`; the
/// bytes are self-checking (CRCs, header and footer), so a transport may send them as
/// they are.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataSnapshotData {
    bytes: Vec<u8>,
}

impl MetadataSnapshotData {
    pub fn from_bytes(bytes: Vec<u8>) -> MetadataSnapshotData {
        MetadataSnapshotData { bytes }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl std::fmt::Debug for MetadataSnapshotData {
    /// The length only: openraft logs snapshots.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MetadataSnapshotData({} bytes)", self.bytes.len())
    }
}

/// The first record of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    pub version: u32,
    pub meta: SnapshotMeta<u64, ControllerNode>,
    /// [`MetadataImage::offset`] of the image, restored after replay: the image's
    /// version keeps counting across a snapshot.
    pub image_offset: u64,
}

/// The last record of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotFooter {
    records: u64,
}

/// A snapshot decoded: its header and the image it holds.
pub(crate) struct DecodedSnapshot {
    pub header: SnapshotHeader,
    pub image: MetadataImage,
}

/// The file name of a snapshot whose last included entry is `last_log_id`: KRaft's
/// `<end offset>-<epoch>.checkpoint` (end offset = index + 1; 0 and 0 for a snapshot of
/// nothing).
pub fn snapshot_file_name(last_log_id: Option<&LogId<u64>>) -> String {
    let (end_offset, epoch) =
        last_log_id.map_or((0, 0), |id| (id.index.saturating_add(1), id.leader_id.term));
    format!("{end_offset:020}-{epoch:010}{SNAPSHOT_SUFFIX}")
}

/// (end offset, epoch) from a snapshot file name, or `None` for any other file.
pub(crate) fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    let (offset, epoch) = stem.split_once('-')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(offset, 20) || !digits(epoch, 10) {
        return None;
    }
    Some((offset.parse().ok()?, epoch.parse().ok()?))
}

/// The complete snapshot files in `dir`, oldest first, by (end offset, epoch).
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>, QuorumError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(QuorumError::io("list", dir))? {
        let entry = entry.map_err(QuorumError::io("list", dir))?;
        let name = entry.file_name();
        if let Some((offset, epoch)) = name.to_str().and_then(parse_file_name) {
            found.push((offset, epoch, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Paths of snapshots left half-written by a crash.
pub(crate) fn partial_files(dir: &Path) -> Result<Vec<PathBuf>, QuorumError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(QuorumError::io("list", dir))? {
        let entry = entry.map_err(QuorumError::io("list", dir))?;
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.ends_with(&format!("{SNAPSHOT_SUFFIX}{PARTIAL_SUFFIX}")))
        {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// Write `image` (as of `meta`) as a snapshot's bytes.
pub(crate) fn encode(
    meta: &SnapshotMeta<u64, ControllerNode>,
    image: &MetadataImage,
) -> Result<Vec<u8>, QuorumError> {
    let term = meta.last_log_id.map_or(0, |id| id.leader_id.term);
    let epoch = i32::try_from(term).map_err(|_| {
        QuorumError::Invalid(format!("term {term} does not fit a Kafka leader epoch"))
    })?;
    let header = SnapshotHeader {
        version: FORMAT_VERSION,
        meta: meta.clone(),
        image_offset: image.offset,
    };
    let json = |what: &str, value: serde_json::Result<Vec<u8>>| {
        value.map_err(|e| QuorumError::Invalid(format!("snapshot {what} cannot be encoded: {e}")))
    };
    let records = image.to_records();
    let timestamp = ottla_log::now_ms();
    let mut out = Vec::new();
    let mut offset: i64 = 0;
    let mut push_batch = |out: &mut Vec<u8>, values: Vec<(Option<&[u8]>, Vec<u8>)>| {
        let batch_records: Vec<Record> = values
            .into_iter()
            .map(|(key, value)| {
                let record = Record {
                    offset,
                    timestamp,
                    key: key.map(<[u8]>::to_vec),
                    value: Some(value),
                    headers: Vec::new(),
                };
                offset += 1;
                record
            })
            .collect();
        let mut batch = build_record_batch(
            &batch_records,
            Compression::None,
            NO_PRODUCER_ID,
            NO_PRODUCER_EPOCH,
            NO_SEQUENCE,
        );
        let mut header = RecordBatchMut::new(&mut batch)
            .map_err(|e| QuorumError::Invalid(format!("snapshot batch is invalid: {e}")))?;
        header.set_partition_leader_epoch(epoch);
        out.extend_from_slice(&batch);
        Ok::<(), QuorumError>(())
    };
    push_batch(
        &mut out,
        vec![(
            Some(HEADER_KEY),
            json("header", serde_json::to_vec(&header))?,
        )],
    )?;
    for chunk in records.chunks(RECORDS_PER_BATCH) {
        let mut values = Vec::with_capacity(chunk.len());
        for record in chunk {
            values.push((None, json("record", serde_json::to_vec(record))?));
        }
        push_batch(&mut out, values)?;
    }
    let footer = SnapshotFooter {
        records: records.len() as u64,
    };
    push_batch(
        &mut out,
        vec![(
            Some(FOOTER_KEY),
            json("footer", serde_json::to_vec(&footer))?,
        )],
    )?;
    Ok(out)
}

/// Check and decode a snapshot's bytes (from disk or from the leader): every batch
/// intact, offsets consecutive, a header first, a footer last that counts the records,
/// and records that replay into an empty image.
pub(crate) fn decode(bytes: &[u8]) -> Result<DecodedSnapshot, String> {
    let mut header: Option<SnapshotHeader> = None;
    let mut footer: Option<SnapshotFooter> = None;
    let mut image = MetadataImage::default();
    let mut count: u64 = 0;
    let mut expected: i64 = 0;
    for batch in BatchIter::new(bytes) {
        let batch = batch.map_err(|e| format!("unreadable batch at offset {expected}: {e}"))?;
        batch
            .validate()
            .map_err(|e| format!("batch at offset {expected}: {e}"))?;
        for record in decode_records(&batch, ottla_log::MAX_DECOMPRESSED_BATCH_BYTES)
            .map_err(|e| format!("batch at offset {expected}: {e}"))?
        {
            if record.offset != expected {
                return Err(format!(
                    "record at offset {} where {expected} was expected",
                    record.offset
                ));
            }
            expected += 1;
            if footer.is_some() {
                return Err(format!(
                    "record at offset {} after the footer",
                    record.offset
                ));
            }
            let value = record
                .value
                .as_deref()
                .ok_or_else(|| format!("record at offset {} has no value", record.offset))?;
            match (record.key.as_deref(), &header) {
                (Some(HEADER_KEY), None) => {
                    let h: SnapshotHeader = serde_json::from_slice(value)
                        .map_err(|e| format!("bad snapshot header: {e}"))?;
                    if h.version != FORMAT_VERSION {
                        return Err(format!("unknown snapshot format version {}", h.version));
                    }
                    header = Some(h);
                }
                (_, None) => return Err("the first record is not the snapshot header".into()),
                (Some(FOOTER_KEY), Some(_)) => {
                    footer = Some(
                        serde_json::from_slice(value)
                            .map_err(|e| format!("bad snapshot footer: {e}"))?,
                    );
                }
                (None, Some(_)) => {
                    let r: MetadataRecord = serde_json::from_slice(value).map_err(|e| {
                        format!("record at offset {} is not metadata: {e}", record.offset)
                    })?;
                    image
                        .replay(&r)
                        .map_err(|e| format!("record at offset {}: {e}", record.offset))?;
                    count += 1;
                }
                (Some(key), Some(_)) => {
                    return Err(format!(
                        "record at offset {} has the unknown key {:?}",
                        record.offset,
                        String::from_utf8_lossy(key)
                    ))
                }
            }
        }
    }
    let header = header.ok_or("the snapshot is empty")?;
    let footer = footer.ok_or("the snapshot has no footer: it is incomplete")?;
    if footer.records != count {
        return Err(format!(
            "the footer counts {} records, the snapshot holds {count}",
            footer.records
        ));
    }
    image.offset = header.image_offset;
    Ok(DecodedSnapshot { header, image })
}
