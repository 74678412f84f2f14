//! Kafka's textual form of UUIDs (topic ids, cluster ids): URL-safe base64 without
//! padding, 22 characters, as `org.apache.kafka.common.Uuid.toString` prints them.

use uuid::Uuid;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka prints topic ids as URL-safe base64 without padding.
pub fn encode_topic_id(id: Uuid) -> String {
    let mut out = String::with_capacity(22);
    let (mut acc, mut bits) = (0u32, 0);
    for b in id.as_bytes() {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(B64[((acc >> bits) & 0x3f) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B64[((acc << (6 - bits)) & 0x3f) as usize] as char);
    }
    out
}

/// Parse Kafka's textual form back into a UUID.
pub fn decode_topic_id(s: &str) -> Option<Uuid> {
    let mut bytes = Vec::with_capacity(16);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Uuid::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kafka_uuid_to_string() {
        // Kafka's Uuid(0L, 1L).toString()
        let id = Uuid::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(encode_topic_id(id), "AAAAAAAAAAAAAAAAAAAAAQ");
        let random = Uuid::new_v4();
        assert_eq!(decode_topic_id(&encode_topic_id(random)), Some(random));
        assert_eq!(decode_topic_id("not*base64"), None);
    }
}
