//! Fetch responses whose record data is not copied into the response buffer.
//!
//! A Fetch response is mostly record batches that already sit in segment files. The
//! `kafka-protocol` encoder needs them as `Bytes`, which means reading them into memory
//! and then copying them once more into the response. Instead, this encoder writes
//! everything *around* the records (headers, offsets, length prefixes) and leaves a
//! [`FramePart::Records`] hole where each partition's records go; the network layer
//! fills the holes straight from the files (`sendfile`), so record bytes never pass
//! through user space on the way out, as in Kafka's `FileRecords.writeTo`.
//!
//! The layout follows Kafka's `FetchResponse` schema for versions 4 to 18 field by
//! field; the unit tests check it byte for byte against the `kafka-protocol` encoder.
//! Of the partition's tagged fields, `diverging_epoch` (tag 0, a follower must truncate)
//! and `current_leader` (tag 1, KIP-951) are written, and of the response's,
//! `node_endpoints` (tag 0, v16+: where the leaders named by `current_leader` are); the
//! ones Ottla never sets (snapshot id, unknown tags) are refused rather than silently
//! dropped.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{AbortedTransaction, PartitionData};
use kafka_protocol::messages::FetchResponse;

use crate::frame::{MAX_RESPONSE_BYTES, SIZE_PREFIX_LEN};
use crate::records::put_unsigned_varint;

/// Record data that the encoder does not copy: it only needs its length.
pub trait RecordsPayload {
    fn payload_len(&self) -> usize;
}

impl RecordsPayload for Bytes {
    fn payload_len(&self) -> usize {
        self.len()
    }
}

/// One piece of a response frame, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramePart<R> {
    /// Encoded protocol bytes.
    Bytes(Bytes),
    /// One partition's record data, to be written as is.
    Records(R),
}

/// A response frame (size prefix included) as parts; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplicedFrame<R> {
    pub parts: Vec<FramePart<R>>,
    /// Bytes on the wire, size prefix included.
    pub len: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SplicedEncodeError {
    #[error("Fetch v{0} is outside the versions this encoder implements (4-18)")]
    UnsupportedVersion(i16),
    #[error("field {0} is set but this encoder does not write it")]
    UnsupportedField(&'static str),
    #[error("{partitions} partitions in the response but {payloads} record payloads")]
    PayloadCount { partitions: usize, payloads: usize },
    #[error("response of {0} bytes exceeds the {MAX_RESPONSE_BYTES}-byte limit")]
    TooLarge(usize),
}

const FIRST_VERSION: i16 = 4;
const LAST_VERSION: i16 = 18;
/// Versions from here on are "flexible": compact lengths and tagged fields.
const FIRST_FLEXIBLE_VERSION: i16 = 12;
/// Topics are named up to v12 and identified by id from v13.
const FIRST_TOPIC_ID_VERSION: i16 = 13;
/// KIP-951's `node_endpoints` response field.
const FIRST_NODE_ENDPOINTS_VERSION: i16 = 16;

/// Encode `response` (header included) at `version`, taking each partition's records
/// from `payloads`, in the order the partitions appear; the `records` fields of
/// `response` itself must be empty or `None` (they are not written).
pub fn encode_fetch_response<R: RecordsPayload>(
    version: i16,
    correlation_id: i32,
    response: &FetchResponse,
    payloads: Vec<R>,
) -> Result<SplicedFrame<R>, SplicedEncodeError> {
    if !(FIRST_VERSION..=LAST_VERSION).contains(&version) {
        return Err(SplicedEncodeError::UnsupportedVersion(version));
    }
    let partitions: usize = response.responses.iter().map(|t| t.partitions.len()).sum();
    if partitions != payloads.len() {
        return Err(SplicedEncodeError::PayloadCount {
            partitions,
            payloads: payloads.len(),
        });
    }
    if !response.node_endpoints.is_empty() && version < FIRST_NODE_ENDPOINTS_VERSION {
        return Err(SplicedEncodeError::UnsupportedField(
            "node_endpoints before v16",
        ));
    }
    if !response.unknown_tagged_fields.is_empty()
        || response
            .node_endpoints
            .iter()
            .any(|e| !e.unknown_tagged_fields.is_empty())
    {
        return Err(SplicedEncodeError::UnsupportedField(
            "unknown tagged fields",
        ));
    }
    let flexible = version >= FIRST_FLEXIBLE_VERSION;
    let mut w = PartsWriter::new();
    // Size prefix, patched at the end; then the response header (v1 when flexible).
    w.buf.put_i32(0);
    w.buf.put_i32(correlation_id);
    if flexible {
        put_unsigned_varint(&mut w.buf, 0);
    }
    w.buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        w.buf.put_i16(response.error_code);
        w.buf.put_i32(response.session_id);
    }
    put_array_len(&mut w.buf, flexible, Some(response.responses.len()));
    let mut payloads = payloads.into_iter();
    for topic in &response.responses {
        if version < FIRST_TOPIC_ID_VERSION {
            put_string(&mut w.buf, flexible, topic.topic.as_str());
        } else {
            w.buf.put_slice(topic.topic_id.as_bytes());
        }
        put_array_len(&mut w.buf, flexible, Some(topic.partitions.len()));
        for partition in &topic.partitions {
            let payload = payloads.next().expect("payload count checked above");
            put_partition_prefix(&mut w.buf, version, partition)?;
            let n = payload.payload_len();
            if flexible {
                put_unsigned_varint(&mut w.buf, n as u64 + 1);
            } else {
                w.buf
                    .put_i32(i32::try_from(n).map_err(|_| SplicedEncodeError::TooLarge(n))?);
            }
            w.records(payload);
            if flexible {
                put_partition_tagged_fields(&mut w.buf, partition);
            }
        }
        if flexible {
            put_unsigned_varint(&mut w.buf, 0); // topic tagged fields
        }
    }
    if flexible {
        put_response_tagged_fields(&mut w.buf, response);
    }
    w.finish()
}

/// The response's tagged fields (flexible versions): `node_endpoints` (tag 0) when set.
fn put_response_tagged_fields(buf: &mut BytesMut, response: &FetchResponse) {
    if response.node_endpoints.is_empty() {
        put_unsigned_varint(buf, 0);
        return;
    }
    let mut field = BytesMut::new();
    put_unsigned_varint(&mut field, response.node_endpoints.len() as u64 + 1);
    for endpoint in &response.node_endpoints {
        field.put_i32(endpoint.node_id.0);
        put_string(&mut field, true, endpoint.host.as_str());
        field.put_i32(endpoint.port);
        match &endpoint.rack {
            None => put_unsigned_varint(&mut field, 0),
            Some(rack) => put_string(&mut field, true, rack.as_str()),
        }
        put_unsigned_varint(&mut field, 0); // the endpoint's tagged fields
    }
    put_unsigned_varint(buf, 1); // one tagged field
    put_unsigned_varint(buf, 0); // its tag
    put_unsigned_varint(buf, field.len() as u64);
    buf.put_slice(&field);
}

/// A partition's tagged fields (flexible versions), in tag order, each written only
/// when it differs from its default, as Kafka's generated encoder does.
fn put_partition_tagged_fields(buf: &mut BytesMut, p: &PartitionData) {
    let diverging = p.diverging_epoch != Default::default();
    let leader = p.current_leader != Default::default();
    put_unsigned_varint(buf, u64::from(diverging) + u64::from(leader));
    if diverging {
        put_unsigned_varint(buf, 0); // tag
        put_unsigned_varint(buf, 4 + 8 + 1); // size
        buf.put_i32(p.diverging_epoch.epoch);
        buf.put_i64(p.diverging_epoch.end_offset);
        put_unsigned_varint(buf, 0); // its own tagged fields
    }
    if leader {
        put_unsigned_varint(buf, 1);
        put_unsigned_varint(buf, 4 + 4 + 1);
        buf.put_i32(p.current_leader.leader_id.0);
        buf.put_i32(p.current_leader.leader_epoch);
        put_unsigned_varint(buf, 0);
    }
}

/// Everything of a partition before its records.
fn put_partition_prefix(
    buf: &mut BytesMut,
    version: i16,
    p: &PartitionData,
) -> Result<(), SplicedEncodeError> {
    if p.records.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(SplicedEncodeError::UnsupportedField(
            "records (pass them as payloads)",
        ));
    }
    if version < FIRST_FLEXIBLE_VERSION
        && (p.diverging_epoch != Default::default() || p.current_leader != Default::default())
    {
        return Err(SplicedEncodeError::UnsupportedField(
            "diverging_epoch / current_leader before v12",
        ));
    }
    if !p.diverging_epoch.unknown_tagged_fields.is_empty()
        || !p.current_leader.unknown_tagged_fields.is_empty()
    {
        return Err(SplicedEncodeError::UnsupportedField(
            "unknown tagged fields",
        ));
    }
    if p.snapshot_id != Default::default() {
        return Err(SplicedEncodeError::UnsupportedField("snapshot_id"));
    }
    if !p.unknown_tagged_fields.is_empty() {
        return Err(SplicedEncodeError::UnsupportedField(
            "unknown tagged fields",
        ));
    }
    if version < 11 && p.preferred_read_replica.0 != -1 {
        return Err(SplicedEncodeError::UnsupportedField(
            "preferred_read_replica before v11",
        ));
    }
    let flexible = version >= FIRST_FLEXIBLE_VERSION;
    buf.put_i32(p.partition_index);
    buf.put_i16(p.error_code);
    buf.put_i64(p.high_watermark);
    buf.put_i64(p.last_stable_offset);
    if version >= 5 {
        buf.put_i64(p.log_start_offset);
    }
    let aborted: Option<&Vec<AbortedTransaction>> = p.aborted_transactions.as_ref();
    put_array_len(buf, flexible, aborted.map(Vec::len));
    for txn in aborted.into_iter().flatten() {
        if !txn.unknown_tagged_fields.is_empty() {
            return Err(SplicedEncodeError::UnsupportedField(
                "unknown tagged fields",
            ));
        }
        buf.put_i64(txn.producer_id.0);
        buf.put_i64(txn.first_offset);
        if flexible {
            put_unsigned_varint(buf, 0);
        }
    }
    if version >= 11 {
        buf.put_i32(p.preferred_read_replica.0);
    }
    Ok(())
}

/// Collects encoded bytes and record holes in order.
struct PartsWriter<R> {
    done: Vec<Part<R>>,
    buf: BytesMut,
    len: usize,
}

/// Parts before freezing: the first one still takes the size prefix.
enum Part<R> {
    Bytes(BytesMut),
    Records(R),
}

impl<R: RecordsPayload> PartsWriter<R> {
    fn new() -> Self {
        PartsWriter {
            done: Vec::new(),
            buf: BytesMut::with_capacity(256),
            len: 0,
        }
    }

    fn records(&mut self, payload: R) {
        let n = payload.payload_len();
        if n == 0 {
            // Nothing to send from a file: the bytes around it stay one part.
            return;
        }
        if !self.buf.is_empty() {
            self.len += self.buf.len();
            self.done.push(Part::Bytes(self.buf.split()));
        }
        self.len += n;
        self.done.push(Part::Records(payload));
    }

    fn finish(mut self) -> Result<SplicedFrame<R>, SplicedEncodeError> {
        if !self.buf.is_empty() {
            self.len += self.buf.len();
            self.done.push(Part::Bytes(self.buf.split()));
        }
        if self.len > MAX_RESPONSE_BYTES {
            return Err(SplicedEncodeError::TooLarge(self.len));
        }
        let size = (self.len - SIZE_PREFIX_LEN) as i32;
        let Some(Part::Bytes(first)) = self.done.first_mut() else {
            unreachable!("the size prefix is always written first");
        };
        first[..SIZE_PREFIX_LEN].copy_from_slice(&size.to_be_bytes());
        let parts = self
            .done
            .into_iter()
            .map(|p| match p {
                Part::Bytes(b) => FramePart::Bytes(b.freeze()),
                Part::Records(r) => FramePart::Records(r),
            })
            .collect();
        Ok(SplicedFrame {
            parts,
            len: self.len,
        })
    }
}

/// Array length: int32 (-1 for null) or, when flexible, unsigned varint of length + 1
/// (0 for null).
fn put_array_len(buf: &mut BytesMut, flexible: bool, len: Option<usize>) {
    match (flexible, len) {
        (true, Some(n)) => put_unsigned_varint(buf, n as u64 + 1),
        (true, None) => put_unsigned_varint(buf, 0),
        (false, Some(n)) => buf.put_i32(n as i32),
        (false, None) => buf.put_i32(-1),
    }
}

fn put_string(buf: &mut BytesMut, flexible: bool, s: &str) {
    if flexible {
        put_unsigned_varint(buf, s.len() as u64 + 1);
    } else {
        buf.put_i16(s.len() as i16);
    }
    buf.put_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_response;
    use kafka_protocol::messages::fetch_response::{
        EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
    };
    use kafka_protocol::messages::{ApiKey, BrokerId, ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn sample(version: i16) -> (FetchResponse, Vec<Bytes>) {
        let mut topics = Vec::new();
        let mut payloads = Vec::new();
        for (t, name) in ["orders", "payments-ü"].into_iter().enumerate() {
            let mut partitions = Vec::new();
            for p in 0..3 {
                // Empty, small and larger payloads, with distinct contents.
                let records = Bytes::from(vec![(t * 10 + p) as u8; [0, 7, 300][p]]);
                let mut data = PartitionData::default()
                    .with_partition_index(p as i32)
                    .with_error_code(if p == 0 { 1 } else { 0 })
                    .with_high_watermark(1000 + p as i64)
                    .with_last_stable_offset(900 + p as i64)
                    .with_log_start_offset(if version >= 5 { 5 } else { -1 })
                    .with_aborted_transactions(match p {
                        0 => None,
                        1 => Some(vec![]),
                        _ => Some(vec![AbortedTransaction::default()
                            .with_producer_id(ProducerId(42))
                            .with_first_offset(17)]),
                    });
                if version >= 11 {
                    data = data.with_preferred_read_replica(BrokerId(-1));
                }
                if version >= 12 && p == 1 {
                    data = data.with_diverging_epoch(
                        EpochEndOffset::default().with_epoch(4).with_end_offset(77),
                    );
                }
                if version >= 12 && p == 2 {
                    data = data.with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(2))
                            .with_leader_epoch(9),
                    );
                }
                partitions.push(data);
                payloads.push(records);
            }
            topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str(name)))
                    .with_topic_id(uuid::Uuid::from_u128(0x1234_5678_9abc + t as u128))
                    .with_partitions(partitions),
            );
        }
        let mut response = FetchResponse::default()
            .with_throttle_time_ms(3)
            .with_responses(topics);
        if version >= 7 {
            response = response.with_error_code(0).with_session_id(0);
        }
        if version >= FIRST_NODE_ENDPOINTS_VERSION {
            response = response.with_node_endpoints(vec![
                NodeEndpoint::default()
                    .with_node_id(BrokerId(2))
                    .with_host(StrBytes::from_static_str("broker-2.example"))
                    .with_port(9094),
                NodeEndpoint::default()
                    .with_node_id(BrokerId(3))
                    .with_host(StrBytes::from_static_str("10.0.0.3"))
                    .with_port(9096)
                    .with_rack(Some(StrBytes::from_static_str("rack-ü"))),
            ]);
        }
        (response, payloads)
    }

    /// Flatten parts the way the network layer writes them.
    fn flatten(frame: &SplicedFrame<Bytes>) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &frame.parts {
            match part {
                FramePart::Bytes(b) | FramePart::Records(b) => out.extend_from_slice(b),
            }
        }
        out
    }

    #[test]
    fn matches_the_kafka_protocol_encoder_byte_for_byte() {
        for version in FIRST_VERSION..=LAST_VERSION {
            let (response, payloads) = sample(version);
            let mut inline = response.clone();
            let mut it = payloads.iter();
            for t in &mut inline.responses {
                for p in &mut t.partitions {
                    p.records = Some(it.next().unwrap().clone());
                }
            }
            let expected = encode_response(ApiKey::Fetch, version, 77, &inline).unwrap();
            let frame = encode_fetch_response(version, 77, &response, payloads).unwrap();
            assert_eq!(frame.len, expected.len(), "v{version} length");
            assert_eq!(flatten(&frame), expected.to_vec(), "v{version} bytes");
            // Empty payloads leave no hole; the others are not copied.
            let holes = frame
                .parts
                .iter()
                .filter(|p| matches!(p, FramePart::Records(_)))
                .count();
            assert_eq!(holes, 4, "v{version}: two non-empty payloads per topic");
        }
    }

    #[test]
    fn refuses_what_it_cannot_write() {
        let (response, payloads) = sample(12);
        assert!(matches!(
            encode_fetch_response(3, 1, &response, payloads.clone()),
            Err(SplicedEncodeError::UnsupportedVersion(3))
        ));
        assert!(matches!(
            encode_fetch_response(12, 1, &response, payloads[1..].to_vec()),
            Err(SplicedEncodeError::PayloadCount { .. })
        ));
        let mut with_snapshot = response.clone();
        with_snapshot.responses[0].partitions[0].snapshot_id.epoch = 3;
        assert!(matches!(
            encode_fetch_response(12, 1, &with_snapshot, payloads.clone()),
            Err(SplicedEncodeError::UnsupportedField("snapshot_id"))
        ));
        let (v16, v16_payloads) = sample(16);
        assert!(matches!(
            encode_fetch_response(15, 1, &v16, v16_payloads),
            Err(SplicedEncodeError::UnsupportedField(
                "node_endpoints before v16"
            ))
        ));
        let mut inline = response;
        inline.responses[0].partitions[0].records = Some(Bytes::from_static(b"x"));
        assert!(matches!(
            encode_fetch_response(12, 1, &inline, payloads),
            Err(SplicedEncodeError::UnsupportedField(_))
        ));
    }
}
