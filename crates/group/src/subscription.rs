//! The topics in a consumer's subscription (`ConsumerProtocolSubscription`, the
//! metadata of the "consumer" protocol type): needed to refuse OffsetDelete for topics a
//! live consumer group still consumes.
//!
//! Every version (0–3) starts with `int16 version` and the topics array
//! (`int32 count`, then `int16`-length strings); later fields are not needed here.

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
    fn hostile_or_foreign_metadata_is_none() {
        assert_eq!(
            subscribed_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 1]),
            None
        );
        assert_eq!(subscribed_topics(b"x"), None);
    }
}
