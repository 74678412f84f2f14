//! The embedded "consumer" protocol of classic groups (`ConsumerProtocolSubscription`,
//! the JoinGroup metadata, and `ConsumerProtocolAssignment`, the SyncGroup assignment):
//! the topics a classic member subscribes to (OffsetDelete refuses them; a consumer
//! group hosting classic members during a migration subscribes it to them), the
//! partitions it says it owns, and the assignment it is handed.
//!
//! Both are non-flexible messages that start with `int16 version`:
//!
//! ```text
//! Subscription v0  Topics [string], UserData bytes?
//!              v1  + OwnedPartitions [ Topic string, Partitions [int32] ]
//!              v2  + GenerationId int32
//!              v3  + RackId string?
//! Assignment v0-3  AssignedPartitions [ Topic string, Partitions [int32] ], UserData bytes?
//! ```
//!
//! Decoding is bounded by the bytes present (a count larger than the bytes left is
//! refused before anything is allocated) and never panics; a later version's extra
//! fields are ignored, as Kafka's readers do.

/// The subscribed topics, or `None` if the bytes are not a consumer subscription.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata;
    let _version = take(&mut buf, 2)?;
    let count = i32::from_be_bytes(take(&mut buf, 4)?.try_into().ok()?);
    let count = usize::try_from(count).ok()?;
    // Each topic takes at least its 2-byte length: bound the count by the bytes left.
    if count > buf.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i16::from_be_bytes(take(&mut buf, 2)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        topics.push(String::from_utf8(take(&mut buf, len)?.to_vec()).ok()?);
    }
    Some(topics)
}

/// A classic member's subscription, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerSubscription {
    pub version: i16,
    pub topics: Vec<String>,
    /// Partitions the member owns (v1+, cooperative protocols; empty otherwise).
    pub owned_partitions: Vec<(String, Vec<i32>)>,
    pub rack_id: Option<String>,
}

/// Decodes a `ConsumerProtocolSubscription`; `None` if the bytes are not one.
pub fn decode_subscription(metadata: &[u8]) -> Option<ConsumerSubscription> {
    let mut buf = metadata;
    let version = i16::from_be_bytes(take(&mut buf, 2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    let topics = strings(&mut buf)?;
    let _user_data = nullable_bytes(&mut buf)?;
    let mut out = ConsumerSubscription {
        version,
        topics,
        ..Default::default()
    };
    if version >= 1 {
        out.owned_partitions = topic_partitions(&mut buf)?;
    }
    if version >= 2 {
        let _generation = take(&mut buf, 4)?;
    }
    if version >= 3 {
        out.rack_id = nullable_string(&mut buf)?;
    }
    Some(out)
}

/// Decodes a `ConsumerProtocolAssignment`'s partitions; `None` if the bytes are not one.
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    let mut buf = bytes;
    let version = i16::from_be_bytes(take(&mut buf, 2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    topic_partitions(&mut buf)
}

/// Encodes a `ConsumerProtocolAssignment` (version 0, which every client reads; no user
/// data) as a consumer group hands it to a member using the classic protocol.
pub fn encode_assignment(partitions: &[(String, Vec<i32>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
    for (topic, ps) in partitions {
        let name = &topic.as_bytes()[..topic.len().min(i16::MAX as usize)];
        out.extend_from_slice(&(name.len() as i16).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i32).to_be_bytes()); // user data: null
    out
}

fn count(buf: &mut &[u8], min_element_bytes: usize) -> Option<usize> {
    let n = i32::from_be_bytes(take(buf, 4)?.try_into().ok()?);
    let n = usize::try_from(n).ok()?;
    (n <= buf.len() / min_element_bytes).then_some(n)
}

fn string(buf: &mut &[u8]) -> Option<String> {
    let len = i16::from_be_bytes(take(buf, 2)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    Some(String::from_utf8_lossy(take(buf, len)?).into_owned())
}

fn nullable_string(buf: &mut &[u8]) -> Option<Option<String>> {
    let len = i16::from_be_bytes(take(buf, 2)?.try_into().ok()?);
    if len < 0 {
        return Some(None);
    }
    Some(Some(
        String::from_utf8_lossy(take(buf, len as usize)?).into_owned(),
    ))
}

fn strings(buf: &mut &[u8]) -> Option<Vec<String>> {
    let n = count(buf, 2)?;
    (0..n).map(|_| string(buf)).collect()
}

fn nullable_bytes<'a>(buf: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let len = i32::from_be_bytes(take(buf, 4)?.try_into().ok()?);
    if len < 0 {
        return Some(None);
    }
    Some(Some(take(buf, len as usize)?))
}

fn topic_partitions(buf: &mut &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    let n = count(buf, 6)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let topic = string(buf)?;
        let m = count(buf, 4)?;
        let mut ps = Vec::with_capacity(m);
        for _ in 0..m {
            ps.push(i32::from_be_bytes(take(buf, 4)?.try_into().ok()?));
        }
        out.push((topic, ps));
    }
    Some(out)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_subscription_v1() {
        // version 1, topics ["ab", "c"], user data null (-1), owned partitions (v1) empty
        let bytes = [
            0, 1, 0, 0, 0, 2, 0, 2, b'a', b'b', 0, 1, b'c', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
        ];
        assert_eq!(
            subscribed_topics(&bytes),
            Some(vec!["ab".to_string(), "c".to_string()])
        );
    }

    #[test]
    fn decodes_every_subscription_version() {
        // v3: topics ["t"], user data null, owned [t: 0, 2], generation 7, rack "r1"
        let mut v3 = vec![0, 3, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
        v3.extend([0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2]);
        v3.extend([0, 0, 0, 7, 0, 2, b'r', b'1']);
        let s = decode_subscription(&v3).unwrap();
        assert_eq!(s.version, 3);
        assert_eq!(s.topics, vec!["t".to_string()]);
        assert_eq!(s.owned_partitions, vec![("t".to_string(), vec![0, 2])]);
        assert_eq!(s.rack_id.as_deref(), Some("r1"));
        // v0: no owned partitions.
        let v0 = [0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 9];
        let s = decode_subscription(&v0).unwrap();
        assert_eq!((s.version, s.owned_partitions.len()), (0, 0));
        // Every truncation of v3 is refused or decoded, never a panic.
        for cut in 0..v3.len() {
            let _ = decode_subscription(&v3[..cut]);
        }
        assert!(decode_subscription(&v3[..v3.len() - 1]).is_none());
    }

    #[test]
    fn assignments_round_trip_in_kafkas_bytes() {
        let parts = vec![("ab".to_string(), vec![1, 3]), ("c".to_string(), vec![])];
        let bytes = encode_assignment(&parts);
        let expected = [
            0, 0, 0, 0, 0, 2, 0, 2, b'a', b'b', 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 0, 1, b'c', 0,
            0, 0, 0, 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(bytes, expected);
        assert_eq!(decode_assignment(&bytes), Some(parts));
        assert_eq!(decode_assignment(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn hostile_or_foreign_metadata_is_none() {
        assert_eq!(
            subscribed_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 1]),
            None
        );
        assert_eq!(subscribed_topics(b"x"), None);
    }
}
