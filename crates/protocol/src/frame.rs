//! Size-prefixed frames and request/response headers.
//!
//! A Kafka frame is an int32 big-endian size followed by that many bytes. The server
//! reads the size first and refuses anything above `socket.request.max.bytes` before
//! allocating, so a hostile size prefix costs four bytes, not memory.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// Kafka's default `socket.request.max.bytes` (100 MiB).
pub const DEFAULT_SOCKET_REQUEST_MAX_BYTES: usize = 100 * 1024 * 1024;
/// Largest response frame the broker will build (the size prefix is an int32; Kafka's
/// clients refuse anything near it anyway). Handlers keep responses far below this by
/// answering repeated request entries once; this is the backstop.
pub const MAX_RESPONSE_BYTES: usize = 1 << 30;
/// Bytes in the size prefix.
pub const SIZE_PREFIX_LEN: usize = 4;
/// api key + api version: the part of the header every version shares.
const HEADER_PREFIX_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} is negative or exceeds socket.request.max.bytes ({limit})")]
    InvalidSize { size: i32, limit: usize },
    #[error("request frame too short for a header ({0} bytes)")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("malformed request header for API key {api_key} v{api_version}: {reason}")]
    MalformedHeader {
        api_key: i16,
        api_version: i16,
        reason: String,
    },
}

/// Validate a frame's size prefix against the configured limit.
pub fn check_frame_size(size: i32, limit: usize) -> Result<usize, FrameError> {
    if size < 0 || size as usize > limit {
        return Err(FrameError::InvalidSize { size, limit });
    }
    Ok(size as usize)
}

/// A request whose header has been decoded; the body is left for the handler, which
/// decodes it with the message type for `api_key` at `header.request_api_version`.
#[derive(Debug, Clone)]
pub struct Request {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
}

impl Request {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
}

/// Decode the request header at the start of `frame` (the bytes after the size prefix).
///
/// The header's own version depends on the API and its version (flexible versions add
/// tagged fields), so the key and version are peeked first. An unknown API key is an
/// error: Kafka closes such connections, since it cannot know the header layout.
pub fn decode_request(mut frame: Bytes) -> Result<Request, FrameError> {
    if frame.len() < HEADER_PREFIX_LEN {
        return Err(FrameError::TooShort(frame.len()));
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key =
        ApiKey::try_from(api_key_raw).map_err(|_| FrameError::UnknownApiKey(api_key_raw))?;
    let header_version = api_key.request_header_version(api_version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|e| {
        FrameError::MalformedHeader {
            api_key: api_key_raw,
            api_version,
            reason: e.to_string(),
        }
    })?;
    Ok(Request {
        api_key,
        header,
        body: frame,
    })
}

/// Encode a whole response frame: size prefix, response header for (`api_key`,
/// `version`), body. Errors only if the body cannot be encoded at that version, which
/// is a bug in the handler (a field set that the version cannot carry).
pub fn encode_response<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> anyhow_free::Result<Bytes> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(version);
    encode_frame(&header, header_version, body, version, MAX_RESPONSE_BYTES)
}

/// Encode a request frame (used by tests, the benchmark's client side and, later,
/// inter-broker clients).
pub fn encode_request<T: Encodable>(
    header: &RequestHeader,
    api_key: ApiKey,
    body: &T,
) -> anyhow_free::Result<Bytes> {
    let version = header.request_api_version;
    let header_version = api_key.request_header_version(version);
    encode_frame(header, header_version, body, version, i32::MAX as usize)
}

/// Size prefix, header, body: sized first, so the frame is one allocation.
fn encode_frame<H: Encodable, T: Encodable>(
    header: &H,
    header_version: i16,
    body: &T,
    version: i16,
    limit: usize,
) -> anyhow_free::Result<Bytes> {
    let size = header
        .compute_size(header_version)
        .map_err(anyhow_free::Error::from)?
        + body
            .compute_size(version)
            .map_err(anyhow_free::Error::from)?;
    if size > limit {
        return Err(anyhow_free::Error(format!(
            "frame of {size} bytes exceeds the {limit}-byte limit"
        )));
    }
    let mut buf = BytesMut::with_capacity(SIZE_PREFIX_LEN + size);
    buf.put_i32(size as i32);
    header
        .encode(&mut buf, header_version)
        .map_err(anyhow_free::Error::from)?;
    body.encode(&mut buf, version)
        .map_err(anyhow_free::Error::from)?;
    debug_assert_eq!(
        buf.len(),
        SIZE_PREFIX_LEN + size,
        "compute_size disagrees with encode"
    );
    Ok(buf.freeze())
}

/// Decode a response frame body (after the size prefix) for tests and clients.
pub fn decode_response<T: Decodable>(
    api_key: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> anyhow_free::Result<(i32, T)> {
    let header_version = api_key.response_header_version(version);
    let header =
        ResponseHeader::decode(&mut frame, header_version).map_err(anyhow_free::Error::from)?;
    let body = T::decode(&mut frame, version).map_err(anyhow_free::Error::from)?;
    if frame.has_remaining() {
        return Err(anyhow_free::Error(format!(
            "{} trailing bytes after response",
            frame.remaining()
        )));
    }
    Ok((header.correlation_id, body))
}

/// The message crate reports errors as `anyhow::Error`; we keep our own public API free
/// of anyhow with this small string-carrying error.
pub mod anyhow_free {
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct Error(pub String);
    impl Error {
        pub fn from<E: std::fmt::Display>(e: E) -> Self {
            Error(e.to_string())
        }
    }
    pub type Result<T> = std::result::Result<T, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn request_round_trip_through_header_versions() {
        for (key, version) in [
            (ApiKey::ApiVersions, 3i16),
            (ApiKey::ApiVersions, 0),
            (ApiKey::Metadata, 1),
            (ApiKey::Metadata, 12),
        ] {
            let header = RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_correlation_id(77)
                .with_client_id(Some(StrBytes::from_static_str("t")));
            let frame = match key {
                ApiKey::ApiVersions => {
                    encode_request(&header, key, &ApiVersionsRequest::default()).unwrap()
                }
                _ => encode_request(&header, key, &MetadataRequest::default()).unwrap(),
            };
            let size = i32::from_be_bytes(frame[..4].try_into().unwrap());
            assert_eq!(size as usize, frame.len() - 4);
            let req = decode_request(frame.slice(4..)).unwrap();
            assert_eq!(req.api_key, key);
            assert_eq!(req.version(), version);
            assert_eq!(req.correlation_id(), 77);
            assert_eq!(req.header.client_id.as_deref(), Some("t"));
        }
    }

    #[test]
    fn unknown_key_and_short_frames_are_errors() {
        assert!(matches!(
            decode_request(Bytes::from_static(&[0x27, 0x0f, 0, 0, 0, 0, 0, 1])),
            Err(FrameError::UnknownApiKey(9999))
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 1])),
            Err(FrameError::TooShort(2))
        ));
        // Metadata v1 header cut inside the client id
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 9, b'a'])),
            Err(FrameError::MalformedHeader { .. })
        ));
    }

    #[test]
    fn frame_size_limit() {
        assert_eq!(check_frame_size(10, 100).unwrap(), 10);
        assert!(check_frame_size(101, 100).is_err());
        assert!(check_frame_size(-1, 100).is_err());
    }
}
