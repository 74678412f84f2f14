//! A clean shutdown racing the metadata that requests still in flight commit.

mod common;

use std::time::Duration;

use common::TestBroker;
use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest};
use kafka_protocol::protocol::StrBytes;

/// The first FindCoordinator creates `__consumer_offsets` (50 partitions, one group
/// shard each) on the blocking pool. A SIGTERM arriving meanwhile must not leave
/// partitions being opened or shards loaded after the stop returned (they would run
/// while the logs are flushed and closed). Tried at several moments of the creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_partition_opens_or_shard_loads_after_a_clean_stop() {
    for delay_ms in [0u64, 1, 2, 4, 8, 16, 32] {
        let mut b = TestBroker::start(&[]).await;
        let mut client = b.client().await;
        let request =
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("group"));
        client.send(ApiKey::FindCoordinator, 1, &request).await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let running = b.running.take().unwrap();
        let broker = running.broker.clone();
        running.stop().await.unwrap();
        let (logs, shards) = (
            broker.replicas.all().len(),
            broker.groups.runtime().shard_count(),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            broker.replicas.all().len(),
            logs,
            "a log opened after the stop (FindCoordinator {delay_ms} ms before it)"
        );
        assert_eq!(
            (shards, broker.groups.runtime().shard_count()),
            (0, 0),
            "group shards loaded after the stop (FindCoordinator {delay_ms} ms before it)"
        );
    }
}
