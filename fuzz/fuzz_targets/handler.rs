//! A request frame handed to the broker's router, as a connection would: one broker
//! (in a temp dir, state kept across inputs, like a long-lived connection's broker) takes
//! every input through `handlers::dispatch`, and a reply that completes later is polled
//! for a moment. No input may panic a handler; the network layer would turn a panic
//! into a closed connection, but a panic is still a bug: it can leave shared state
//! (a coordinator, a partition) half-changed.
#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use libfuzzer_sys::fuzz_target;
use ottla::broker::Broker;
use ottla::config::BrokerConfig;
use ottla::handlers::{dispatch, Reply};
use ottla_protocol::frame::decode_request;

/// How long a delayed reply (a fetch waiting for data, a parked JoinGroup) is driven.
const LATER_REPLY_POLL: Duration = Duration::from_millis(2);

struct Harness {
    runtime: tokio::runtime::Runtime,
    broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        // libFuzzer ends the process with exit(), so this directory is never removed
        // here; it lives under fuzz/target, and scripts/fuzz.sh clears old ones.
        let dir = tempfile::Builder::new()
            .prefix("handler-broker-")
            .tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target"))
            .expect("temp dir");
        let values = BTreeMap::from([
            ("log.dirs".to_string(), dir.path().display().to_string()),
            ("offsets.topic.num.partitions".to_string(), "2".to_string()),
            (
                "group.initial.rebalance.delay.ms".to_string(),
                "0".to_string(),
            ),
        ]);
        let config = BrokerConfig::from_values(values).expect("config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        // Coordinator shards load on the runtime: start the broker inside it.
        let broker = {
            let _entered = runtime.enter();
            Broker::start(config).expect("broker")
        };
        Harness {
            runtime,
            broker,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let Ok(request) = decode_request(Bytes::copy_from_slice(data)) else {
        return;
    };
    // Each partition is a directory of files, and a request may ask for up to 100,000
    // of them: valid, but far too slow for one fuzz input. Topics still appear through
    // Metadata's auto-creation.
    if matches!(
        request.api_key,
        ApiKey::CreateTopics | ApiKey::CreatePartitions
    ) {
        return;
    }
    let _entered = h.runtime.enter();
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let mut reply = dispatch(&h.broker, request, peer);
    // Work the connection would await before its next request (auto-creation).
    while let Ok(Reply::Await(work)) = reply {
        reply = h.runtime.block_on(work);
    }
    if let Ok(Reply::Later(reply)) = reply {
        let _ = h
            .runtime
            .block_on(tokio::time::timeout(LATER_REPLY_POLL, reply));
    }
});
