//! A broker started in-process on an ephemeral port in a temp dir, and a minimal raw
//! protocol client for requests that real clients never send (bad CRCs, hostile
//! lengths, exact error codes).

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use ottla::config::BrokerConfig;
use ottla::RunningBroker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct TestBroker {
    pub dir: tempfile::TempDir,
    pub running: Option<RunningBroker>,
    pub overrides: Vec<(String, String)>,
}

impl TestBroker {
    pub async fn start(overrides: &[(&str, &str)]) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut b = TestBroker {
            dir,
            running: None,
            overrides,
        };
        b.boot().await;
        b
    }

    async fn boot(&mut self) {
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        values.insert("listeners".into(), "PLAINTEXT://127.0.0.1:0".into());
        values.insert(
            "log.dirs".into(),
            self.dir.path().join("data").display().to_string(),
        );
        for (k, v) in &self.overrides {
            values.insert(k.clone(), v.clone());
        }
        let config = BrokerConfig::from_values(values).unwrap();
        self.running = Some(ottla::start(config).await.unwrap());
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.as_ref().unwrap().addresses[0]
    }

    /// Clean shutdown and start again on the same directory.
    pub async fn restart(&mut self) {
        self.running.take().unwrap().stop().await.unwrap();
        self.boot().await;
    }

    /// Restart without the clean shutdown (the in-process stand-in for a crash: no
    /// final flush, checkpoint or clean-shutdown marker).
    pub async fn restart_uncleanly(&mut self) {
        self.running.take().unwrap().crash().await;
        self.boot().await;
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr()).await
    }
}

pub struct Client {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_correlation_id: 1,
        }
    }

    pub fn header(&mut self, api_key: ApiKey, version: i16) -> RequestHeader {
        let id = self.next_correlation_id;
        self.next_correlation_id += 1;
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("ottla-test")))
    }

    pub async fn send<T: Encodable>(&mut self, api_key: ApiKey, version: i16, body: &T) -> i32 {
        let header = self.header(api_key, version);
        let frame = ottla_protocol::frame::encode_request(&header, api_key, body).unwrap();
        self.stream.write_all(&frame).await.unwrap();
        header.correlation_id
    }

    /// Send a header claiming `claimed_version` with a body encoded at `body_version`
    /// (for versions the broker must refuse, which the encoder cannot produce).
    pub async fn send_claiming<T: Encodable>(
        &mut self,
        api_key: ApiKey,
        claimed_version: i16,
        body_version: i16,
        body: &T,
    ) -> i32 {
        let header = self.header(api_key, claimed_version);
        let mut buf = bytes::BytesMut::new();
        header
            .encode(&mut buf, api_key.request_header_version(claimed_version))
            .unwrap();
        body.encode(&mut buf, body_version).unwrap();
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.stream.write_all(&frame).await.unwrap();
        header.correlation_id
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Read one response frame; `None` if the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    pub async fn receive<T: Decodable>(&mut self, api_key: ApiKey, version: i16) -> (i32, T) {
        let frame = self
            .read_frame()
            .await
            .expect("broker closed the connection");
        ottla_protocol::frame::decode_response(api_key, version, frame).unwrap()
    }

    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        let id = self.send(api_key, version, body).await;
        let (got, response) = self.receive(api_key, version).await;
        assert_eq!(got, id, "correlation id");
        response
    }

    /// True when the broker has closed the connection (EOF or reset).
    pub async fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                self.stream.read(&mut buf)
            )
            .await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}
