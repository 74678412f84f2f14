//! The durable metadata log of a single-voter controller.
//!
//! One record per line: `<crc32c as 8 hex digits> <JSON>\n`, appended and fsynced
//! before the change is applied or acknowledged. Metadata changes are rare (topic
//! creation, config changes), so a plain fsynced file is enough; a multi-node cluster
//! replicates the same records through Raft instead (a later issue).
//!
//! On open the file is replayed; a torn or corrupt tail (a crash mid-append) is
//! truncated with one warning, since the change it carried was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::records::MetadataRecord;

/// File name inside the metadata directory.
pub const METADATA_LOG_FILE: &str = "metadata.log";
/// A line longer than this is corrupt (the largest real record is a few KiB).
const MAX_RECORD_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MetadataLogError {
    #[error("metadata log I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata record cannot be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("metadata record of {0} bytes exceeds the {MAX_RECORD_LINE_BYTES}-byte limit")]
    RecordTooLarge(usize),
    #[error("metadata log {path} is corrupt at byte {offset} with valid records after it; refusing to truncate acknowledged changes")]
    Corrupt { path: PathBuf, offset: u64 },
}

pub struct MetadataLog {
    path: PathBuf,
    file: File,
    /// Bytes of complete, durable records: a failed append is cut back to this.
    len: u64,
}

impl MetadataLog {
    /// Open (creating if needed) the log in `dir` and return every intact record.
    pub fn open(dir: &Path) -> Result<(MetadataLog, Vec<MetadataRecord>), MetadataLogError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MetadataLogError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(METADATA_LOG_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        let mut records = Vec::new();
        let mut valid_len = 0usize;
        let mut lines = bytes.split_inclusive(|b| *b == b'\n');
        for line in lines.by_ref() {
            match parse_line(line) {
                Some(record) => {
                    records.push(record);
                    valid_len += line.len();
                }
                None => break,
            }
        }
        if valid_len < bytes.len() {
            // A torn tail is what a crash mid-append leaves: nothing after it. A bad
            // record followed by good ones is damage, and truncating would drop
            // acknowledged changes (and the data of the topics they created), so refuse.
            if lines.any(|l| parse_line(l).is_some()) {
                return Err(MetadataLogError::Corrupt {
                    path,
                    offset: valid_len as u64,
                });
            }
            tracing::warn!(
                "Truncating metadata log {} at byte {valid_len}: {} bytes of torn tail",
                path.display(),
                bytes.len() - valid_len
            );
            file.set_len(valid_len as u64).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        let len = valid_len as u64;
        file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        Ok((MetadataLog { path, file, len }, records))
    }

    /// Append records and fsync; only then may they be applied.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), MetadataLogError> {
        let mut buf = Vec::new();
        for record in records {
            let json = serde_json::to_vec(record)?;
            if json.len() + 10 > MAX_RECORD_LINE_BYTES {
                return Err(MetadataLogError::RecordTooLarge(json.len()));
            }
            buf.extend_from_slice(format!("{:08x} ", crc32c::crc32c(&json)).as_bytes());
            buf.extend_from_slice(&json);
            buf.push(b'\n');
        }
        let path = self.path.clone();
        let err = |source| MetadataLogError::Io {
            path: path.clone(),
            source,
        };
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Do not leave a partial record for later appends to build on.
            let _ = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data());
            return Err(err(e));
        }
        self.len += buf.len() as u64;
        Ok(())
    }
}

fn parse_line(line: &[u8]) -> Option<MetadataRecord> {
    let line = line.strip_suffix(b"\n")?;
    if line.len() < 9 || line[8] != b' ' {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(&line[..8]).ok()?, 16).ok()?;
    let json = &line[9..];
    if crc32c::crc32c(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let r1 = MetadataRecord::ClusterId {
            cluster_id: "abc".into(),
        };
        let r2 = MetadataRecord::Topic {
            name: "t".into(),
            topic_id: uuid::Uuid::new_v4(),
        };
        {
            let (mut log, existing) = MetadataLog::open(dir.path()).unwrap();
            assert!(existing.is_empty());
            log.append(&[r1.clone(), r2.clone()]).unwrap();
        }
        // simulate a crash mid-append
        let path = dir.path().join(METADATA_LOG_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"deadbeef {\"type\":\"Clus").unwrap();
        drop(f);
        let (mut log, replayed) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(replayed, vec![r1.clone(), r2.clone()]);
        let r3 = MetadataRecord::RemoveTopic {
            topic_id: uuid::Uuid::new_v4(),
        };
        log.append(std::slice::from_ref(&r3)).unwrap();
        drop(log);
        let (_, replayed) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(replayed, vec![r1, r2, r3]);
    }

    #[test]
    fn corruption_followed_by_valid_records_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        let r = MetadataRecord::ClusterId {
            cluster_id: "abc".into(),
        };
        log.append(&[r.clone(), r.clone(), r]).unwrap();
        drop(log);
        let path = dir.path().join(METADATA_LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 0x01; // damage the first record's checksum
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            MetadataLog::open(dir.path()),
            Err(MetadataLogError::Corrupt { offset: 0, .. })
        ));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "nothing was truncated"
        );
    }

    #[test]
    fn oversized_records_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        let huge = MetadataRecord::ClusterId {
            cluster_id: "x".repeat(MAX_RECORD_LINE_BYTES),
        };
        assert!(matches!(
            log.append(&[huge]),
            Err(MetadataLogError::RecordTooLarge(_))
        ));
        assert_eq!(
            std::fs::metadata(dir.path().join(METADATA_LOG_FILE))
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn checksum_mismatch_stops_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        log.append(&[MetadataRecord::ClusterId {
            cluster_id: "abc".into(),
        }])
        .unwrap();
        drop(log);
        let path = dir.path().join(METADATA_LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] = b'X';
        std::fs::write(&path, bytes).unwrap();
        let (_, replayed) = MetadataLog::open(dir.path()).unwrap();
        assert!(replayed.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
