//! A request frame (the bytes after the size prefix), decoded as the broker does: the
//! header, then, for an API key and version the broker serves, the body with that
//! API's message type. Any input must give `Ok` or `Err`: no panic, no abort, and no
//! allocation beyond what the frame's own size justifies (libFuzzer's `-rss_limit_mb`
//! and `-malloc_limit_mb` catch a decoder that trusts a length from the wire).
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::RequestKind;
use libfuzzer_sys::fuzz_target;
use ottla_protocol::api_versions::is_supported;
use ottla_protocol::frame::decode_request;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode_request(Bytes::copy_from_slice(data)) else {
        return;
    };
    // The broker closes the connection before decoding a body it does not serve.
    if !is_supported(request.api_key as i16, request.version()) {
        return;
    }
    let mut body = request.body.clone();
    let _ = RequestKind::decode(request.api_key, &mut body, request.version());
});
