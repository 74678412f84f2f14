//! The inter-broker client (`ottla-client`) against a real in-process broker, and
//! against hand-written hostile peers for what a broker never does (stay silent, send
//! a frame claiming 2 GiB, answer the wrong request).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::TestBroker;
use futures_util::future::join_all;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use ottla_client::{ClientConfig, ClientError, Connection, NodeClient};
use ottla_protocol::api_versions::{supported, SUPPORTED_APIS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn metadata_for(topic: &str) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic)))
        ]))
        .with_allow_auto_topic_creation(false)
}

fn create_topic(topic: &str, partitions: i32) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)])
}

fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("ottla-test"))
        .with_client_software_version(StrBytes::from_static_str("1"))
}

/// A loopback port nobody listens on (bound once, then released).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// Send until the client is past its reconnect backoff and gets an answer (other errors
/// are allowed while the node comes back); panics if that takes longer than `within`.
async fn send_until_ok(
    client: &NodeClient,
    request: &MetadataRequest,
    within: Duration,
) -> kafka_protocol::messages::MetadataResponse {
    let deadline = Instant::now() + within;
    loop {
        let error = match client.send(12, request).await {
            Ok(response) => return response,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "no answer from {} within {within:?}; last error: {error}",
            client.address()
        );
        match error {
            ClientError::Backoff { retry_in } => tokio::time::sleep(retry_in).await,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

#[tokio::test]
async fn api_versions_negotiation_uses_the_brokers_table() {
    let broker = TestBroker::start(&[]).await;
    let client = NodeClient::new(broker.addr().to_string(), ClientConfig::for_broker(7));
    assert_eq!(client.config().client_id, "ottla-broker-7");
    assert!(!client.is_connected().await, "connects lazily");

    let table = client.api_versions().await.unwrap();
    assert!(client.is_connected().await);
    assert_eq!(table.iter().count(), SUPPORTED_APIS.len());
    for api in SUPPORTED_APIS {
        assert_eq!(
            table.range(api.key),
            Some((api.advertised_min_version, api.max_version)),
            "{:?}",
            api.key
        );
    }

    // All the versions the message crate knows, against what the broker implements.
    let ours = ApiKey::Metadata.valid_versions();
    let theirs = supported(ApiKey::Metadata).unwrap();
    let version = client
        .negotiate(ApiKey::Metadata, ours.min, ours.max)
        .await
        .unwrap();
    assert_eq!(version, ours.max.min(theirs.max_version));
    assert_eq!(
        client.negotiate(ApiKey::Metadata, 0, 1).await.unwrap(),
        1,
        "the highest common version, not the highest of either side"
    );

    // No overlap: a clear error naming both ranges.
    let err = client
        .negotiate(
            ApiKey::Metadata,
            theirs.max_version + 1,
            theirs.max_version + 3,
        )
        .await
        .unwrap_err();
    match &err {
        ClientError::UnsupportedVersion {
            api_key: ApiKey::Metadata,
            theirs: Some((min, max)),
            ..
        } => assert_eq!((*min, *max), (theirs.min_version, theirs.max_version)),
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    assert!(err.to_string().contains("Metadata"), "{err}");

    // An API the broker does not implement at all (whichever that is today).
    let missing = [
        ApiKey::WriteTxnMarkers,
        ApiKey::ElectLeaders,
        ApiKey::AlterPartitionReassignments,
        ApiKey::DescribeQuorum,
        ApiKey::UpdateFeatures,
        ApiKey::DescribeLogDirs,
    ]
    .into_iter()
    .find(|key| supported(*key).is_none())
    .expect("one of these APIs is unimplemented");
    assert!(matches!(
        client.negotiate(missing, 0, 99).await,
        Err(ClientError::UnsupportedVersion { theirs: None, .. })
    ));

    // Sending at a version the broker lacks fails before anything is sent, and leaves
    // the connection usable.
    let request = metadata_for("nothing-here");
    assert!(matches!(
        client.send(theirs.max_version + 1, &request).await,
        Err(ClientError::UnsupportedVersion { .. })
    ));
    let (used, response) = client
        .send_negotiated(ours.min, ours.max, &request)
        .await
        .unwrap();
    assert_eq!(used, version);
    assert_eq!(response.brokers.len(), 1);
    assert_eq!(response.topics.len(), 1);
    assert_eq!(response.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
}

#[tokio::test]
async fn pipelined_requests_on_one_connection_get_their_own_responses() {
    const TOPICS: usize = 20;
    const REQUESTS: usize = 200;
    let broker = TestBroker::start(&[]).await;
    let config = ClientConfig::for_broker(1);
    let connection = Connection::connect(&broker.addr().to_string(), &config)
        .await
        .unwrap();

    // Distinct topics with distinct partition counts, created concurrently.
    let partitions = |j: usize| (j % 4 + 1) as i32;
    let creates: Vec<CreateTopicsRequest> = (0..TOPICS)
        .map(|j| create_topic(&format!("pipe-{j}"), partitions(j)))
        .collect();
    let created = join_all(creates.iter().map(|r| connection.send(7, r))).await;
    for (j, response) in created.into_iter().enumerate() {
        let response = response.unwrap();
        assert_eq!(response.topics.len(), 1);
        assert_eq!(response.topics[0].name.0.as_str(), format!("pipe-{j}"));
        assert_eq!(response.topics[0].error_code, 0, "pipe-{j}");
        assert_eq!(response.topics[0].num_partitions, partitions(j));
    }

    // 200 requests at once: a mix of ApiVersions, Metadata for existing topics (each
    // with its own partition count) and Metadata for missing topics. A response handed
    // to the wrong request would fail one of the checks.
    enum Asked {
        Versions,
        Existing(usize),
        Missing(usize),
    }
    let asked: Vec<Asked> = (0..REQUESTS)
        .map(|i| match i % 3 {
            0 => Asked::Versions,
            1 => Asked::Existing(i % TOPICS),
            _ => Asked::Missing(i),
        })
        .collect();
    let versions_request = api_versions_request();
    let metadata_requests: Vec<Option<MetadataRequest>> = asked
        .iter()
        .map(|a| match a {
            Asked::Versions => None,
            Asked::Existing(j) => Some(metadata_for(&format!("pipe-{j}"))),
            Asked::Missing(i) => Some(metadata_for(&format!("absent-{i}"))),
        })
        .collect();
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let calls = asked.iter().zip(&metadata_requests).map(|(a, m)| {
        let connection = &connection;
        let versions_request = &versions_request;
        let max_in_flight = max_in_flight.clone();
        async move {
            let result = match (a, m) {
                (Asked::Versions, _) => {
                    let fut = connection.send(3, versions_request);
                    max_in_flight.fetch_max(connection.in_flight(), Ordering::Relaxed);
                    let r = fut.await.unwrap();
                    assert_eq!(r.error_code, 0);
                    assert_eq!(r.api_keys.len(), SUPPORTED_APIS.len());
                    return;
                }
                (_, Some(m)) => connection.send(12, m).await.unwrap(),
                (_, None) => unreachable!(),
            };
            max_in_flight.fetch_max(connection.in_flight(), Ordering::Relaxed);
            assert_eq!(result.topics.len(), 1);
            let topic = &result.topics[0];
            let topic_name = topic.name.as_ref().map(|n| n.0.to_string());
            match a {
                Asked::Existing(j) => {
                    assert_eq!(topic_name, Some(format!("pipe-{j}")));
                    assert_eq!(topic.error_code, 0);
                    assert_eq!(topic.partitions.len() as i32, partitions(*j));
                }
                Asked::Missing(i) => {
                    assert_eq!(topic_name, Some(format!("absent-{i}")));
                    assert_eq!(topic.error_code, UNKNOWN_TOPIC_OR_PARTITION);
                }
                Asked::Versions => unreachable!(),
            }
        }
    });
    join_all(calls).await;
    assert!(!connection.is_closed());
    assert_eq!(connection.in_flight(), 0);
    assert!(
        max_in_flight.load(Ordering::Relaxed) > 1,
        "requests were not pipelined"
    );
    assert!(max_in_flight.load(Ordering::Relaxed) <= ottla_client::MAX_IN_FLIGHT_PER_CONNECTION);
}

#[tokio::test]
async fn refused_connections_back_off_exponentially() {
    let client = NodeClient::new(closed_port().await.to_string(), ClientConfig::default());
    let request = metadata_for("t");

    let started = Instant::now();
    let first = client.send(12, &request).await.unwrap_err();
    assert!(matches!(first, ClientError::Io(_)), "{first:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Straight after a failure: fail fast, ~reconnect.backoff.ms (50 ± 20%) to wait.
    let retry_in = match client.send(12, &request).await {
        Err(ClientError::Backoff { retry_in }) => retry_in,
        other => panic!("expected Backoff, got {other:?}"),
    };
    assert!(retry_in <= Duration::from_millis(60), "{retry_in:?}");

    // Once it has passed, the client tries again (and fails again)...
    tokio::time::sleep(retry_in).await;
    let second = client.send(12, &request).await.unwrap_err();
    assert!(matches!(second, ClientError::Io(_)), "{second:?}");
    // ...and the next wait has doubled (100 ± 20%).
    let retry_in_2 = match client.send(12, &request).await {
        Err(ClientError::Backoff { retry_in }) => retry_in,
        other => panic!("expected Backoff, got {other:?}"),
    };
    assert!(
        retry_in_2 > Duration::from_millis(60) && retry_in_2 <= Duration::from_millis(120),
        "{retry_in_2:?}"
    );
    assert!(!client.is_connected().await);
}

#[tokio::test]
async fn reconnects_after_the_broker_restarts() {
    // A fixed port, so the restarted broker is where the client looks for it.
    let port = closed_port().await.port();
    let listeners = format!("PLAINTEXT://127.0.0.1:{port}");
    let mut broker = TestBroker::start(&[("listeners", &listeners)]).await;
    assert_eq!(broker.addr().port(), port);
    let client = NodeClient::new(broker.addr().to_string(), ClientConfig::for_broker(2));

    let created = client.send(7, &create_topic("survivor", 3)).await.unwrap();
    assert_eq!(created.topics[0].error_code, 0);
    assert!(client.is_connected().await);

    broker.restart().await;
    assert_eq!(broker.addr().port(), port, "restarted on the same port");

    let response = send_until_ok(&client, &metadata_for("survivor"), Duration::from_secs(10)).await;
    assert!(client.is_connected().await);
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].partitions.len(), 3);
}

#[tokio::test]
async fn a_stopped_broker_fails_fast_until_one_listens_again() {
    let port = closed_port().await.port();
    let listeners = format!("PLAINTEXT://127.0.0.1:{port}");
    let mut broker = TestBroker::start(&[("listeners", &listeners)]).await;
    let client = NodeClient::new(broker.addr().to_string(), ClientConfig::default());
    client.send(12, &metadata_for("t")).await.unwrap();

    // Stopped: the connection breaks, and reconnecting is refused, quickly.
    broker.running.take().unwrap().stop().await.unwrap();
    let started = Instant::now();
    loop {
        match client.send(12, &metadata_for("t")).await {
            Err(ClientError::Io(_)) => break,
            Err(ClientError::Backoff { retry_in }) => tokio::time::sleep(retry_in).await,
            Err(ClientError::ConnectionClosed { .. }) => {}
            other => panic!("expected a connection error, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "never saw the refused connection"
        );
    }
    assert!(!client.is_connected().await);

    // A broker listening at that address again (a fresh one here; the restart test
    // keeps the directory) is found by the same client.
    let _replacement = TestBroker::start(&[("listeners", &listeners)]).await;
    send_until_ok(&client, &metadata_for("t"), Duration::from_secs(5)).await;
    assert!(client.is_connected().await);
}

/// A peer that accepts connections and reads and discards everything: the first
/// `silent` connections are never answered; later ones are forwarded to `upstream`.
async fn silent_then_forwarding(
    silent: usize,
    upstream: Option<SocketAddr>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                match upstream {
                    Some(upstream) if n >= silent => {
                        let mut to = TcpStream::connect(upstream).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut stream, &mut to).await;
                    }
                    _ => {
                        let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_request_timeout_closes_the_connection_and_the_next_send_reconnects() {
    let broker = TestBroker::start(&[]).await;
    let timeout = Duration::from_millis(400);
    let config = ClientConfig {
        request_timeout: timeout,
        ..ClientConfig::for_broker(3)
    };

    // On a bare connection: every request waiting on it fails, the timed-out one with
    // Timeout, and the connection refuses further requests at once.
    let (silent, _) = silent_then_forwarding(usize::MAX, None).await;
    let connection = Connection::connect(&silent.to_string(), &config)
        .await
        .unwrap();
    let requests: Vec<MetadataRequest> = (0..3).map(|i| metadata_for(&format!("t{i}"))).collect();
    let started = Instant::now();
    let results = join_all(requests.iter().map(|r| connection.send(12, r))).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout && elapsed < timeout * 5, "{elapsed:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(ClientError::Timeout { .. }))),
        "{results:?}"
    );
    assert!(results.iter().all(|r| matches!(
        r,
        Err(ClientError::Timeout { .. } | ClientError::ConnectionClosed { .. })
    )));
    assert!(connection.is_closed());
    assert_eq!(connection.in_flight(), 0);
    let started = Instant::now();
    assert!(matches!(
        connection.send(12, &requests[0]).await,
        Err(ClientError::ConnectionClosed { .. })
    ));
    assert!(started.elapsed() < Duration::from_millis(100));

    // Through a NodeClient: the first connection swallows everything (its ApiVersions
    // times out), the second one reaches the real broker.
    let (proxy, accepted) = silent_then_forwarding(1, Some(broker.addr())).await;
    let client = NodeClient::new(proxy.to_string(), config);
    let started = Instant::now();
    let first = client.send(12, &metadata_for("t")).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(first, Err(ClientError::Timeout { .. })),
        "{first:?}"
    );
    assert!(elapsed >= timeout && elapsed < timeout * 5, "{elapsed:?}");
    let response = send_until_ok(&client, &metadata_for("t"), Duration::from_secs(5)).await;
    assert_eq!(response.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "one reconnect");
    assert!(client.is_connected().await);
}

/// A peer that reads one request frame, answers with `reply` and then waits for the
/// client to hang up.
async fn answering_with(reply: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut size = [0u8; 4];
                if stream.read_exact(&mut size).await.is_err() {
                    return;
                }
                let mut request = vec![0u8; i32::from_be_bytes(size) as usize];
                if stream.read_exact(&mut request).await.is_err() {
                    return;
                }
                let _ = stream.write_all(&reply).await;
                let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
            });
        }
    });
    addr
}

async fn send_to_hostile_peer(reply: Vec<u8>, config: &ClientConfig) -> (ClientError, Duration) {
    let addr = answering_with(reply).await;
    let connection = Connection::connect(&addr.to_string(), config)
        .await
        .unwrap();
    let started = Instant::now();
    let result = connection.send(3, &api_versions_request()).await;
    let elapsed = started.elapsed();
    assert!(connection.is_closed(), "the connection must be closed");
    (result.unwrap_err(), elapsed)
}

#[tokio::test]
async fn hostile_response_frames_are_protocol_errors() {
    let config = ClientConfig::for_broker(4);

    // A size prefix of 2 GiB - 1: refused before any allocation, at once (not after
    // the request timeout), and not an abort.
    let mut huge = 0x7fff_ffffu32.to_be_bytes().to_vec();
    huge.extend_from_slice(&[0, 0, 0, 0, 1, 2, 3]);
    let (error, elapsed) = send_to_hostile_peer(huge.clone(), &config).await;
    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");

    // Above a configured max_response_bytes, and a negative size.
    let small = ClientConfig {
        max_response_bytes: 1024,
        ..config.clone()
    };
    let mut over = 2048u32.to_be_bytes().to_vec();
    over.extend_from_slice(&[0; 8]);
    let (error, _) = send_to_hostile_peer(over, &small).await;
    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
    let (error, _) = send_to_hostile_peer((-1i32).to_be_bytes().to_vec(), &config).await;
    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");

    // A response to a request that was never sent (correlation id mismatch).
    let mut wrong_id = 4u32.to_be_bytes().to_vec();
    wrong_id.extend_from_slice(&999_999i32.to_be_bytes());
    let (error, _) = send_to_hostile_peer(wrong_id, &config).await;
    assert!(
        matches!(&error, ClientError::Protocol(m) if m.contains("correlation")),
        "{error:?}"
    );

    // The right correlation id (the first request's, 0) with an undecodable body.
    let mut garbage = 5u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&0i32.to_be_bytes());
    garbage.push(0xff);
    let (error, _) = send_to_hostile_peer(garbage, &config).await;
    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");

    // Through a NodeClient, the huge frame answers the connection's ApiVersions.
    let addr = answering_with(huge).await;
    let client = NodeClient::new(addr.to_string(), config);
    let error = client.send(12, &metadata_for("t")).await.unwrap_err();
    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
    assert!(!client.is_connected().await);
}
