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
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::broker::Broker;
use crate::handlers::{dispatch, Frame, HandlerError, Reply};

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
                connections.spawn(async move {
                    handle_connection(broker.clone(), stream, peer).await;
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

async fn handle_connection(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT_PER_CONNECTION);
    let budget = Arc::new(ReplyBudget::default());
    let mut write_task = AbortOnDrop(tokio::spawn(write_replies(
        broker.clone(),
        writer,
        rx,
        peer,
        budget.clone(),
    )));
    let limit = broker.config.socket_request_max_bytes;
    loop {
        budget.wait_for_room().await;
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
        let request = match decode_request(Bytes::from(frame)) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("Closing connection from {peer}: {e}");
                let _ = tx.send(Pending::Close).await;
                break;
            }
        };
        let api_key = request.api_key;
        let mut outcome = dispatch_guarded(&broker, request, peer);
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
    }
    drop(tx);
    let _ = (&mut write_task.0).await;
}

/// Run the handler, turning a panic into a closed connection instead of a dead process
/// (the handler's side effects are each atomic under their own locks).
fn dispatch_guarded(
    broker: &Arc<Broker>,
    request: ottla_protocol::frame::Request,
    peer: SocketAddr,
) -> Result<Reply, HandlerError> {
    let api_key = request.api_key;
    let version = request.version();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch(broker, request, peer)
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

async fn write_replies(
    broker: Arc<Broker>,
    writer: tokio::net::tcp::OwnedWriteHalf,
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

type ConnectionWriter = BufWriter<tokio::net::tcp::OwnedWriteHalf>;

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
async fn write_frame(
    writer: &mut ConnectionWriter,
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

async fn write_file_slice(
    writer: &mut ConnectionWriter,
    slice: &FileSlice,
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    if slice.len() < SENDFILE_MIN_BYTES {
        scratch.clear();
        slice.read_into(scratch)?;
        return writer.write_all(scratch).await;
    }
    writer.flush().await?;
    send_file(writer.get_ref().as_ref(), slice).await
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
