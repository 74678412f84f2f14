//! Listeners and connections.
//!
//! One task per connection reads size-prefixed frames and dispatches them in arrival
//! order; a second task writes the replies in the same order (clients match responses
//! to requests by order as well as by correlation id). Between them sits a bounded
//! queue: at most [`MAX_IN_FLIGHT_PER_CONNECTION`] replies may be pending, after which
//! the reader stops reading, which is the back-pressure a client sees.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use ottla_log::FileSlice;
use ottla_protocol::frame::{check_frame_size, decode_request, SIZE_PREFIX_LEN};
use ottla_protocol::spliced::FramePart;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::broker::Broker;
use crate::handlers::{dispatch, sasl_authenticate, sasl_handshake, Frame, HandlerError, Reply};
use crate::security::sasl::TokenOutcome;
use crate::security::{ListenerSecurity, Session, ANONYMOUS};

/// Replies queued per connection before the reader pauses (Kafka itself allows one).
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;
/// Buffered response bytes before the writer flushes without waiting for the queue to
/// drain (write coalescing across pipelined responses).
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Reply bytes held in memory that a connection may have waiting to be written before
/// its reader stops reading requests (plus the one reply that crossed it). Fetch
/// records are sent from the segment files and count nothing here, so this bounds the
/// other large replies (Metadata, DescribeConfigs, ...) of a client that never reads.
pub const MAX_QUEUED_REPLY_BYTES_PER_CONNECTION: usize = 64 * 1024 * 1024;
/// The largest frame a connection may send before it has authenticated (Kafka's
/// `sasl.server.max.receive.size` default).
const MAX_UNAUTHENTICATED_FRAME_BYTES: usize = 512 * 1024;
/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Chunks in which file slices are read into memory on TLS connections.
const COPY_CHUNK_BYTES: usize = 256 * 1024;
/// First allocation for an incoming frame; larger frames grow as their bytes arrive.
const INITIAL_FRAME_BUFFER_BYTES: usize = 64 * 1024;
/// File slices at least this long are sent with `sendfile`; shorter ones are read into
/// the write buffer, where they coalesce with the frames around them (a `sendfile`
/// needs the buffer flushed first, one more system call per slice).
const SENDFILE_MIN_BYTES: usize = 16 * 1024;

/// Accept connections until `shutdown` flips, enforcing `max.connections`.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    security: Arc<ListenerSecurity>,
    mut shutdown: watch::Receiver<bool>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let max_connections = broker.config.max_connections;
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("Error accepting a connection: {e}");
                        // Out of file descriptors and similar: back off instead of spinning.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if open.load(Ordering::Relaxed) >= max_connections {
                    tracing::warn!("Rejecting connection from {peer}: max.connections ({max_connections}) reached");
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                open.fetch_add(1, Ordering::Relaxed);
                broker.metrics.connections.fetch_add(1, Ordering::Relaxed);
                let broker = broker.clone();
                let open = open.clone();
                let security = security.clone();
                connections.spawn(async move {
                    handle_connection(broker.clone(), stream, peer, security).await;
                    open.fetch_sub(1, Ordering::Relaxed);
                    broker.metrics.connections.fetch_sub(1, Ordering::Relaxed);
                });
            }
            // Reap finished connections so the set does not grow with churn.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    // Kafka closes every connection at shutdown. Handlers run to completion between
    // await points, so aborting never interrupts an append halfway.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Aborts the writer when the connection task ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Bytes of ready replies queued on one connection, shared by its reader and writer.
#[derive(Default)]
struct ReplyBudget {
    queued: AtomicUsize,
    drained: tokio::sync::Notify,
}

impl ReplyBudget {
    /// Wait until the queue is under the limit.
    async fn wait_for_room(&self) {
        loop {
            let drained = self.drained.notified();
            if self.queued.load(Ordering::Acquire) <= MAX_QUEUED_REPLY_BYTES_PER_CONNECTION {
                return;
            }
            drained.await;
        }
    }
    fn add(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::AcqRel);
    }
    fn release(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
        self.drained.notify_waiters();
    }
}

struct ReleaseAllOnDrop(Arc<ReplyBudget>);

impl Drop for ReleaseAllOnDrop {
    fn drop(&mut self) {
        self.0.queued.store(0, Ordering::Release);
        self.0.drained.notify_waiters();
    }
}

/// Which API a reply answers and when its request was read off the socket.
struct RequestTiming {
    api_key: ApiKey,
    received: Instant,
}

/// A reply in the connection's queue, with what its latency is recorded under.
enum Pending {
    Reply(Reply, RequestTiming),
    /// Close after writing everything before it (bad request).
    Close,
}

/// Secure a new connection as its listener asks (the TLS handshake, the principal of a
/// client certificate), then serve it.
async fn handle_connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    security: Arc<ListenerSecurity>,
) {
    let Some(acceptor) = security.tls.as_ref().map(|t| t.acceptor()) else {
        let session = Session::new(peer, security, ANONYMOUS.to_string());
        let (reader, writer) = stream.into_split();
        serve_connection(broker, reader, writer, session).await;
        return;
    };
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(
                "[SocketServer listenerType=BROKER, listener={}] Failed authentication with /{} (SSL handshake failed: {e})",
                security.name,
                peer.ip()
            );
            return;
        }
        Err(_) => {
            tracing::info!(
                "[SocketServer listenerType=BROKER, listener={}] Failed authentication with /{} (SSL handshake did not finish within {TLS_HANDSHAKE_TIMEOUT:?})",
                security.name,
                peer.ip()
            );
            return;
        }
    };
    let subject = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(crate::security::tls::certificate_subject);
    let principal = match security.tls_principal(subject) {
        Ok(principal) => principal,
        Err(why) => {
            tracing::info!(
                "[SocketServer listenerType=BROKER, listener={}] Failed authentication with /{} ({why})",
                security.name,
                peer.ip()
            );
            return;
        }
    };
    let session = Session::new(peer, security, principal);
    let (reader, writer) = tokio::io::split(tls);
    serve_connection(broker, reader, writer, session).await;
}

/// What to do with a request on a connection that has not finished SASL yet.
enum Admission {
    /// Serve it as any other (ApiVersions; everything once authenticated).
    Serve,
    /// A SASL request: its handler changes the session.
    Sasl,
    /// Anything else before authentication: Kafka's IllegalSaslStateException, which
    /// closes the connection without a reply.
    Refuse,
}

fn admission(session: &Session, api_key: ApiKey) -> Admission {
    match api_key {
        ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => Admission::Sasl,
        _ if session.is_authenticated() => Admission::Serve,
        ApiKey::ApiVersions => Admission::Serve,
        _ => Admission::Refuse,
    }
}

/// A raw SASL token after a v0 SaslHandshake: the reply, a size-prefixed raw token, or
/// None (a failure closes the connection: v0 has no way to carry an error).
fn raw_sasl_token(session: &mut Session, token: &[u8]) -> Option<Frame> {
    let sasl = session.sasl.as_mut()?;
    let reply = match sasl.authenticate(token, Instant::now(), false) {
        TokenOutcome::Complete {
            principal, reply, ..
        } => {
            session.set_principal(principal);
            reply
        }
        TokenOutcome::Continue(reply) => reply,
        TokenOutcome::Failed { reason, .. } => {
            crate::handlers::sasl_authenticate::log_failure(session, &reason);
            return None;
        }
        TokenOutcome::IllegalState => return None,
    };
    let mut frame = Vec::with_capacity(SIZE_PREFIX_LEN + reply.len());
    frame.extend_from_slice(&(reply.len() as i32).to_be_bytes());
    frame.extend_from_slice(&reply);
    Some(Frame::Bytes(Bytes::from(frame)))
}

/// Kafka's `connection.failed.authentication.delay.ms`: a connection whose
/// authentication failed is closed this much later, so that guessing passwords costs
/// the guesser time.
async fn delay_close_after_failed_authentication(broker: &Broker) {
    let delay = broker.config.failed_authentication_delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
}

/// Read requests off `reader` and queue their replies for `writer`, in order.
async fn serve_connection<R, W>(broker: Arc<Broker>, mut reader: R, writer: W, mut session: Session)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: ReplySink,
{
    let peer = session.peer;
    let (tx, rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT_PER_CONNECTION);
    let budget = Arc::new(ReplyBudget::default());
    let mut write_task = AbortOnDrop(tokio::spawn(write_replies(
        broker.clone(),
        writer,
        rx,
        peer,
        budget.clone(),
    )));
    loop {
        budget.wait_for_room().await;
        // Before authentication a frame may be no larger than Kafka's
        // `sasl.server.max.receive.size` default: an anonymous peer costs little.
        let limit = if session.is_authenticated() {
            broker.config.socket_request_max_bytes
        } else {
            MAX_UNAUTHENTICATED_FRAME_BYTES.min(broker.config.socket_request_max_bytes)
        };
        let mut size_prefix = [0u8; SIZE_PREFIX_LEN];
        match reader.read_exact(&mut size_prefix).await {
            Ok(_) => {}
            Err(_) => break, // closed by the client, possibly mid-prefix: nothing to answer
        }
        let size = match check_frame_size(i32::from_be_bytes(size_prefix), limit) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("Closing connection from {peer}: {e}");
                break;
            }
        };
        // Grow with the bytes that actually arrive: a client that announces a large
        // frame and sends little costs what it sent, not what it announced.
        let mut frame = Vec::with_capacity(size.min(INITIAL_FRAME_BUFFER_BYTES));
        match (&mut reader)
            .take(size as u64)
            .read_to_end(&mut frame)
            .await
        {
            Ok(n) if n == size => {}
            Ok(n) => {
                tracing::info!(
                    "Connection from {peer} closed mid-request ({n} of {size} bytes received)"
                );
                break;
            }
            Err(e) => {
                tracing::info!("Connection from {peer} failed mid-request: {e}");
                break;
            }
        }
        let received = Instant::now();
        if session.sasl.as_ref().is_some_and(|s| s.expects_raw_token()) {
            broker.metrics.count_request(ApiKey::SaslAuthenticate);
            let Some(reply) = raw_sasl_token(&mut session, &frame) else {
                delay_close_after_failed_authentication(&broker).await;
                break;
            };
            let timing = RequestTiming {
                api_key: ApiKey::SaslAuthenticate,
                received,
            };
            if tx
                .send(Pending::Reply(Reply::Now(reply), timing))
                .await
                .is_err()
            {
                break;
            }
            continue;
        }
        let request = match decode_request(Bytes::from(frame)) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("Closing connection from {peer}: {e}");
                let _ = tx.send(Pending::Close).await;
                break;
            }
        };
        let api_key = request.api_key;
        // KIP-368: past its session lifetime a connection may only re-authenticate.
        let reauthenticating = matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        if !reauthenticating
            && session
                .sasl
                .as_ref()
                .is_some_and(|s| s.session_expired(received))
        {
            tracing::info!(
                "Closing connection from {peer}: its authentication session expired (connections.max.reauth.ms) and it did not re-authenticate"
            );
            let _ = tx.send(Pending::Close).await;
            break;
        }
        let mut close_after = false;
        let mut outcome = match admission(&session, api_key) {
            Admission::Serve => dispatch_guarded(&broker, request, &session),
            Admission::Sasl => {
                broker.metrics.count_request(api_key);
                let handled = if api_key == ApiKey::SaslHandshake {
                    sasl_handshake::handle(&mut session, &request)
                } else {
                    sasl_authenticate::handle(&mut session, &request)
                };
                handled.map(|(reply, close)| {
                    close_after = close;
                    reply
                })
            }
            Admission::Refuse => {
                tracing::info!(
                    "Closing connection from {peer}: Unexpected Kafka request of type {api_key:?} during SASL handshake."
                );
                break;
            }
        };
        // Done before the next request is read (see `Reply::Await`).
        while let Ok(Reply::Await(work)) = outcome {
            outcome = work.await;
        }
        let pending = match outcome {
            Ok(reply) => {
                if let Reply::Now(frame) = &reply {
                    budget.add(frame.buffered_len());
                }
                Pending::Reply(reply, RequestTiming { api_key, received })
            }
            Err(e) => {
                match e {
                    HandlerError::AcksZeroError => {
                        tracing::debug!("Closing connection from {peer}: {e}")
                    }
                    _ => tracing::warn!(
                        "Closing connection from {peer} after a bad {api_key:?} request: {e}"
                    ),
                }
                let _ = tx.send(Pending::Close).await;
                break;
            }
        };
        if tx.send(pending).await.is_err() {
            break; // the writer failed: the peer is gone
        }
        if close_after {
            // The error reply goes out now; the close follows after Kafka's delay.
            delay_close_after_failed_authentication(&broker).await;
            let _ = tx.send(Pending::Close).await;
            break;
        }
    }
    drop(tx);
    let _ = (&mut write_task.0).await;
}

/// Run the handler, turning a panic into a closed connection instead of a dead process
/// (the handler's side effects are each atomic under their own locks).
fn dispatch_guarded(
    broker: &Arc<Broker>,
    request: ottla_protocol::frame::Request,
    session: &Session,
) -> Result<Reply, HandlerError> {
    let api_key = request.api_key;
    let version = request.version();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch(broker, request, session)
    })) {
        Ok(r) => r,
        Err(_) => {
            tracing::error!("Handler for {api_key:?} v{version} panicked; closing the connection");
            Err(HandlerError::Malformed {
                api_key,
                version,
                reason: "internal error".into(),
            })
        }
    }
}

async fn write_replies<W: ReplySink>(
    broker: Arc<Broker>,
    writer: W,
    mut rx: mpsc::Receiver<Pending>,
    peer: SocketAddr,
    budget: Arc<ReplyBudget>,
) {
    // However the writer ends, it must not leave the reader waiting for room.
    let _unblock_reader = ReleaseAllOnDrop(budget.clone());
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
    // Reused for the small file slices read into the write buffer.
    let mut scratch = Vec::new();
    while let Some(pending) = rx.recv().await {
        // The frame, and the bytes of it the reply budget counted.
        let (reply, timing) = match pending {
            Pending::Close => break,
            Pending::Reply(reply, timing) => (reply, timing),
        };
        let (frame, budgeted): (Option<Frame>, usize) = match reply {
            Reply::Nothing => (None, 0),
            Reply::Await(_) => {
                // The reader awaits these before queueing; never reached.
                tracing::error!("Closing connection from {peer}: a reply was queued unfinished");
                break;
            }
            Reply::Now(frame) => {
                let n = frame.buffered_len();
                (Some(frame), n)
            }
            Reply::Later(fut) => {
                // Flush what is buffered before waiting, so earlier replies are not
                // held back by a long poll.
                if writer.flush().await.is_err() {
                    return;
                }
                match fut.await {
                    Ok(b) => (Some(b), 0),
                    Err(e) => {
                        tracing::warn!("Closing connection from {peer}: {e}");
                        break;
                    }
                }
            }
        };
        if let Some(frame) = frame {
            let written = write_frame(&mut writer, frame, &mut scratch).await;
            budget.release(budgeted);
            if let Err(e) = written {
                log_write_error(peer, &e);
                return;
            }
        }
        broker
            .metrics
            .record_latency(timing.api_key, timing.received.elapsed());
        // Coalesce: only flush when nothing else is ready to go out.
        if rx.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

/// Where a connection's replies go: the socket itself (plaintext, where file slices
/// can be sent with `sendfile`), or a TLS stream (everything is encrypted on the way).
pub trait ReplySink: AsyncWrite + Unpin + Send + 'static {
    /// The socket, when bytes written to it reach the peer unchanged.
    fn plain_socket(&self) -> Option<&TcpStream>;
}

impl ReplySink for tokio::net::tcp::OwnedWriteHalf {
    fn plain_socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl ReplySink for tokio::io::WriteHalf<tokio_rustls::server::TlsStream<TcpStream>> {
    fn plain_socket(&self) -> Option<&TcpStream> {
        None
    }
}

fn log_write_error(peer: SocketAddr, e: &std::io::Error) {
    // A peer that went away is routine; anything else (a segment file that shrank under
    // a fetch response) is worth a line.
    match e.kind() {
        std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted => {}
        _ => tracing::warn!("Closing connection from {peer}: {e}"),
    }
}

/// Write one frame: bytes through the buffer, file slices from the file (`scratch`
/// holds a small slice on its way into the buffer).
async fn write_frame<W: ReplySink>(
    writer: &mut BufWriter<W>,
    frame: Frame,
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    match frame {
        Frame::Bytes(bytes) => writer.write_all(&bytes).await,
        Frame::Spliced(frame) => {
            for part in frame.parts {
                match part {
                    FramePart::Bytes(bytes) => writer.write_all(&bytes).await?,
                    FramePart::Records(records) => {
                        for slice in records.slices() {
                            write_file_slice(writer, slice, scratch).await?;
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

async fn write_file_slice<W: ReplySink>(
    writer: &mut BufWriter<W>,
    slice: &FileSlice,
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    if slice.len() < SENDFILE_MIN_BYTES {
        scratch.clear();
        slice.read_into(scratch)?;
        return writer.write_all(scratch).await;
    }
    if writer.get_ref().plain_socket().is_none() {
        return copy_file_slice(writer, slice, scratch).await;
    }
    writer.flush().await?;
    let socket = writer
        .get_ref()
        .plain_socket()
        .expect("checked above: the sink is a plaintext socket");
    send_file(socket, slice).await
}

/// A slice through user space, in bounded chunks (TLS encrypts what it sends).
async fn copy_file_slice<W: ReplySink>(
    writer: &mut BufWriter<W>,
    slice: &FileSlice,
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut done = 0usize;
    while done < slice.len() {
        let n = COPY_CHUNK_BYTES.min(slice.len() - done);
        scratch.clear();
        scratch.resize(n, 0);
        slice
            .file()
            .read_exact_at(scratch, slice.position() + done as u64)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "segment file shrank under a fetch response ({done} of {} bytes sent)",
                            slice.len()
                        ),
                    )
                } else {
                    e
                }
            })?;
        writer.write_all(scratch).await?;
        done += n;
    }
    Ok(())
}

/// `sendfile` the slice to the socket: the kernel moves the page-cache pages to the
/// socket without a copy through user space (Kafka's `FileRecords.writeTo`).
#[cfg(any(target_os = "linux", target_os = "android"))]
async fn send_file(stream: &TcpStream, slice: &FileSlice) -> std::io::Result<()> {
    use tokio::io::Interest;
    let mut offset = slice.position();
    let end = offset + slice.len() as u64;
    while offset < end {
        stream.writable().await?;
        let count = (end - offset) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, slice.file(), Some(&mut offset), count)
                .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => {
                // The file ends before the slice does: it was truncated after the read.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "segment file shrank under a fetch response ({} of {} bytes sent)",
                        offset - slice.position(),
                        slice.len()
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Without `sendfile`: copy through a bounded buffer.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
async fn send_file(stream: &TcpStream, slice: &FileSlice) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK: usize = 256 * 1024;
    let mut buf = vec![0u8; CHUNK.min(slice.len())];
    let mut done = 0usize;
    while done < slice.len() {
        let n = buf.len().min(slice.len() - done);
        slice
            .file()
            .read_exact_at(&mut buf[..n], slice.position() + done as u64)?;
        let mut sent = 0;
        while sent < n {
            stream.writable().await?;
            match stream.try_write(&buf[sent..n]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ottla_log::{Log, LogConfig};
    use ottla_protocol::compression::Compression;
    use ottla_protocol::records::{build_record_batch, Record};

    /// A log holding one uncompressed batch with a `value_bytes` value, as a fetch reads
    /// it (one slice), and its segment file's path.
    fn one_batch_slice(value_bytes: usize) -> (tempfile::TempDir, std::path::PathBuf, FileSlice) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        let record = Record {
            offset: 0,
            timestamp: ottla_log::now_ms(),
            key: None,
            value: Some((0..value_bytes).map(|i| (i % 251) as u8).collect()),
            headers: vec![],
        };
        let mut batch = build_record_batch(&[record], Compression::None, -1, -1, -1);
        log.append_as_leader(&mut batch, 0).unwrap();
        let slices = log.slice(0, usize::MAX, 1, true).unwrap();
        let [slice] = slices.slices() else {
            panic!("one batch, one slice")
        };
        let path = dir.path().join("00000000000000000000.log");
        (dir, path, slice.clone())
    }

    /// Write `slice` through a real connection's writer; what the peer received.
    async fn send_through_socket(slice: &FileSlice) -> std::io::Result<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_, write) = client.unwrap().into_split();
        let (mut peer, _) = accepted.unwrap();
        let received = tokio::spawn(async move {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.map(|_| all)
        });
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, write);
        let mut scratch = Vec::new();
        write_file_slice(&mut writer, slice, &mut scratch).await?;
        writer.flush().await?;
        writer.shutdown().await?;
        received.await.unwrap()
    }

    #[tokio::test]
    async fn slices_on_both_sides_of_the_sendfile_threshold_arrive_whole() {
        for value_bytes in [100, SENDFILE_MIN_BYTES * 4] {
            let (_dir, path, slice) = one_batch_slice(value_bytes);
            assert_eq!(
                slice.len() >= SENDFILE_MIN_BYTES,
                value_bytes > SENDFILE_MIN_BYTES,
                "the case exercises the path it means to"
            );
            let on_disk = std::fs::read(&path).unwrap();
            let sent = send_through_socket(&slice).await.unwrap();
            assert_eq!(sent.len(), slice.len());
            assert_eq!(sent, on_disk[..slice.len()], "{value_bytes}-byte value");
        }
    }

    #[tokio::test]
    async fn a_segment_that_shrank_under_a_slice_fails_the_write() {
        for value_bytes in [100, SENDFILE_MIN_BYTES * 4] {
            let (_dir, path, slice) = one_batch_slice(value_bytes);
            // A truncation (recovery, a follower catching up) after the read.
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(slice.len() as u64 / 2).unwrap();
            let err = send_through_socket(&slice).await.unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::UnexpectedEof,
                "{value_bytes}-byte value: {err}"
            );
        }
    }
}
