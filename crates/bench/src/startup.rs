//! `startup`: time from spawning the broker to its first answered Metadata request,
//! probed with raw ApiVersions + Metadata requests over TCP every 2 ms. Also `wait`
//! (block until a broker answers Metadata) and `free-port`, which `scripts/bench.sh`
//! uses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use ottla_protocol::frame::{decode_response, encode_request};
use serde_json::{json, Value};

use crate::common::round;

#[derive(clap::Args, Debug)]
pub struct StartupArgs {
    /// The broker binary (target/release/ottla).
    #[arg(long)]
    pub bin: PathBuf,
    /// Extra `--override KEY=VALUE` for the broker (repeatable).
    #[arg(long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout_s: f64,
    /// Start on this existing data dir (the scale scenario) instead of a fresh one.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long, default_value_t = 30.0)]
    pub timeout_s: f64,
    /// Wait until Metadata names at least this many (unfenced) brokers.
    #[arg(long, default_value_t = 1)]
    pub brokers: usize,
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

pub(crate) fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))
}

pub(crate) fn read_frame(stream: &mut TcpStream) -> Result<Bytes> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix)?;
    let size = i32::from_be_bytes(prefix);
    if !(0..=64 * 1024 * 1024).contains(&size) {
        bail!("response frame size {size}");
    }
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body)?;
    Ok(Bytes::from(body))
}

pub(crate) fn header(key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("ottla-bench")))
}

/// One ApiVersions v0 and one Metadata v1 (no topics) round trip, which must name at
/// least `min_brokers` brokers.
pub fn probe(addr: SocketAddr, timeout: Duration, min_brokers: usize) -> Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let frame = encode_request(
        &header(ApiKey::ApiVersions, 0, 1),
        ApiKey::ApiVersions,
        &ApiVersionsRequest::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    stream.write_all(&frame)?;
    let (_, versions): (i32, ApiVersionsResponse) =
        decode_response(ApiKey::ApiVersions, 0, read_frame(&mut stream)?)
            .map_err(|e| anyhow::anyhow!("ApiVersions response: {e}"))?;
    if versions.error_code != 0 {
        bail!("ApiVersions error {}", versions.error_code);
    }
    let frame = encode_request(
        &header(ApiKey::Metadata, 1, 2),
        ApiKey::Metadata,
        &MetadataRequest::default().with_topics(Some(vec![])),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    stream.write_all(&frame)?;
    let (correlation_id, metadata): (i32, MetadataResponse) =
        decode_response(ApiKey::Metadata, 1, read_frame(&mut stream)?)
            .map_err(|e| anyhow::anyhow!("Metadata response: {e}"))?;
    if correlation_id != 2 {
        bail!("Metadata answered with correlation id {correlation_id}");
    }
    if metadata.brokers.is_empty() {
        bail!("Metadata names no broker yet");
    }
    if metadata.brokers.len() < min_brokers {
        bail!(
            "Metadata names {} broker(s), waiting for {min_brokers}",
            metadata.brokers.len()
        );
    }
    Ok(())
}

/// Poll `addr` until it answers Metadata, or `deadline`.
fn wait_for(
    addr: SocketAddr,
    deadline: Instant,
    min_brokers: usize,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<u32> {
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        alive()?;
        let last_error = match probe(addr, Duration::from_millis(500), min_brokers) {
            Ok(()) => return Ok(attempts),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            bail!("no Metadata answer from {addr} after {attempts} attempts: {last_error:#}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn wait(args: WaitArgs) -> Result<Value> {
    let addr = resolve(&args.bootstrap)?;
    let start = Instant::now();
    let attempts = wait_for(
        addr,
        start + Duration::from_secs_f64(args.timeout_s),
        args.brokers,
        || Ok(()),
    )?;
    Ok(
        json!({"mode": "wait", "bootstrap": args.bootstrap, "brokers": args.brokers, "ready_ms": round(start.elapsed().as_secs_f64() * 1000.0, 2), "attempts": attempts}),
    )
}

/// SIGTERM (through kill(1): the workspace forbids `unsafe`), then wait up to `grace`.
pub fn terminate(child: &mut Child, grace: Duration) -> Result<Duration> {
    let start = Instant::now();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    while start.elapsed() < grace {
        if child.try_wait()?.is_some() {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!(
        "broker did not exit within {:.0}s of SIGTERM; killed",
        grace.as_secs_f64()
    )
}

fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

pub fn run(args: StartupArgs) -> Result<Value> {
    let dir = tempfile::Builder::new().prefix("ottla-startup").tempdir()?;
    let data = args
        .data_dir
        .clone()
        .unwrap_or_else(|| dir.path().join("data"));
    let log_path = dir.path().join("broker.log");
    let log = std::fs::File::create(&log_path)?;
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut command = Command::new(&args.bin);
    command
        .arg("serve")
        .arg("--override")
        .arg(format!("log.dirs={}", data.display()))
        .arg("--override")
        .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"));
    for o in &args.overrides {
        command.arg("--override").arg(o);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    let start = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("spawning {}", args.bin.display()))?;
    let waited = wait_for(
        addr,
        start + Duration::from_secs_f64(args.timeout_s),
        1,
        || match child.try_wait()? {
            Some(status) => bail!(
                "broker exited ({status}) before answering Metadata:\n{}",
                log_tail(&log_path)
            ),
            None => Ok(()),
        },
    );
    let elapsed = start.elapsed();
    let attempts = match waited {
        Ok(a) => a,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    // Resident memory once serving (a broker answers only after its logs are loaded).
    let rss_kb = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        });
    let shutdown = terminate(&mut child, Duration::from_secs(30));
    let ms = elapsed.as_secs_f64() * 1000.0;
    eprintln!("[startup] first Metadata answer {ms:.1} ms after spawn");
    Ok(json!({
        "mode": "startup",
        "startup_ms": round(ms, 2),
        "rss_mb": rss_kb.map(|kb| round(kb as f64 / 1024.0, 1)),
        "attempts": attempts,
        "shutdown_ms": shutdown.as_ref().ok().map(|d| round(d.as_secs_f64() * 1000.0, 1)),
        "shutdown_error": shutdown.err().map(|e| e.to_string()),
    }))
}
