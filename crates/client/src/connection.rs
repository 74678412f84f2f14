//! One TCP connection to one broker, with pipelined requests.
//!
//! ```text
//!  send() ──encode, register──▶ pending queue ──────────────┐
//!     │                          (oldest first)              │ match by correlation id
//!     └──frame──▶ [bounded channel] ──▶ writer task ──▶ TCP ──▶ reader task ──┘
//! ```
//!
//! A request is given its correlation id, encoded, queued for the writer and added to
//! the pending queue in one critical section, so the pending queue is in exactly the
//! order the frames go out. Kafka answers a connection's requests in order, so every
//! response must carry the correlation id of the oldest pending request: the reader
//! task hands it the frame and moves on. A response for anything else means the two
//! sides no longer agree on the byte stream, and nothing after it can be trusted: the
//! connection is closed and every waiting request fails.
//!
//! The caller decodes its own response (on its own task, so one big Fetch response does
//! not hold up the reader). A request whose caller gives up (drops the future) stays
//! pending until its response is read and discarded, so the stream stays in step.
//!
//! Limits: at most [`MAX_IN_FLIGHT_PER_CONNECTION`] requests are pending (a semaphore,
//! whose permit travels with the pending entry until the response is read), response
//! frames above [`ClientConfig::max_response_bytes`] close the connection before
//! anything is allocated for them, and each request has
//! [`ClientConfig::request_timeout`]. A timed-out request closes the connection too:
//! its response may still arrive, and Kafka's clients do the same.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Request, StrBytes};
use ottla_protocol::frame::{check_frame_size, decode_response, encode_request, SIZE_PREFIX_LEN};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::security::ClientTls;

/// The reading side of a connection: a TCP stream's, or a TLS session's.
type ReadSide = Box<dyn AsyncRead + Send + Unpin>;
/// The writing side of a connection.
type WriteSide = Box<dyn AsyncWrite + Send + Unpin>;

/// Requests one connection may have waiting for responses; further `send`s wait for a
/// slot. Kafka's producer allows 5 (`max.in.flight.requests.per.connection`); broker
/// to broker traffic is a few long-polling fetchers and bursts of small RPCs, so a few
/// more keep the bursts pipelined while bounding what one peer can make us hold.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 16;
/// First allocation for a response frame; larger frames grow as their bytes arrive,
/// so a peer announcing a large frame costs what it actually sends.
const INITIAL_FRAME_BUFFER_BYTES: usize = 64 * 1024;
/// Read and write buffer sizes of the socket halves.
const SOCKET_BUFFER_BYTES: usize = 64 * 1024;

/// One TCP connection to one broker.
///
/// Cheap to share behind an `Arc`: `send` takes `&self`, and concurrent `send`s are
/// pipelined. Once broken (peer closed, I/O error, protocol error, timeout) it stays
/// broken; make a new one (or let [`crate::NodeClient`] do it). Dropping it closes
/// the socket and fails whatever is still waiting.
#[derive(Debug)]
pub struct Connection {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    peer: SocketAddr,
    client_id: StrBytes,
    request_timeout: Duration,
    max_response_bytes: usize,
    in_flight: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Correlation id of the next request (ids increase by one per request).
    next_correlation_id: i32,
    /// Requests written (or queued for the writer) and not yet answered, oldest first.
    pending: VecDeque<Pending>,
    /// Frames for the writer task; `None` once the connection is broken. Its capacity
    /// equals the in-flight limit, and every queued frame has a pending entry holding a
    /// permit, so it can never be full when a permit holder pushes.
    to_writer: Option<mpsc::Sender<Bytes>>,
    /// Why and when the connection broke, once it has.
    broken: Option<(String, Instant)>,
    /// The reader and writer tasks, aborted when the connection breaks or is dropped.
    tasks: Vec<AbortHandle>,
}

#[derive(Debug)]
struct Pending {
    correlation_id: i32,
    reply: oneshot::Sender<Result<Bytes, ClientError>>,
    /// Held until the response is read (or the connection breaks), even if the caller
    /// gave up: the request is in flight until then.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    /// Connect to `addr` (`host:port`; resolved on every call, so a node whose address
    /// now resolves elsewhere is found there) within `connection_setup_timeout`, with
    /// the TLS handshake too when the config asks for TLS. (SASL comes after
    /// ApiVersions: see [`crate::NodeClient`].)
    pub async fn connect(addr: &str, config: &ClientConfig) -> Result<Connection, ClientError> {
        let setup = async {
            let stream = TcpStream::connect(addr).await?;
            match &config.security.tls {
                None => Connection::from_stream(stream, config),
                Some(tls) => Connection::from_tls(addr, stream, tls, config).await,
            }
        };
        match tokio::time::timeout(config.connection_setup_timeout, setup).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                operation: "connection setup",
                after: config.connection_setup_timeout,
            }),
        }
    }

    /// Wrap an established stream: starts the reader and writer tasks (so this must run
    /// inside a tokio runtime).
    pub fn from_stream(
        stream: TcpStream,
        config: &ClientConfig,
    ) -> Result<Connection, ClientError> {
        // Requests are small and latency-bound; do not let Nagle hold them back.
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let (read, write) = stream.into_split();
        Ok(Connection::start(
            peer,
            Box::new(read),
            Box::new(write),
            config,
        ))
    }

    /// Run the TLS handshake on `stream` (checking the certificate against the host of
    /// `addr` unless the config turned that off) and wrap the session.
    async fn from_tls(
        addr: &str,
        stream: TcpStream,
        tls: &ClientTls,
        config: &ClientConfig,
    ) -> Result<Connection, ClientError> {
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let name = ClientTls::server_name(addr).map_err(ClientError::Tls)?;
        let session = tls
            .connector
            .connect(name, stream)
            .await
            .map_err(|e| ClientError::Tls(format!("TLS handshake with {addr} failed: {e}")))?;
        let (read, write) = tokio::io::split(session);
        Ok(Connection::start(
            peer,
            Box::new(read),
            Box::new(write),
            config,
        ))
    }

    fn start(
        peer: SocketAddr,
        read: ReadSide,
        write: WriteSide,
        config: &ClientConfig,
    ) -> Connection {
        let (to_writer, from_senders) = mpsc::channel(MAX_IN_FLIGHT_PER_CONNECTION);
        let shared = Arc::new(Shared {
            peer,
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            max_response_bytes: config.max_response_bytes,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION)),
            state: Mutex::new(State {
                next_correlation_id: 0,
                pending: VecDeque::with_capacity(MAX_IN_FLIGHT_PER_CONNECTION),
                to_writer: Some(to_writer),
                broken: None,
                tasks: Vec::with_capacity(2),
            }),
        });
        let reader = tokio::spawn(read_responses(shared.clone(), read));
        let writer = tokio::spawn(write_requests(shared.clone(), write, from_senders));
        {
            let mut state = shared.state.lock();
            state.tasks.push(reader.abort_handle());
            state.tasks.push(writer.abort_handle());
            if state.broken.is_some() {
                // Failed before we could record the tasks (cannot really happen: a
                // task needs an await point first); make sure both stop.
                for task in state.tasks.drain(..) {
                    task.abort();
                }
            }
        }
        Connection { shared }
    }

    /// Send `request` at `version` and wait for its response.
    ///
    /// Waits for an in-flight slot first; the whole call is bounded by
    /// `request.timeout.ms`, after which the connection is closed (see the module
    /// docs). Cancel-safe: dropping the future leaves the connection usable.
    pub async fn send<R: Request>(
        &self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, ClientError> {
        let api_key = ApiKey::try_from(R::KEY)
            .map_err(|_| ClientError::Encode(format!("unknown API key {}", R::KEY)))?;
        let timeout = self.shared.request_timeout;
        let deadline = Instant::now() + timeout;
        let permit =
            match tokio::time::timeout_at(deadline, self.shared.in_flight.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(self.closed_error()),
                Err(_) => {
                    self.shared.fail(ClientError::ConnectionClosed {
                        reason: format!(
                            "a {api_key:?} request found no in-flight slot within {timeout:?}"
                        ),
                    });
                    return Err(ClientError::Timeout {
                        operation: "request",
                        after: timeout,
                    });
                }
            };
        let response = self.shared.enqueue(api_key, version, request, permit)?;
        let frame = match tokio::time::timeout_at(deadline, response).await {
            Ok(Ok(Ok(frame))) => frame,
            Ok(Ok(Err(e))) => return Err(e),
            // The reply sender was dropped without an answer: the connection broke.
            Ok(Err(_)) => return Err(self.closed_error()),
            Err(_) => {
                self.shared.fail(ClientError::ConnectionClosed {
                    reason: format!("a {api_key:?} v{version} request timed out after {timeout:?}"),
                });
                return Err(ClientError::Timeout {
                    operation: "request",
                    after: timeout,
                });
            }
        };
        match decode_response::<R::Response>(api_key, version, frame) {
            Ok((_, response)) => Ok(response),
            Err(e) => {
                let reason = format!("undecodable {api_key:?} v{version} response: {e}");
                self.shared.fail(ClientError::ConnectionClosed {
                    reason: reason.clone(),
                });
                Err(ClientError::Protocol(reason))
            }
        }
    }

    /// The broker's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// True once the connection is broken; it will never carry another request.
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().broken.is_some()
    }

    /// When the connection broke, if it has (the reconnect backoff counts from here).
    pub fn closed_at(&self) -> Option<Instant> {
        self.shared.state.lock().broken.as_ref().map(|(_, at)| *at)
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.state.lock().pending.len()
    }

    /// Close the connection now; requests still waiting fail with
    /// [`ClientError::ConnectionClosed`].
    pub fn close(&self) {
        self.shared.fail(ClientError::ConnectionClosed {
            reason: "closed by this client".to_string(),
        });
    }

    fn closed_error(&self) -> ClientError {
        let reason = match &self.shared.state.lock().broken {
            Some((reason, _)) => reason.clone(),
            None => "connection closed".to_string(),
        };
        ClientError::ConnectionClosed { reason }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.fail(ClientError::ConnectionClosed {
            reason: "connection dropped".to_string(),
        });
    }
}

impl Shared {
    /// Give the request its correlation id, encode it, queue it for the writer and
    /// register it as pending, all under the state lock so the pending queue has the
    /// write order.
    fn enqueue<R: Request>(
        &self,
        api_key: ApiKey,
        version: i16,
        request: &R,
        permit: OwnedSemaphorePermit,
    ) -> Result<oneshot::Receiver<Result<Bytes, ClientError>>, ClientError> {
        let (reply, response) = oneshot::channel();
        let mut state = self.state.lock();
        if let Some((reason, _)) = &state.broken {
            return Err(ClientError::ConnectionClosed {
                reason: reason.clone(),
            });
        }
        let correlation_id = state.next_correlation_id;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let frame = encode_request(&header, api_key, request)
            .map_err(|e| ClientError::Encode(format!("{api_key:?} v{version}: {e}")))?;
        let Some(to_writer) = &state.to_writer else {
            return Err(ClientError::ConnectionClosed {
                reason: "writer stopped".to_string(),
            });
        };
        if let Err(e) = to_writer.try_send(frame) {
            // Full cannot happen (see `State::to_writer`); Closed means the writer died.
            drop(state);
            let reason = format!("writer queue unavailable: {e}");
            self.fail(ClientError::ConnectionClosed {
                reason: reason.clone(),
            });
            return Err(ClientError::ConnectionClosed { reason });
        }
        // Kafka's clients wrap at i32::MAX too; ids only need to differ among the
        // (few) requests in flight.
        state.next_correlation_id = correlation_id.checked_add(1).unwrap_or(0);
        state.pending.push_back(Pending {
            correlation_id,
            reply,
            _permit: permit,
        });
        Ok(response)
    }

    /// Hand a response frame to the oldest pending request, if it is the one answered.
    fn complete(&self, frame: Bytes) -> Result<(), ClientError> {
        if frame.len() < 4 {
            return Err(ClientError::Protocol(format!(
                "response frame of {} bytes has no correlation id",
                frame.len()
            )));
        }
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let pending = {
            let mut state = self.state.lock();
            match state.pending.front() {
                Some(p) if p.correlation_id == correlation_id => state.pending.pop_front(),
                Some(p) => {
                    return Err(ClientError::Protocol(format!(
                        "response with correlation id {correlation_id} while expecting {}",
                        p.correlation_id
                    )))
                }
                None => {
                    return Err(ClientError::Protocol(format!(
                        "response with correlation id {correlation_id} but no request in flight"
                    )))
                }
            }
        };
        if let Some(pending) = pending {
            // The caller may have given up; the response is then simply dropped.
            let _ = pending.reply.send(Ok(frame));
        }
        Ok(())
    }

    /// Break the connection (once): stop both tasks, refuse new requests, and fail the
    /// pending ones — the oldest with `cause` (it is the one the failure was about when
    /// the reader fails on a response), the rest as closed.
    fn fail(&self, cause: ClientError) {
        let reason = cause.to_string();
        let (pending, tasks) = {
            let mut state = self.state.lock();
            if state.broken.is_some() {
                return;
            }
            state.broken = Some((reason.clone(), Instant::now()));
            state.to_writer = None;
            (
                std::mem::take(&mut state.pending),
                std::mem::take(&mut state.tasks),
            )
        };
        self.in_flight.close();
        tracing::info!("Disconnected from {}: {reason}", self.peer);
        let mut cause = Some(cause);
        for p in pending {
            let error = cause
                .take()
                .unwrap_or_else(|| ClientError::ConnectionClosed {
                    reason: reason.clone(),
                });
            let _ = p.reply.send(Err(error));
        }
        for task in tasks {
            task.abort();
        }
    }
}

/// Read response frames until the connection breaks.
async fn read_responses(shared: Arc<Shared>, read: ReadSide) {
    let mut reader = BufReader::with_capacity(SOCKET_BUFFER_BYTES, read);
    let error = loop {
        match read_frame(&mut reader, shared.max_response_bytes).await {
            Ok(frame) => {
                if let Err(e) = shared.complete(frame) {
                    break e;
                }
            }
            Err(e) => break e,
        }
    };
    shared.fail(error);
}

/// One size-prefixed frame, refusing sizes above `limit` before allocating anything.
async fn read_frame(reader: &mut BufReader<ReadSide>, limit: usize) -> Result<Bytes, ClientError> {
    let mut prefix = [0u8; SIZE_PREFIX_LEN];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ClientError::ConnectionClosed {
                reason: "closed by the peer".to_string(),
            })
        }
        Err(e) => return Err(ClientError::Io(e)),
    }
    let size = check_frame_size(i32::from_be_bytes(prefix), limit)
        .map_err(|e| ClientError::Protocol(format!("response {e}")))?;
    let mut frame = Vec::with_capacity(size.min(INITIAL_FRAME_BUFFER_BYTES));
    let n = reader.take(size as u64).read_to_end(&mut frame).await?;
    if n < size {
        return Err(ClientError::ConnectionClosed {
            reason: format!("closed by the peer mid-response ({n} of {size} bytes received)"),
        });
    }
    Ok(Bytes::from(frame))
}

/// Write queued frames, coalescing whatever is queued into one flush.
async fn write_requests(shared: Arc<Shared>, write: WriteSide, mut frames: mpsc::Receiver<Bytes>) {
    let mut writer = BufWriter::with_capacity(SOCKET_BUFFER_BYTES, write);
    let result: std::io::Result<()> = async {
        while let Some(frame) = frames.recv().await {
            writer.write_all(&frame).await?;
            while let Ok(frame) = frames.try_recv() {
                writer.write_all(&frame).await?;
            }
            writer.flush().await?;
        }
        Ok(())
    }
    .await;
    match result {
        // All senders gone: the connection was failed or dropped, which says why.
        Ok(()) => {}
        Err(e) => shared.fail(ClientError::Io(e)),
    }
}
