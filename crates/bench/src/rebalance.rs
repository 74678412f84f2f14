//! `rebalance` (issue 14): how long a consumer group takes to be stable again after one
//! member leaves, with the classic protocol or with KIP-848's consumer protocol.
//!
//! Each repetition uses a fresh group id. `--members` librdkafka consumers, one thread
//! each, subscribe to `--topic` (created with `--partitions` partitions when missing)
//! and poll every 100 ms, which serves their rebalance callbacks. Each member follows
//! what it owns from its own callbacks (what was assigned and revoked, see the
//! `rebalance` callback below). The group is *stable* when the members
//! still in it together own every partition exactly once, each owns at least one (when
//! there are at least as many partitions as members), and none of them has had a
//! rebalance callback for `--settle-s`. Once the group is stable and a random time below
//! `--jitter-s` has passed (the members heartbeat in step after forming, so the leave
//! must fall at a random point of their heartbeat cycle), one member is closed (a clean
//! leave: librdkafka revokes its partitions and sends LeaveGroup, or a
//! heartbeat with member epoch -1 under KIP-848), and the figure is the time from the
//! close call to the last assignment change of the remaining members, measured once
//! the group is stable again (the settle window itself is not counted). The same is
//! reported for the forming of the group (subscribe to stable), and how many
//! partitions changed owner (the leaver's, and any moved between the others).
//!
//! Client settings are librdkafka's defaults (session.timeout.ms 45000,
//! heartbeat.interval.ms 3000 for the classic protocol; under KIP-848 the broker's
//! `group.consumer.heartbeat.interval.ms` rules), plus `enable.auto.commit=false`
//! (nothing is consumed, so a close is a leave and nothing else). The classic protocol
//! uses `partition.assignment.strategy=cooperative-sticky` unless `--classic-assignor`
//! says otherwise: incremental and sticky like KIP-848, so the comparison is between
//! protocols, not between eager and incremental rebalancing. The consumer protocol uses
//! the broker's default assignor unless `--remote-assignor` names one. The broker's
//! group settings are read back with DescribeConfigs and printed with the figures.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::TopicPartitionList;
use serde_json::{json, Map, Value};

use crate::common::{admin_client, client_config, round, BenchContext};
use crate::report::median;
use crate::topic::{self, CreateTopicArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The classic protocol (JoinGroup/SyncGroup/Heartbeat), client-side assignor.
    Classic,
    /// KIP-848 (`group.protocol=consumer`): ConsumerGroupHeartbeat, broker-side assignor.
    Consumer,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Classic => "classic",
            Protocol::Consumer => "consumer",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct RebalanceArgs {
    /// host:port of the broker, or a comma-separated list
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long, value_enum)]
    pub protocol: Protocol,
    /// Members of the group before one leaves.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Partitions of the topic (created with this many when missing).
    #[arg(long, default_value_t = 100)]
    pub partitions: i32,
    #[arg(long, default_value = "bench-rebalance")]
    pub topic: String,
    /// Repetitions, each with a fresh group.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// The group counts as stable once no member had a rebalance callback for this long
    /// (and the partitions are covered exactly once). Longer than the heartbeat
    /// interval, so that every member has heard from the coordinator since the last
    /// change.
    #[arg(long, default_value_t = 8.0)]
    pub settle_s: f64,
    /// Once the group is stable, wait a random time below this before closing a member,
    /// so that the leave falls at a random point of the members' heartbeat cycles (the
    /// members' heartbeats are in step after the group forms, so a fixed wait would
    /// measure one fixed phase). 15 s is a whole number of both default periods
    /// (librdkafka's classic heartbeat.interval.ms 3000, the broker's
    /// group.consumer.heartbeat.interval.ms 5000).
    #[arg(long, default_value_t = 15.0)]
    pub jitter_s: f64,
    /// Give up when the group is not stable this long after the members subscribed, or
    /// after the close.
    #[arg(long, default_value_t = 120.0)]
    pub timeout_s: f64,
    /// Classic protocol: partition.assignment.strategy.
    #[arg(long, default_value = "cooperative-sticky")]
    pub classic_assignor: String,
    /// Consumer protocol: group.remote.assignor (default: the broker's first assignor).
    #[arg(long)]
    pub remote_assignor: Option<String>,
    /// Extra librdkafka consumer settings for every member (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// What one member last saw, as its rebalance callbacks reported it.
#[derive(Default)]
struct MemberState {
    /// False once the member is being closed: it no longer counts.
    active: bool,
    owned: BTreeSet<i32>,
    callbacks: u64,
    last_callback: Option<Instant>,
    last_change: Option<Instant>,
    close_started: Option<Instant>,
    close_done: Option<Instant>,
}

#[derive(Default)]
struct GroupState {
    members: Vec<MemberState>,
    errors: u64,
    first_error: Option<String>,
}

impl GroupState {
    fn note_error(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }
}

type Shared = Arc<Mutex<GroupState>>;

fn lock(shared: &Shared) -> MutexGuard<'_, GroupState> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A member's client context: librdkafka's log lines go through a `BenchContext`, the
/// rebalance callbacks into the shared state.
struct MemberContext {
    log: BenchContext,
    shared: Shared,
    index: usize,
    topic: String,
    /// Incremental (cooperative-sticky, and every KIP-848 member) or eager assignment.
    cooperative: bool,
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        lock(&self.shared).note_error(format!("member {}: {error}: {reason}", self.index));
        self.log.error(error, reason);
    }
}

/// The rebalance callback, as the rdkafka crate's default one does it (assign or
/// incrementally assign what is handed out, unassign or incrementally unassign what
/// is revoked) but without asking librdkafka anything from inside the callback: the
/// crate's default asks `rd_kafka_rebalance_protocol()`, and `assignment()` would be
/// another request to librdkafka's group thread, which need not answer once the
/// consumer is closing (with both in the callback, one close in 27 repetitions never
/// returned; the cause was not pinned down, and these were the likely suspects). The
/// kind of assignment is known from the configuration, and what the member owns
/// follows from the callbacks themselves: an incremental assign adds its partitions,
/// an incremental revoke removes them; an eager assign replaces the assignment, an
/// eager revoke empties it.
impl ConsumerContext for MemberContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let now = Instant::now();
        let partitions: BTreeSet<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let (assign, result) = match (err, self.cooperative) {
            (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, true) => {
                (Some(true), consumer.incremental_assign(tpl))
            }
            (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, false) => {
                (Some(true), consumer.assign(tpl))
            }
            (RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS, true) => {
                (Some(false), consumer.incremental_unassign(tpl))
            }
            (RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS, false) => {
                (Some(false), consumer.unassign())
            }
            // An error instead of an assignment: give up what was owned, as the
            // crate's default does.
            (_, true) => (None, consumer.incremental_unassign(tpl)),
            (_, false) => (None, consumer.unassign()),
        };
        let mut state = lock(&self.shared);
        // A member being closed no longer counts, nor do its errors.
        if !state.members[self.index].active {
            return;
        }
        if assign.is_none() {
            let code: RDKafkaErrorCode = err.into();
            state.note_error(format!("member {}: rebalance error: {code}", self.index));
        }
        if let Err(e) = &result {
            state.note_error(format!("member {}: (un)assign: {e}", self.index));
        }
        let member = &mut state.members[self.index];
        member.callbacks += 1;
        member.last_callback = Some(now);
        if result.is_err() {
            return;
        }
        let owned = match (assign, self.cooperative) {
            (Some(true), true) => member.owned.union(&partitions).copied().collect(),
            (Some(false), true) | (None, true) => {
                member.owned.difference(&partitions).copied().collect()
            }
            (Some(true), false) => partitions,
            (Some(false), false) | (None, false) => BTreeSet::new(),
        };
        if owned != member.owned {
            member.owned = owned;
            member.last_change = Some(now);
        }
    }
}

/// The members' client configuration for `group`.
fn member_config(args: &RebalanceArgs, group: &str) -> Result<ClientConfig> {
    let mut base: Vec<(&str, &str)> = vec![
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("enable.partition.eof", "false"),
    ];
    match args.protocol {
        Protocol::Classic => {
            base.push(("partition.assignment.strategy", &args.classic_assignor));
        }
        Protocol::Consumer => {
            base.push(("group.protocol", "consumer"));
            if let Some(a) = &args.remote_assignor {
                base.push(("group.remote.assignor", a));
            }
        }
    }
    client_config(&args.bootstrap, &base, &args.set)
}

/// One member: subscribe, poll until told to stop, then close (recording when the
/// close started and ended).
fn spawn_member(
    config: ClientConfig,
    cooperative: bool,
    shared: Shared,
    index: usize,
    topic: String,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let context = MemberContext {
            log: BenchContext::new("rebalance", Instant::now(), false),
            shared: shared.clone(),
            index,
            topic: topic.clone(),
            cooperative,
        };
        let consumer: BaseConsumer<MemberContext> = match config.create_with_context(context) {
            Ok(c) => c,
            Err(e) => {
                lock(&shared).note_error(format!("member {index}: creating the consumer: {e}"));
                return;
            }
        };
        if let Err(e) = consumer.subscribe(&[&topic]) {
            lock(&shared).note_error(format!("member {index}: subscribe: {e}"));
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                lock(&shared).note_error(format!("member {index}: poll: {e}"));
            }
        }
        lock(&shared).members[index].close_started = Some(Instant::now());
        // Dropping a BaseConsumer is rd_kafka_consumer_close: revoke, leave, wait.
        drop(consumer);
        lock(&shared).members[index].close_done = Some(Instant::now());
    })
}

/// Why the active members are not a stable, exact cover of the partitions yet; None
/// when they are.
fn unstable(state: &GroupState, partitions: i32, settle: Duration, now: Instant) -> Option<String> {
    let active: Vec<&MemberState> = state.members.iter().filter(|m| m.active).collect();
    let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
    for m in &active {
        for p in &m.owned {
            *owners.entry(*p).or_default() += 1;
        }
    }
    let twice = owners.values().filter(|&&n| n > 1).count();
    let unowned = (0..partitions).filter(|p| !owners.contains_key(p)).count();
    let foreign = owners.keys().filter(|&&p| p < 0 || p >= partitions).count();
    if twice > 0 || unowned > 0 || foreign > 0 {
        return Some(format!(
            "{unowned} partition(s) unowned, {twice} owned twice{}",
            if foreign > 0 {
                ", unknown partitions owned"
            } else {
                ""
            }
        ));
    }
    let empty = active.iter().filter(|m| m.owned.is_empty()).count();
    if partitions as usize >= active.len() && empty > 0 {
        return Some(format!("{empty} member(s) own nothing"));
    }
    let quiet_since = active.iter().filter_map(|m| m.last_callback).max();
    match quiet_since {
        Some(t) if now.duration_since(t) < settle => Some("settling".into()),
        _ => None,
    }
}

/// Wait until the group is stable; returns the time of the last assignment change of
/// an active member (None if none changed since the members were created).
fn wait_stable(
    shared: &Shared,
    args: &RebalanceArgs,
    since: Instant,
    what: &str,
) -> Result<Option<Instant>> {
    let settle = Duration::from_secs_f64(args.settle_s);
    let deadline = since + Duration::from_secs_f64(args.timeout_s);
    loop {
        let now = Instant::now();
        {
            let state = lock(shared);
            match unstable(&state, args.partitions, settle, now) {
                None => {
                    return Ok(state
                        .members
                        .iter()
                        .filter(|m| m.active)
                        .filter_map(|m| m.last_change)
                        .max())
                }
                Some(why) if now > deadline => {
                    let sizes: Vec<usize> = state
                        .members
                        .iter()
                        .filter(|m| m.active)
                        .map(|m| m.owned.len())
                        .collect();
                    bail!(
                        "{what}: group not stable after {:.0}s: {why} (partitions per member: {sizes:?}; first error: {})",
                        args.timeout_s,
                        state.first_error.as_deref().unwrap_or("none")
                    );
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Owner of each partition among the active members.
fn owners(state: &GroupState) -> BTreeMap<i32, usize> {
    let mut map = BTreeMap::new();
    for (i, m) in state.members.iter().enumerate().filter(|(_, m)| m.active) {
        for p in &m.owned {
            map.insert(*p, i);
        }
    }
    map
}

/// The figures of one repetition.
struct Repetition {
    formation_ms: f64,
    recovery_ms: f64,
    close_ms: f64,
    /// The random wait between stable and the close.
    jitter_ms: f64,
    leaver: usize,
    /// Partitions the leaving member owned (they must move).
    leaver_owned: usize,
    /// Partitions that moved between members that stayed (a sticky assignor moves none).
    moved_between_others: usize,
    /// Fewest and most partitions per remaining member once stable again.
    min_owned: usize,
    max_owned: usize,
    callbacks: u64,
}

/// One repetition with its own group, members and shared state (a member left behind
/// by an earlier repetition cannot touch this one's); its errors are added to `totals`.
fn repetition(args: &RebalanceArgs, rep: usize, totals: &mut GroupState) -> Result<Repetition> {
    let shared: Shared = Arc::new(Mutex::new(GroupState::default()));
    let result = repetition_in(args, rep, &shared);
    let state = lock(&shared);
    totals.errors += state.errors;
    if totals.first_error.is_none() {
        totals.first_error.clone_from(&state.first_error);
    }
    result
}

fn repetition_in(args: &RebalanceArgs, rep: usize, shared: &Shared) -> Result<Repetition> {
    let group = format!(
        "ottla-bench-rebalance-{}-{}",
        args.protocol.name(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let config = member_config(args, &group)?;
    // librdkafka's classic assignors: only cooperative-sticky is incremental.
    let cooperative =
        args.protocol == Protocol::Consumer || args.classic_assignor == "cooperative-sticky";
    {
        let mut state = lock(shared);
        state.members = (0..args.members)
            .map(|_| MemberState {
                active: true,
                ..MemberState::default()
            })
            .collect();
    }
    let stops: Vec<Arc<AtomicBool>> = (0..args.members)
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    let start = Instant::now();
    let threads: Vec<JoinHandle<()>> = (0..args.members)
        .map(|i| {
            spawn_member(
                config.clone(),
                cooperative,
                shared.clone(),
                i,
                args.topic.clone(),
                stops[i].clone(),
            )
        })
        .collect();
    let result = measure(args, rep, shared, &stops, start);
    // Close every member at once (not counted any more), and wait for the closes for a
    // while: a close that does not return is reported and its thread left behind, so
    // that one stuck librdkafka instance cannot hang the run.
    for m in lock(shared).members.iter_mut() {
        m.active = false;
    }
    for s in &stops {
        s.store(true, Ordering::Relaxed);
    }
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while Instant::now() < deadline && !threads.iter().all(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for (i, t) in threads.into_iter().enumerate() {
        if !t.is_finished() {
            lock(shared).note_error(format!(
                "repetition {}: member {i}'s close did not return within {}s; left behind",
                rep + 1,
                CLOSE_TIMEOUT.as_secs()
            ));
            eprintln!(
                "[rebalance] member {i}'s close did not return within {}s; carrying on without it",
                CLOSE_TIMEOUT.as_secs()
            );
        } else if t.join().is_err() {
            lock(shared).note_error("a member thread panicked".into());
        }
    }
    result
}

/// How long the closes at the end of a repetition may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

fn measure(
    args: &RebalanceArgs,
    rep: usize,
    shared: &Shared,
    stops: &[Arc<AtomicBool>],
    start: Instant,
) -> Result<Repetition> {
    let formed = wait_stable(shared, args, start, "forming")?;
    let formation_ms = formed.map_or(0.0, |t| ms(t.duration_since(start)));
    let callbacks_formed: u64 = lock(shared).members.iter().map(|m| m.callbacks).sum();
    let leaver = rep % args.members;
    let fraction = (uuid::Uuid::new_v4().as_u128() >> 64) as f64 / 2f64.powi(64);
    let jitter = Duration::from_secs_f64(args.jitter_s.max(0.0) * fraction);
    std::thread::sleep(jitter);
    let callbacks_now: u64 = lock(shared).members.iter().map(|m| m.callbacks).sum();
    if callbacks_now != callbacks_formed {
        bail!(
            "rebalance callbacks {:.1}s after the group looked stable: raise --settle-s",
            args.settle_s + jitter.as_secs_f64()
        );
    }
    let (before, leaver_owned) = {
        let mut state = lock(shared);
        let before = owners(&state);
        let member = &mut state.members[leaver];
        member.active = false;
        (before, member.owned.len())
    };
    stops[leaver].store(true, Ordering::Relaxed);
    // The member thread notices within one poll (100 ms) and records when it calls close.
    let t0 = loop {
        if let Some(t) = lock(shared).members[leaver].close_started {
            break t;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let last = wait_stable(shared, args, t0, "after the leave")?;
    let state = lock(shared);
    let close_ms = state.members[leaver]
        .close_done
        .map_or(f64::NAN, |t| ms(t.duration_since(t0)));
    let recovery_ms = last.map_or(0.0, |t| ms(t.saturating_duration_since(t0)));
    let after = owners(&state);
    let moved_between_others = after
        .iter()
        .filter(|(p, owner)| before.get(p).is_some_and(|b| b != *owner && *b != leaver))
        .count();
    let sizes: Vec<usize> = state
        .members
        .iter()
        .filter(|m| m.active)
        .map(|m| m.owned.len())
        .collect();
    Ok(Repetition {
        formation_ms,
        recovery_ms,
        close_ms,
        jitter_ms: ms(jitter),
        leaver,
        leaver_owned,
        moved_between_others,
        min_owned: sizes.iter().copied().min().unwrap_or(0),
        max_owned: sizes.iter().copied().max().unwrap_or(0),
        callbacks: state.members.iter().map(|m| m.callbacks).sum(),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The broker's group settings (DescribeConfigs on the first broker), so that the
/// figures carry the settings that dominate them; null when they cannot be read.
fn broker_group_settings(args: &RebalanceArgs) -> Value {
    const NAMES: [&str; 6] = [
        "group.consumer.heartbeat.interval.ms",
        "group.consumer.session.timeout.ms",
        "group.consumer.assignors",
        "group.initial.rebalance.delay.ms",
        "group.min.session.timeout.ms",
        "group.max.session.timeout.ms",
    ];
    let read = || -> Result<Value> {
        let admin = admin_client(&args.bootstrap, &args.set, "rebalance")?;
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .context("metadata")?;
        let id = metadata
            .brokers()
            .first()
            .map(|b| b.id())
            .ok_or_else(|| anyhow!("no broker in Metadata"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let results = runtime
            .block_on(admin.describe_configs([&ResourceSpecifier::Broker(id)], &options))
            .context("DescribeConfigs")?;
        let resource = results
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("DescribeConfigs returned nothing"))?
            .map_err(|code| anyhow!("DescribeConfigs: {code:?}"))?;
        let mut out = Map::new();
        for name in NAMES {
            let value = resource.get(name).and_then(|e| e.value.clone());
            out.insert(name.to_string(), json!(value));
        }
        Ok(Value::Object(out))
    };
    read().unwrap_or_else(|e| {
        eprintln!("[rebalance] could not read the broker's group settings: {e:#}");
        Value::Null
    })
}

fn summary(v: &[f64]) -> Value {
    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
    json!({
        "median_ms": median(&finite).map(|m| round(m, 1)),
        "mean_ms": (!finite.is_empty()).then(|| round(mean, 1)),
        "min_ms": (!finite.is_empty()).then(|| round(min, 1)),
        "max_ms": (!finite.is_empty()).then(|| round(max, 1)),
    })
}

pub fn run(args: RebalanceArgs) -> Result<Value> {
    if args.members < 2 {
        bail!("--members must be at least 2 (one leaves, one stays)");
    }
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    topic::run(CreateTopicArgs {
        bootstrap: args.bootstrap.clone(),
        topic: args.topic.clone(),
        partitions: args.partitions,
        replication_factor: 1,
        timeout_s: 60.0,
    })
    .context("creating the topic")?;
    let broker = broker_group_settings(&args);
    let assignor = match args.protocol {
        Protocol::Classic => args.classic_assignor.clone(),
        Protocol::Consumer => match &args.remote_assignor {
            Some(a) => a.clone(),
            None => {
                let first = broker["group.consumer.assignors"]
                    .as_str()
                    .and_then(|s| s.split(',').next())
                    .map(|s| s.trim().to_string());
                format!(
                    "{} (broker default)",
                    first.as_deref().unwrap_or("the broker's")
                )
            }
        },
    };
    eprintln!(
        "[rebalance] {} protocol, assignor {assignor}: {} members, {} partitions, {} repetition(s), settle window {:.1}s, random wait before the close below {:.1}s; broker: {broker}",
        args.protocol.name(),
        args.members,
        args.partitions,
        args.repeats,
        args.settle_s,
        args.jitter_s
    );
    let mut totals = GroupState::default();
    let mut reps = Vec::new();
    for rep in 0..args.repeats {
        let r = repetition(&args, rep, &mut totals)
            .with_context(|| format!("repetition {}", rep + 1))?;
        eprintln!(
            "[rebalance] {} #{}: formed in {:.0} ms; member {} (owning {}) closed {:.1}s after the last callback, the close call took {:.0} ms; the other {} stable again {:.0} ms after the close call, {} partition(s) moved between them, {}..{} partitions each",
            args.protocol.name(),
            rep + 1,
            r.formation_ms,
            r.leaver,
            r.leaver_owned,
            args.settle_s + r.jitter_ms / 1000.0,
            r.close_ms,
            args.members - 1,
            r.recovery_ms,
            r.moved_between_others,
            r.min_owned,
            r.max_owned
        );
        reps.push(r);
    }
    let times: Vec<f64> = reps.iter().map(|r| round(r.recovery_ms, 1)).collect();
    let formation: Vec<f64> = reps.iter().map(|r| round(r.formation_ms, 1)).collect();
    let close: Vec<f64> = reps.iter().map(|r| round(r.close_ms, 1)).collect();
    let client = match args.protocol {
        Protocol::Classic => json!({
            "group.protocol": "classic",
            "partition.assignment.strategy": args.classic_assignor,
            "session.timeout.ms": "45000 (librdkafka default)",
            "heartbeat.interval.ms": "3000 (librdkafka default)",
            "max.poll.interval.ms": "300000 (librdkafka default)",
            "enable.auto.commit": "false",
            "set": args.set,
        }),
        Protocol::Consumer => json!({
            "group.protocol": "consumer",
            "group.remote.assignor": args.remote_assignor,
            "heartbeat interval": "the broker's group.consumer.heartbeat.interval.ms",
            "enable.auto.commit": "false",
            "set": args.set,
        }),
    };
    let s = summary(&times);
    eprintln!(
        "[rebalance] {}: stable again after a leave in {} ms median ({}–{} ms, mean {} ms) over {} repetition(s)",
        args.protocol.name(),
        s["median_ms"],
        s["min_ms"],
        s["max_ms"],
        s["mean_ms"],
        times.len()
    );
    Ok(json!({
        "mode": "rebalance",
        "protocol": args.protocol.name(),
        "assignor": assignor,
        "topic": args.topic,
        "members": args.members,
        "partitions": args.partitions,
        "repeats": args.repeats,
        "settle_ms": round(args.settle_s * 1000.0, 0),
        "jitter_max_ms": round(args.jitter_s * 1000.0, 0),
        "client": client,
        "broker": broker,
        "times_ms": times,
        "median_ms": s["median_ms"],
        "mean_ms": s["mean_ms"],
        "min_ms": s["min_ms"],
        "max_ms": s["max_ms"],
        "formation_ms": formation,
        "formation_median_ms": summary(&formation)["median_ms"],
        "close_ms": close,
        "jitter_ms": reps.iter().map(|r| round(r.jitter_ms, 0)).collect::<Vec<_>>(),
        "leaver_owned": reps.iter().map(|r| r.leaver_owned).collect::<Vec<_>>(),
        "moved_between_others": reps.iter().map(|r| r.moved_between_others).collect::<Vec<_>>(),
        "owned_min": reps.iter().map(|r| r.min_owned).collect::<Vec<_>>(),
        "owned_max": reps.iter().map(|r| r.max_owned).collect::<Vec<_>>(),
        "callbacks": reps.iter().map(|r| r.callbacks).collect::<Vec<_>>(),
        "errors": totals.errors,
        "first_error": totals.first_error,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(owned: &[i32], last_callback: Option<Instant>) -> MemberState {
        MemberState {
            active: true,
            owned: owned.iter().copied().collect(),
            last_callback,
            ..MemberState::default()
        }
    }

    #[test]
    fn stable_only_with_every_partition_once_and_a_quiet_window() {
        let settle = Duration::from_secs(8);
        let now = Instant::now();
        let long_ago = now.checked_sub(Duration::from_secs(10));
        let state = |members| GroupState {
            members,
            ..GroupState::default()
        };
        // Exact cover, quiet for longer than the window.
        let ok = state(vec![member(&[0, 1], long_ago), member(&[2, 3], long_ago)]);
        assert_eq!(unstable(&ok, 4, settle, now), None);
        // A callback inside the window.
        let settling = state(vec![member(&[0, 1], long_ago), member(&[2, 3], Some(now))]);
        assert_eq!(
            unstable(&settling, 4, settle, now).as_deref(),
            Some("settling")
        );
        // A partition owned twice, one not at all.
        let twice = state(vec![member(&[0, 1, 2], long_ago), member(&[2], long_ago)]);
        assert!(unstable(&twice, 4, settle, now)
            .unwrap()
            .contains("1 partition(s) unowned, 1 owned twice"));
        // A member with nothing while there are enough partitions for all.
        let idle = state(vec![member(&[0, 1, 2, 3], long_ago), member(&[], long_ago)]);
        assert!(unstable(&idle, 4, settle, now)
            .unwrap()
            .contains("own nothing"));
        // A member that left no longer counts: its partitions must be owned by others.
        let mut left = state(vec![member(&[0, 1], long_ago), member(&[2, 3], long_ago)]);
        left.members[1].active = false;
        assert!(unstable(&left, 4, settle, now)
            .unwrap()
            .contains("2 partition(s) unowned"));
        // A partition the topic does not have.
        let foreign = state(vec![
            member(&[0, 1], long_ago),
            member(&[2, 3, 9], long_ago),
        ]);
        assert!(unstable(&foreign, 4, settle, now)
            .unwrap()
            .contains("unknown partitions"));
    }
}
