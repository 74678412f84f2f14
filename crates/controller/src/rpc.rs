//! The controller quorum's transport: openraft's RPCs between controllers and the
//! writes a controller forwards to the active one, over the CONTROLLER listener.
//!
//! A frame is a 4-byte big-endian length and a JSON body, one request and one response
//! per round trip on a connection. The CONTROLLER listener serves only controllers
//! (Kafka's controllers also speak only controller RPCs there), so this transport is
//! private to Ottla's quorum; clients never see it. Frames are bounded
//! ([`MAX_QUORUM_FRAME_BYTES`]) and every exchange has a deadline, so a stuck or hostile
//! peer costs one connection, never the quorum.
//!
//! The listener is PLAINTEXT or SSL ([`QuorumTransport`]): with TLS, controllers and
//! brokers show their certificates, and every connection is admitted or refused by its
//! principal before anything is read from it (Kafka checks CLUSTER_ACTION on every
//! controller API; a peer that may write the metadata log may change anything).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Snapshot, SnapshotMeta, Vote};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::feed::{MetadataFeed, MetadataFetch};
use crate::quorum::{ControllerNode, MetadataRaft, MetadataSnapshotData, TypeConfig};
use crate::{ControllerOp, ControllerOpResult, QuorumDescription};

/// What the CONTROLLER listener asks of the local controller.
pub trait ForwardTarget: Send + Sync {
    /// Run a forwarded change as the active controller (blocking).
    fn execute(&self, op: ControllerOp) -> ControllerOpResult;
    /// The quorum as the active controller sees it; `None` if this node is not it.
    fn describe(&self) -> Option<QuorumDescription>;
    /// This voter's feed of committed metadata, for observers.
    fn feed(&self) -> Option<Arc<MetadataFeed>>;
    /// The active controller as this voter knows it.
    fn leader(&self) -> Option<u64>;
}

/// Longest an observer's fetch waits for new metadata before it is answered empty.
pub const MAX_OBSERVER_WAIT: Duration = Duration::from_secs(1);

/// Largest frame either side accepts: a snapshot of a large cluster's image is the
/// biggest message (a few MiB for 100k partitions).
pub const MAX_QUORUM_FRAME_BYTES: usize = 256 * 1024 * 1024;
/// How long one exchange may take when openraft gives no deadline of its own.
const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// A forwarded write waits for the quorum to commit it.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a TLS handshake on the CONTROLLER listener may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may speak on the CONTROLLER listener: given a peer's principal
/// (`User:ANONYMOUS` without a certificate), Ok, or Err with the reason it is refused.
pub type QuorumAdmission = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// How connections on the CONTROLLER listener are secured, both ways.
#[derive(Clone)]
pub struct QuorumTransport {
    /// Kafka's name of the listener (for logs).
    pub listener: String,
    /// `None`: PLAINTEXT.
    pub tls: Option<QuorumTls>,
    /// Decides on each accepted connection, by principal.
    pub admit: QuorumAdmission,
}

/// A peer certificate's principal, or why none applies.
pub type CertificatePrincipal =
    Arc<dyn Fn(&CertificateDer<'_>) -> Result<String, String> + Send + Sync>;

/// TLS on the CONTROLLER listener (`CONTROLLER:SSL`).
#[derive(Clone)]
pub struct QuorumTls {
    /// For connections to this node (`None` on a broker-only node: it listens for no
    /// controller connection).
    pub acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// For connections to the other controllers (the listener's trust store; its key
    /// store as the client certificate).
    pub connector: ottla_client::ClientTls,
    /// A peer certificate's principal (`ssl.principal.mapping.rules` on its subject).
    pub principal: CertificatePrincipal,
}

impl Default for QuorumTransport {
    /// PLAINTEXT, every peer admitted (a single node's, and the tests').
    fn default() -> Self {
        QuorumTransport {
            listener: "CONTROLLER".into(),
            tls: None,
            admit: Arc::new(|_| Ok(())),
        }
    }
}

impl std::fmt::Debug for QuorumTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumTransport")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// A connection of the quorum transport: TCP, or a TLS session over it.
trait QuorumStream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> QuorumStream for T {}

/// What a controller asks another.
#[derive(Debug, Serialize, Deserialize)]
pub enum QuorumRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    FullSnapshot {
        vote: Vote<u64>,
        meta: SnapshotMeta<u64, ControllerNode>,
        data: MetadataSnapshotData,
    },
    /// A write for the active controller (this node is not it).
    Forward(ControllerOp),
    /// DescribeQuorum, for the active controller.
    DescribeQuorum,
    /// An observer (a broker that is not a voter) asks for the committed metadata
    /// after `after`, waiting up to `max_wait_ms` for some.
    FetchMetadata {
        observer: i32,
        after: u64,
        max_wait_ms: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum QuorumResponse {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    FullSnapshot(Result<SnapshotResponse<u64>, Fatal<u64>>),
    Forward(ControllerOpResult),
    /// `None`: the asked node is not the active controller.
    DescribeQuorum(Option<QuorumDescription>),
    /// `None`: the asked node keeps no feed (it is shutting down).
    Metadata(Option<MetadataFetch>),
}

/// Write one frame.
async fn write_frame<T: Serialize>(
    stream: &mut (dyn QuorumStream + '_),
    message: &T,
) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    if body.len() > MAX_QUORUM_FRAME_BYTES {
        return Err(io::Error::other(format!(
            "quorum frame of {} bytes exceeds {MAX_QUORUM_FRAME_BYTES}",
            body.len()
        )));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await
}

/// Read one frame; `None` at a clean end of stream.
async fn read_frame<T: for<'de> Deserialize<'de>>(
    stream: &mut (dyn QuorumStream + '_),
) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_QUORUM_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("quorum frame of {len} bytes exceeds {MAX_QUORUM_FRAME_BYTES}"),
        ));
    }
    // Grow with what arrives: a peer announcing a large frame pays for what it sends.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    (&mut *stream)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "quorum frame cut short",
        ));
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Serves the CONTROLLER listener: openraft's RPCs into the local Raft, forwarded
/// writes and DescribeQuorum into `target` (the local controller, as the active one).
pub async fn serve(
    listener: TcpListener,
    raft: MetadataRaft,
    target: Arc<dyn ForwardTarget>,
    mut stop: watch::Receiver<bool>,
    transport: QuorumTransport,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (raft, target, transport) = (raft.clone(), target.clone(), transport.clone());
                connections.spawn(async move {
                    if let Some(stream) = admit(stream, peer, &transport).await {
                        serve_connection(stream, peer, raft, target).await;
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    connections.abort_all();
}

/// The TLS handshake (on SSL) and the admission of the peer's principal; `None`: the
/// connection is refused (and logged as Kafka logs a failed authentication).
async fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    transport: &QuorumTransport,
) -> Option<Box<dyn QuorumStream>> {
    let refuse = |why: &str| {
        tracing::info!(
            "[SocketServer listenerType=CONTROLLER, listener={}] Failed authentication with /{} ({why})",
            transport.listener,
            peer.ip()
        );
    };
    let (stream, principal): (Box<dyn QuorumStream>, String) = match &transport.tls {
        None => (Box::new(stream), "User:ANONYMOUS".to_string()),
        Some(QuorumTls { acceptor: None, .. }) => {
            refuse("this node has no TLS acceptor for the controller listener");
            return None;
        }
        Some(
            tls @ QuorumTls {
                acceptor: Some(acceptor),
                ..
            },
        ) => {
            let session =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(session)) => session,
                    Ok(Err(e)) => {
                        refuse(&format!("SSL handshake failed: {e}"));
                        return None;
                    }
                    Err(_) => {
                        refuse("SSL handshake did not finish in time");
                        return None;
                    }
                };
            let principal = match session
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
            {
                None => Ok("User:ANONYMOUS".to_string()),
                Some(cert) => (tls.principal)(cert),
            };
            match principal {
                Ok(p) => (Box::new(session), p),
                Err(e) => {
                    refuse(&e);
                    return None;
                }
            }
        }
    };
    if let Err(why) = (transport.admit)(&principal) {
        refuse(&format!("principal {principal} refused: {why}"));
        return None;
    }
    Some(stream)
}

async fn serve_connection(
    mut stream: Box<dyn QuorumStream>,
    peer: SocketAddr,
    raft: MetadataRaft,
    target: Arc<dyn ForwardTarget>,
) {
    loop {
        let request: QuorumRequest = match read_frame(&mut *stream).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("Closing controller connection from {peer}: {e}");
                return;
            }
        };
        let response = match request {
            QuorumRequest::AppendEntries(rpc) => {
                QuorumResponse::AppendEntries(raft.append_entries(rpc).await)
            }
            QuorumRequest::Vote(rpc) => QuorumResponse::Vote(raft.vote(rpc).await),
            QuorumRequest::FullSnapshot { vote, meta, data } => {
                let snapshot = Snapshot {
                    meta,
                    snapshot: Box::new(data),
                };
                QuorumResponse::FullSnapshot(raft.install_full_snapshot(vote, snapshot).await)
            }
            QuorumRequest::DescribeQuorum => QuorumResponse::DescribeQuorum(target.describe()),
            QuorumRequest::FetchMetadata {
                observer,
                after,
                max_wait_ms,
            } => QuorumResponse::Metadata(
                fetch_metadata(&*target, observer, after, max_wait_ms).await,
            ),
            QuorumRequest::Forward(op) => {
                // The write blocks on the quorum's commit: off the async workers.
                let target = target.clone();
                let result = tokio::task::spawn_blocking(move || target.execute(op))
                    .await
                    .unwrap_or_else(|e| ControllerOpResult::Failed {
                        code: -1,
                        message: format!("the forwarded write failed: {e}"),
                    });
                QuorumResponse::Forward(result)
            }
        };
        if let Err(e) = write_frame(&mut *stream, &response).await {
            tracing::debug!("Controller connection from {peer} closed: {e}");
            return;
        }
    }
}

/// An observer's fetch: at once when there is something after `after`, else when
/// something is applied or the wait ends.
async fn fetch_metadata(
    target: &dyn ForwardTarget,
    observer: i32,
    after: u64,
    max_wait_ms: u64,
) -> Option<MetadataFetch> {
    let feed = target.feed()?;
    let mut applied = feed.subscribe();
    let wait = Duration::from_millis(max_wait_ms).min(MAX_OBSERVER_WAIT);
    if *applied.borrow_and_update() <= after {
        let _ = tokio::time::timeout(wait, applied.changed()).await;
    }
    Some(feed.fetch(observer, after, target.leader(), crate::now_ms()))
}

/// One request/response exchange with `addr` on a fresh or kept connection.
pub struct QuorumClient {
    addr: String,
    transport: QuorumTransport,
    stream: Option<Box<dyn QuorumStream>>,
}

impl QuorumClient {
    pub fn new(addr: String, transport: QuorumTransport) -> QuorumClient {
        QuorumClient {
            addr,
            transport,
            stream: None,
        }
    }

    /// Send `request`, await the response within `timeout`. A failed exchange drops the
    /// connection (a late response must not answer the next request).
    pub async fn call(
        &mut self,
        request: &QuorumRequest,
        timeout: Duration,
    ) -> Result<QuorumResponse, CallError> {
        let exchange = async {
            if self.stream.is_none() {
                let stream = TcpStream::connect(&self.addr)
                    .await
                    .map_err(CallError::Unreachable)?;
                let _ = stream.set_nodelay(true);
                let stream: Box<dyn QuorumStream> = match &self.transport.tls {
                    None => Box::new(stream),
                    Some(tls) => Box::new(
                        tls.connector
                            .handshake(&self.addr, stream)
                            .await
                            .map_err(|e| CallError::Network(io::Error::other(e)))?,
                    ),
                };
                self.stream = Some(stream);
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(CallError::Network(io::Error::other("no connection")));
            };
            write_frame(&mut **stream, request)
                .await
                .map_err(CallError::Network)?;
            match read_frame(&mut **stream).await {
                Ok(Some(r)) => Ok(r),
                Ok(None) => Err(CallError::Network(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the controller closed the connection",
                ))),
                Err(e) => Err(CallError::Network(e)),
            }
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Network(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from {} within {timeout:?}", self.addr),
            ))),
        };
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum CallError {
    /// Could not connect: the node is down.
    Unreachable(io::Error),
    /// Connected, but the exchange failed.
    Network(io::Error),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<u64, ControllerNode, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

/// Makes a [`QuorumNetwork`] per peer (openraft keeps one per replication stream).
#[derive(Clone, Default)]
pub struct QuorumNetworkFactory {
    pub transport: QuorumTransport,
}

impl RaftNetworkFactory<TypeConfig> for QuorumNetworkFactory {
    type Network = QuorumNetwork;

    async fn new_client(&mut self, _target: u64, node: &ControllerNode) -> QuorumNetwork {
        QuorumNetwork {
            client: QuorumClient::new(
                format!("{}:{}", node.host, node.port),
                self.transport.clone(),
            ),
        }
    }
}

/// openraft's view of one peer.
pub struct QuorumNetwork {
    client: QuorumClient,
}

fn deadline(option: &RPCOption) -> Duration {
    let ttl = option.hard_ttl();
    if ttl.is_zero() {
        DEFAULT_RPC_TIMEOUT
    } else {
        ttl
    }
}

fn unexpected<E: std::error::Error>(what: &str) -> RPCError<u64, ControllerNode, E> {
    RPCError::Network(NetworkError::new(&io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected answer to {what}"),
    )))
}

impl RaftNetwork<TypeConfig> for QuorumNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, ControllerNode, RaftError<u64>>> {
        match self
            .client
            .call(&QuorumRequest::AppendEntries(rpc), deadline(&option))
            .await
        {
            Ok(QuorumResponse::AppendEntries(r)) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(0, e)))
            }
            Ok(_) => Err(unexpected("AppendEntries")),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, ControllerNode, RaftError<u64>>> {
        match self
            .client
            .call(&QuorumRequest::Vote(rpc), deadline(&option))
            .await
        {
            Ok(QuorumResponse::Vote(r)) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(0, e)))
            }
            Ok(_) => Err(unexpected("Vote")),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, ControllerNode, RaftError<u64, InstallSnapshotError>>,
    > {
        // With `generic-snapshot-data` openraft sends whole snapshots through
        // `full_snapshot`; the chunked form is never used.
        Err(unexpected(
            "InstallSnapshot (chunked snapshots are not used)",
        ))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let request = QuorumRequest::FullSnapshot {
            vote,
            meta: snapshot.meta,
            data: *snapshot.snapshot,
        };
        let call = self
            .client
            .call(&request, deadline(&option).max(FORWARD_TIMEOUT));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = call => match answer {
                Ok(QuorumResponse::FullSnapshot(Ok(r))) => Ok(r),
                Ok(QuorumResponse::FullSnapshot(Err(fatal))) => Err(StreamingError::RemoteError(
                    openraft::error::RemoteError::new(0, fatal),
                )),
                Ok(_) => Err(StreamingError::Network(NetworkError::new(&io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected answer to a snapshot",
                )))),
                Err(CallError::Unreachable(e)) => Err(StreamingError::Unreachable(Unreachable::new(&e))),
                Err(CallError::Network(e)) => Err(StreamingError::Network(NetworkError::new(&e))),
            },
        }
    }
}

/// The voters' endpoints, by node id, for `Raft::initialize`.
pub fn voters_map(voters: &[(i32, String, u16)]) -> BTreeMap<u64, ControllerNode> {
    voters
        .iter()
        .map(|(id, host, port)| {
            (
                *id as u64,
                ControllerNode {
                    host: host.clone(),
                    port: *port,
                },
            )
        })
        .collect()
}
