//! Broker configuration, read with Kafka's keys.
//!
//! Sources, lowest precedence first: Kafka's defaults ([`definitions`]), the
//! `--config` properties file, `--default KEY=VALUE` flags, the environment
//! (`--config-env-prefix`, [`env`]), `--override KEY=VALUE` flags. Unknown keys are logged
//! once and ignored (operators reuse Kafka's `server.properties`); an invalid value for
//! a known key stops start-up with a message naming the key.

pub mod definitions;
pub mod env;
pub mod properties;

use std::collections::BTreeMap;
use std::path::PathBuf;

use definitions::{broker_config, topic_config, ConfigDef};
use ottla_controller::MetadataImage;
use ottla_log::LogConfig;
use ottla_replica::PartitionConfig;

use crate::security::SecurityProtocol;

/// A `listeners` entry: `NAME://host:port`, and the security protocol
/// `listener.security.protocol.map` gives its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: SecurityProtocol,
}

impl Listener {
    /// `host:port` to bind; an empty host means every interface.
    pub fn bind_address(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        format!("{host}:{}", self.port)
    }

    pub fn parse(s: &str) -> Result<Listener, String> {
        let (name, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("listener '{s}' is not NAME://host:port"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("listener '{s}' has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("listener '{s}' has an invalid port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Listener {
            name: name.to_string(),
            host,
            port,
            security_protocol: SecurityProtocol::Plaintext,
        })
    }
}

/// One `controller.quorum.voters` entry: `id@host:port`, the voter's CONTROLLER
/// listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

impl QuorumVoter {
    pub fn parse(s: &str) -> Result<QuorumVoter, String> {
        let (id, endpoint) = s
            .split_once('@')
            .ok_or_else(|| format!("voter '{s}' is not id@host:port"))?;
        let node_id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| format!("voter '{s}' has an invalid node id"))?;
        let (host, port) = endpoint
            .rsplit_once(':')
            .ok_or_else(|| format!("voter '{s}' has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("voter '{s}' has an invalid port"))?;
        Ok(QuorumVoter {
            node_id,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        })
    }
}

/// The broker-level value behind a topic config ([`BrokerConfig::topic_default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDefault {
    /// The value in the topic config's unit (`log.retention.hours` converted to ms).
    pub value: Option<String>,
    pub source: ConfigSource,
    /// The broker key that supplied it (or the one that would).
    pub key: Option<&'static str>,
    /// That key's own value, as set (DescribeConfigs shows it as the synonym's value).
    pub raw: Option<String>,
}

/// Where a config value came from, with Kafka's DescribeConfigs source ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

/// `process.roles`: what this node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    pub broker: bool,
    pub controller: bool,
}

impl ProcessRoles {
    pub fn parse(text: &str) -> Result<ProcessRoles, String> {
        let mut roles = ProcessRoles {
            broker: false,
            controller: false,
        };
        for role in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "broker" if !roles.broker => roles.broker = true,
                "controller" if !roles.controller => roles.controller = true,
                _ => {
                    return Err(format!(
                        "Invalid value {text} for configuration process.roles: Unknown or repeated process role {role}; the roles are broker and controller"
                    ))
                }
            }
        }
        if !roles.broker && !roles.controller {
            return Err(format!(
                "Invalid value {text} for configuration process.roles: at least one of broker and controller is required"
            ));
        }
        Ok(roles)
    }
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    /// `process.roles`: broker, controller, or both (the embedded single node is both).
    pub roles: ProcessRoles,
    /// The listeners clients connect to (every listener not named in
    /// `controller.listener.names`).
    pub listeners: Vec<Listener>,
    pub advertised_listeners: Vec<Listener>,
    /// The listener this broker registers with (what other brokers connect to).
    pub inter_broker_listener: String,
    /// `controller.quorum.voters`: the Raft voters of the metadata quorum. Empty: the
    /// embedded single-node controller, which needs no quorum and no format step.
    pub quorum_voters: Vec<QuorumVoter>,
    /// This node's CONTROLLER listener (the first listener named in
    /// `controller.listener.names`), where the quorum's RPCs arrive.
    pub controller_listener: Option<Listener>,
    /// The first of `controller.listener.names` and its security protocol: how this
    /// node reaches the controllers (a broker-only node has no such listener itself).
    pub controller_listener_name: String,
    pub controller_protocol: SecurityProtocol,
    pub log_dirs: Vec<PathBuf>,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub delete_topic_enable: bool,
    pub socket_request_max_bytes: usize,
    pub max_connections: usize,
    pub fetch_max_bytes: usize,
    pub log_retention_check_interval_ms: u64,
    /// `log.cleaner.enable`: compact `cleanup.policy=compact` logs.
    pub log_cleaner_enable: bool,
    /// `log.cleaner.threads`.
    pub log_cleaner_threads: usize,
    /// `num.recovery.threads.per.data.dir`: threads per log dir that open (and recover)
    /// logs at start-up and when many partitions arrive at once.
    pub num_recovery_threads_per_data_dir: usize,
    /// `log.cleaner.backoff.ms`: the pause when no log needs cleaning.
    pub log_cleaner_backoff_ms: u64,
    /// `ottla.segment.file.idle.ms` (see [`SEGMENT_FILE_IDLE_MS`]).
    pub segment_file_idle_ms: u64,
    /// `metrics.listener` (see [`METRICS_LISTENER`]).
    pub metrics_listener: Option<MetricsListener>,
    /// `ottla.log.format` (see [`LOG_FORMAT`]).
    pub log_format: LogFormat,
    /// `authorizer.class.name` and its settings; `None`: every request is allowed.
    pub authorizer: Option<AuthorizerConfig>,
    /// `connection.failed.authentication.delay.ms`: how long a connection whose
    /// authentication failed stays open after its error reply (slows password guessing).
    pub failed_authentication_delay_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: the offset maps' memory, all threads together.
    pub log_cleaner_dedupe_buffer_size: usize,
    /// `producer.id.expiration.ms`: idle producer ids are forgotten after this.
    pub producer_id_expiration_ms: i64,
    /// `offsets.topic.num.partitions`
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`
    pub offsets_topic_segment_bytes: i64,
    /// `replica.lag.time.max.ms`: how long a follower may go without catching up
    /// before its leader drops it from the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `broker.heartbeat.interval.ms`: how often a quorum node's broker heartbeats.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: the active controller fences a broker silent this
    /// long.
    pub broker_session_timeout_ms: u64,
    /// `unclean.leader.election.enable`: the default of topics that do not set it.
    pub unclean_leader_election: bool,
    /// `leader.imbalance.check.interval.seconds` if `auto.leader.rebalance.enable`.
    pub leader_rebalance_interval_s: Option<u64>,
    /// How followers fetch (`replica.fetch.*`, `replica.socket.timeout.ms`).
    pub replica_fetcher: ottla_replica::fetcher::FetcherConfig,
    /// Replication throttles (`*.replication.throttled.rate`, `replication.quota.window.*`).
    pub replication_quota: ReplicationQuotaConfig,
    /// `broker.rack`.
    pub broker_rack: Option<String>,
    /// `replica.selector.class` is Kafka's `RackAwareReplicaSelector` (KIP-392): a
    /// leader sends consumers that name a `client.rack` to an in-sync replica in their
    /// rack. Otherwise (Kafka's default `LeaderSelector`) consumers read from leaders.
    pub rack_aware_replica_selector: bool,
    /// `offsets.commit.timeout.ms`: how long a coordinator write waits for its records
    /// to be committed before the request fails with COORDINATOR_NOT_AVAILABLE.
    pub offsets_commit_timeout_ms: i64,
    /// Group coordinator settings (`group.*`, `offsets.retention.minutes`, ...).
    pub group: ottla_group::coordinator::CoordinatorConfig,
    /// `transaction.state.log.num.partitions`
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor`
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.state.log.segment.bytes`
    pub transaction_state_log_segment_bytes: i64,
    /// `transaction.state.log.min.isr`: the topic's `min.insync.replicas`.
    pub transaction_state_log_min_isr: i32,
    /// Transaction coordinator settings (`transaction.max.timeout.ms`,
    /// `transactional.id.expiration.ms`, the cleanup intervals).
    pub txn: ottla_txn::TxnConfig,
    /// `transaction.partition.verification.enable` (KIP-890 part 1): before the first
    /// transactional batch of a transaction is appended to a partition, the partition's
    /// leader asks the transaction coordinator whether the partition is part of it.
    pub transaction_partition_verification: bool,
    /// Every key explicitly set (file + overrides), known keys only: what
    /// DescribeConfigs reports as STATIC_BROKER_CONFIG.
    pub explicit: BTreeMap<String, String>,
}

/// Kafka's `replica.selector.class` implementations (KIP-392).
pub const LEADER_SELECTOR: &str = "org.apache.kafka.common.replica.LeaderSelector";
pub const RACK_AWARE_REPLICA_SELECTOR: &str =
    "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// Replication throttle settings (Kafka's `ReplicationQuotaManagerConfig`).
#[derive(Debug, Clone, Copy)]
pub struct ReplicationQuotaConfig {
    /// `replication.quota.window.num` (11).
    pub window_num: usize,
    /// `replication.quota.window.size.seconds` (1), in ms.
    pub window_size_ms: i64,
    /// `leader.replication.throttled.rate`, bytes/s (unlimited by default).
    pub leader_rate: u64,
    /// `follower.replication.throttled.rate`, bytes/s (unlimited by default).
    pub follower_rate: u64,
}

/// Where Ottla's defaults differ from Kafka's: a bare `ottla serve` is a one-node
/// cluster on loopback that stores data in `./data`, so it needs no config file.
pub const OTTLA_DEFAULTS: &[(&str, &str)] = &[
    ("listeners", "PLAINTEXT://127.0.0.1:9092"),
    ("log.dirs", "./data"),
    ("node.id", "1"),
    ("process.roles", "broker,controller"),
];

/// Ottla's defaults for a single node (no `controller.quorum.voters`): Kafka's own
/// single-node config/server.properties sets these to 1; its built-in default of 3
/// would leave a one-broker cluster without consumer groups. A cluster keeps Kafka's 3.
pub const SINGLE_NODE_DEFAULTS: &[(&str, &str)] = &[
    ("offsets.topic.replication.factor", "1"),
    ("transaction.state.log.replication.factor", "1"),
    ("transaction.state.log.min.isr", "1"),
];

/// Keys Ottla reads that Kafka's broker definitions do not list (none are invented:
/// these are Kafka keys we accept but whose definition is not in our table).
const ACCEPTED_EXTRA_KEYS: &[&str] = &[
    "broker.id",
    // StandardAuthorizer's own settings (not KafkaConfig keys, so not in the definitions).
    SUPER_USERS,
    ALLOW_EVERYONE_IF_NO_ACL_FOUND,
];

/// `authorizer.class.name`'s one supported value: Kafka's KRaft authorizer, whose ACLs
/// the controller stores.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
/// `super.users`: principals every check allows, `;`-separated (`User:admin;User:broker`).
pub const SUPER_USERS: &str = "super.users";
/// `allow.everyone.if.no.acl.found`: what a resource without any ACL allows (default
/// false: nothing, deny by default).
pub const ALLOW_EVERYONE_IF_NO_ACL_FOUND: &str = "allow.everyone.if.no.acl.found";

/// The authorizer's settings, when `authorizer.class.name` turns it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerConfig {
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Option<AuthorizerConfig>, String> {
        let class = get("authorizer.class.name").unwrap_or_default();
        match class.trim() {
            "" => return Ok(None),
            STANDARD_AUTHORIZER => {}
            other => {
                return Err(format!(
                    "Invalid value {other} for configuration authorizer.class.name: Ottla provides {STANDARD_AUTHORIZER} only"
                ))
            }
        }
        let super_users = get(SUPER_USERS)
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(p.to_string()),
                _ => Err(format!(
                    "Invalid value {p} for configuration {SUPER_USERS}: a principal is <type>:<name>, e.g. User:admin"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allow = get(ALLOW_EVERYONE_IF_NO_ACL_FOUND).unwrap_or_default();
        let allow_everyone_if_no_acl_found = match allow.trim().to_ascii_lowercase().as_str() {
            "" | "false" => false,
            "true" => true,
            other => {
                return Err(format!(
                    "Invalid value {other} for configuration {ALLOW_EVERYONE_IF_NO_ACL_FOUND}: Expected value to be either true or false"
                ))
            }
        };
        Ok(Some(AuthorizerConfig {
            super_users,
            allow_everyone_if_no_acl_found,
        }))
    }
}

/// Per-listener security settings: `listener.name.<name in lower case>.<key>`.
const LISTENER_PREFIX: &str = "listener.name.";

/// A `listener.name.<l>.<key>` setting: `<key>` is an `ssl.*` or `sasl.*` broker config
/// (validated as that config) or `<mechanism>.sasl.jaas.config`.
fn validate_listener_key(key: &str, value: &str) -> Result<(), String> {
    let rest = key.strip_prefix(LISTENER_PREFIX).unwrap_or(key);
    let Some((_listener, setting)) = rest.split_once('.') else {
        return Err(format!(
            "Invalid configuration {key}: expected listener.name.<listener>.<config>"
        ));
    };
    if let Some(def) = broker_config(setting) {
        return def.validate(value);
    }
    if setting.ends_with(".sasl.jaas.config") {
        return Ok(());
    }
    // `<mechanism>.connections.max.reauth.ms` (KIP-368, per listener and mechanism).
    if let Some((_mechanism, key)) = setting.split_once('.') {
        if key == "connections.max.reauth.ms" {
            return broker_config(key).map_or(Ok(()), |def| def.validate(value));
        }
    }
    Err(format!(
        "Invalid configuration {key}: {setting} is not a listener security config"
    ))
}

/// Ottla's own settings, for what Kafka has no key for (documented in the README).
/// `ottla.segment.file.idle.ms`: segment files (`.log` and index writers) not used for
/// about this long are closed; they reopen when read or written. Kafka keeps every
/// segment's `.log` open; with many segments that runs into `ulimit -n`.
pub const SEGMENT_FILE_IDLE_MS: &str = "ottla.segment.file.idle.ms";
/// `metrics.listener` (issue 15's name; Kafka serves JMX instead): where the
/// Prometheus endpoint listens, e.g. `http://0.0.0.0:9308/metrics`; off when empty.
pub const METRICS_LISTENER: &str = "metrics.listener";
/// `ottla.log.format`: `text` (the default, one line per event) or `json` (one JSON
/// object per line, for log shippers). Kafka configures this through log4j instead.
pub const LOG_FORMAT: &str = "ottla.log.format";
const OTTLA_KEYS: &[(&str, &str)] = &[
    (SEGMENT_FILE_IDLE_MS, "60000"),
    (METRICS_LISTENER, ""),
    (LOG_FORMAT, "text"),
];

/// How the broker writes its log lines (`ottla.log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(value: &str) -> Result<LogFormat, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "Invalid value {value} for configuration {LOG_FORMAT}: String must be one of: text, json"
            )),
        }
    }
}

/// The parsed `metrics.listener`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsListener {
    /// `host:port` to bind.
    pub address: String,
    /// The metrics path (`/metrics` when the URL has none).
    pub path: String,
}

impl MetricsListener {
    /// `http://host:port[/path]`; `None` for an empty value.
    pub fn parse(value: &str) -> Result<Option<MetricsListener>, String> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            format!(
                "Invalid value {value} for configuration {METRICS_LISTENER}: expected http://host:port[/path]"
            )
        };
        let rest = value.strip_prefix("http://").ok_or_else(invalid)?;
        let (address, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/metrics"),
        };
        let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
        port.parse::<u16>().map_err(|_| invalid())?;
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        Ok(Some(MetricsListener {
            address: format!("{host}:{port}"),
            path: if path == "/" {
                "/metrics".into()
            } else {
                path.into()
            },
        }))
    }
}

impl BrokerConfig {
    /// A security setting of one listener: `listener.name.<listener lower case>.<key>`
    /// if set, else the broker-wide `<key>` (set or defaulted), as Kafka resolves them.
    pub fn listener_value(&self, listener: &str, key: &str) -> Option<String> {
        let prefixed = format!("{LISTENER_PREFIX}{}.{key}", listener.to_ascii_lowercase());
        self.explicit
            .get(&prefixed)
            .cloned()
            .or_else(|| resolve_broker_value(&self.explicit, key))
    }

    /// What this broker registers: its inter-broker address (where the other brokers
    /// reach it), rack, and every advertised listener; an advertised port of 0 becomes
    /// `bound_port(listener)` when known (tests bind ephemeral ports).
    pub fn registration(
        &self,
        bound_port: &dyn Fn(&str) -> Option<u16>,
    ) -> ottla_controller::BrokerInfo {
        let port = |l: &Listener| match l.port {
            0 => bound_port(&l.name).unwrap_or(0),
            p => p,
        };
        let inter_broker = self.inter_broker_advertised();
        ottla_controller::BrokerInfo {
            node_id: self.node_id,
            host: inter_broker.host.clone(),
            port: i32::from(port(inter_broker)),
            rack: self.broker_rack.clone(),
            listeners: self
                .advertised_listeners
                .iter()
                .map(|l| ottla_controller::BrokerEndpoint {
                    name: l.name.clone(),
                    host: l.host.clone(),
                    port: i32::from(port(l)),
                })
                .collect(),
        }
    }

    /// The advertised address of the inter-broker listener: what this broker registers.
    pub fn inter_broker_advertised(&self) -> &Listener {
        self.advertised_listeners
            .iter()
            .find(|l| l.name == self.inter_broker_listener)
            .unwrap_or(&self.advertised_listeners[0])
    }

    /// Build from explicit key/values (file merged with overrides).
    pub fn from_values(values: BTreeMap<String, String>) -> Result<BrokerConfig, String> {
        let mut explicit = BTreeMap::new();
        for (key, value) in values {
            match broker_config(&key) {
                Some(def) => {
                    def.validate(&value)?;
                    explicit.insert(key, value);
                }
                None if key.starts_with(LISTENER_PREFIX) => {
                    validate_listener_key(&key, &value)?;
                    explicit.insert(key, value);
                }
                None if ACCEPTED_EXTRA_KEYS.contains(&key.as_str()) => {
                    explicit.insert(key, value);
                }
                None if key == METRICS_LISTENER => {
                    MetricsListener::parse(&value)?;
                    explicit.insert(key, value);
                }
                None if key == LOG_FORMAT => {
                    LogFormat::parse(&value)?;
                    explicit.insert(key, value);
                }
                None if OTTLA_KEYS.iter().any(|(k, _)| *k == key) => {
                    let valid = value.trim().parse::<i64>().is_ok_and(|v| v > 0);
                    if !valid {
                        return Err(format!(
                            "Invalid value {value} for configuration {key}: must be a positive number of milliseconds"
                        ));
                    }
                    explicit.insert(key, value);
                }
                None => tracing::warn!("Ignoring unknown configuration key {key}"),
            }
        }
        let get = |key: &str| resolve_broker_value(&explicit, key);
        let parse_num = |key: &str| -> Result<i64, String> {
            let v = get(key).ok_or_else(|| {
                format!("Missing required configuration \"{key}\" which has no default value.")
            })?;
            v.trim()
                .parse::<i64>()
                .map_err(|_| format!("Invalid value {v} for configuration {key}: Not a number"))
        };
        let node_id = match (explicit.get("node.id"), explicit.get("broker.id")) {
            (Some(n), _) | (None, Some(n)) => n.trim().parse::<i32>().map_err(|_| {
                format!("Invalid value {n} for configuration node.id: Not a number of type INT")
            })?,
            (None, None) => 1,
        };
        if node_id < 0 {
            return Err(format!(
                "Invalid value {node_id} for configuration node.id: must be non-negative"
            ));
        }
        // Kafka's populateSynonyms: node.id and broker.id always agree.
        if let (Some(a), Some(b)) = (explicit.get("node.id"), explicit.get("broker.id")) {
            if a.trim() != b.trim() {
                return Err(format!(
                    "Invalid value {b} for configuration broker.id: it must equal node.id ({a})"
                ));
            }
        }
        let roles_text = explicit
            .get("process.roles")
            .cloned()
            .unwrap_or_else(|| OTTLA_DEFAULTS[3].1.into());
        let roles = ProcessRoles::parse(&roles_text)?;
        let listeners_text = explicit
            .get("listeners")
            .cloned()
            .unwrap_or_else(|| OTTLA_DEFAULTS[0].1.into());
        let controller_names: Vec<String> = get("controller.listener.names")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let protocol_map =
            parse_protocol_map(&get("listener.security.protocol.map").unwrap_or_default())?;
        let (controller_listeners, listeners): (Vec<Listener>, Vec<Listener>) = parse_listeners(
            "listeners",
            &listeners_text,
            &controller_names,
            &protocol_map,
        )?
        .into_iter()
        .partition(|l| controller_names.contains(&l.name));
        if roles.broker && listeners.is_empty() {
            return Err(format!(
                "Invalid value {listeners_text} for configuration listeners: no listener for clients (all are named in controller.listener.names)"
            ));
        }
        if !roles.broker && !listeners.is_empty() {
            return Err(
                "Invalid configuration: the listeners config must only contain KRaft controller listeners from controller.listener.names when process.roles=controller".into(),
            );
        }
        let controller_listener = controller_listeners.into_iter().next();
        let controller_listener_name = controller_names
            .first()
            .cloned()
            .unwrap_or_else(|| "CONTROLLER".to_string());
        let controller_protocol = protocol_map
            .get(&controller_listener_name)
            .copied()
            .unwrap_or(SecurityProtocol::Plaintext);
        if controller_protocol.uses_sasl() {
            return Err(format!(
                "Invalid value for configuration listener.security.protocol.map: controller listener {controller_listener_name} uses {}; the quorum's listener supports PLAINTEXT and SSL (with ssl.client.auth=required for authentication)",
                controller_protocol.name()
            ));
        }
        let quorum_voters: Vec<QuorumVoter> = get("controller.quorum.voters")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(QuorumVoter::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                format!("Invalid value for configuration controller.quorum.voters: {e}")
            })?;
        let voter_ids: Vec<i32> = quorum_voters.iter().map(|v| v.node_id).collect();
        if quorum_voters.is_empty() {
            // The embedded single node is both; anything else needs a quorum to join.
            if !(roles.broker && roles.controller) {
                return Err(format!(
                    "Invalid configuration: process.roles={roles_text} needs controller.quorum.voters (only a combined broker,controller node runs without a quorum)"
                ));
            }
        } else if roles.controller {
            if !voter_ids.contains(&node_id) {
                return Err(format!(
                    "If process.roles contains the 'controller' role, the node id {node_id} must be included in the set of voters controller.quorum.voters={voter_ids:?}"
                ));
            }
            if controller_listener.is_none() {
                return Err(
                    "controller.listener.names must contain at least one value appearing in the 'listeners' configuration when running the KRaft controller role".into(),
                );
            }
        } else {
            if voter_ids.contains(&node_id) {
                return Err(format!(
                    "If process.roles contains just the 'broker' role, the node id {node_id} must not be included in the set of voters controller.quorum.voters={voter_ids:?}"
                ));
            }
            if controller_listener.is_some() {
                return Err(
                    "The listeners config must not contain a definition for the controller listener when process.roles=broker".into(),
                );
            }
        }
        let advertised_listeners = match explicit.get("advertised.listeners") {
            _ if !roles.broker => Vec::new(),
            Some(text) => parse_listeners("advertised.listeners", text, &[], &protocol_map)?,
            None => listeners
                .iter()
                .map(|l| Listener {
                    // Kafka advertises the canonical host name for a wildcard listener.
                    host: if l.host.is_empty() || l.host == "0.0.0.0" {
                        "localhost".into()
                    } else {
                        l.host.clone()
                    },
                    ..l.clone()
                })
                .collect(),
        };
        // The listener brokers register and reach each other on: Kafka's
        // `inter.broker.listener.name`, else the one named PLAINTEXT
        // (`security.inter.broker.protocol`'s default), else the first.
        let inter_broker_listener = match get("inter.broker.listener.name") {
            Some(name) if !name.trim().is_empty() => {
                let name = name.trim().to_string();
                if roles.broker && !advertised_listeners.iter().any(|l| l.name == name) {
                    return Err(format!(
                        "inter.broker.listener.name must be a listener name defined in advertised.listeners. The valid options based on currently configured listeners are {}",
                        advertised_listeners.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(",")
                    ));
                }
                name
            }
            _ => advertised_listeners
                .iter()
                .find(|l| l.name == "PLAINTEXT")
                .or(advertised_listeners.first())
                .map(|l| l.name.clone())
                .unwrap_or_default(),
        };
        let log_dirs_text = explicit
            .get("log.dirs")
            .or_else(|| explicit.get("log.dir"))
            .cloned()
            .unwrap_or_else(|| OTTLA_DEFAULTS[1].1.into());
        let log_dirs: Vec<PathBuf> = log_dirs_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        if log_dirs.is_empty() {
            return Err(
                "Invalid value for configuration log.dirs: at least one directory is required"
                    .into(),
            );
        }
        let positive = |key: &str| -> Result<i64, String> {
            let v = parse_num(key)?;
            if v <= 0 {
                return Err(format!(
                    "Invalid value {v} for configuration {key}: must be positive"
                ));
            }
            Ok(v)
        };
        let mut config = BrokerConfig {
            node_id,
            roles,
            listeners,
            advertised_listeners,
            inter_broker_listener,
            quorum_voters,
            controller_listener,
            controller_listener_name,
            controller_protocol,
            log_dirs,
            num_partitions: positive("num.partitions")? as i32,
            default_replication_factor: positive("default.replication.factor")? as i16,
            auto_create_topics_enable: get("auto.create.topics.enable")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            delete_topic_enable: get("delete.topic.enable")
                .is_none_or(|v| v.eq_ignore_ascii_case("true")),
            socket_request_max_bytes: positive("socket.request.max.bytes")? as usize,
            max_connections: parse_num("max.connections")?.clamp(1, i64::from(i32::MAX)) as usize,
            fetch_max_bytes: positive("fetch.max.bytes")? as usize,
            log_retention_check_interval_ms: positive("log.retention.check.interval.ms")? as u64,
            log_cleaner_enable: get("log.cleaner.enable")
                .is_none_or(|v| v.eq_ignore_ascii_case("true")),
            log_cleaner_threads: positive("log.cleaner.threads")? as usize,
            num_recovery_threads_per_data_dir: positive("num.recovery.threads.per.data.dir")?
                as usize,
            metrics_listener: MetricsListener::parse(
                explicit.get(METRICS_LISTENER).map_or("", String::as_str),
            )?,
            log_format: LogFormat::parse(explicit.get(LOG_FORMAT).map_or("", String::as_str))?,
            authorizer: AuthorizerConfig::parse(|k| explicit.get(k).cloned())?,
            failed_authentication_delay_ms: parse_num("connection.failed.authentication.delay.ms")?
                .max(0) as u64,
            segment_file_idle_ms: explicit
                .get(SEGMENT_FILE_IDLE_MS)
                .map_or(OTTLA_KEYS[0].1, String::as_str)
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("Invalid value for configuration {SEGMENT_FILE_IDLE_MS}: {e}"))?,
            log_cleaner_backoff_ms: parse_num("log.cleaner.backoff.ms")?.max(1) as u64,
            log_cleaner_dedupe_buffer_size: positive("log.cleaner.dedupe.buffer.size")? as usize,
            producer_id_expiration_ms: positive("producer.id.expiration.ms")?,
            offsets_topic_num_partitions: positive("offsets.topic.num.partitions")? as i32,
            offsets_topic_replication_factor: positive("offsets.topic.replication.factor")? as i16,
            offsets_topic_segment_bytes: positive("offsets.topic.segment.bytes")?,
            offsets_commit_timeout_ms: positive("offsets.commit.timeout.ms")?,
            transaction_state_log_num_partitions: positive("transaction.state.log.num.partitions")?
                as i32,
            transaction_state_log_replication_factor: positive(
                "transaction.state.log.replication.factor",
            )? as i16,
            transaction_state_log_segment_bytes: positive("transaction.state.log.segment.bytes")?,
            transaction_state_log_min_isr: positive("transaction.state.log.min.isr")? as i32,
            transaction_partition_verification: get("transaction.partition.verification.enable")
                .is_none_or(|v| !v.trim().eq_ignore_ascii_case("false")),
            txn: ottla_txn::TxnConfig {
                max_timeout_ms: positive("transaction.max.timeout.ms")?.min(i64::from(i32::MAX))
                    as i32,
                id_expiration_ms: positive("transactional.id.expiration.ms")?,
                abort_timed_out_interval_ms: positive(
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                )?,
                remove_expired_interval_ms: positive(
                    "transaction.remove.expired.transaction.cleanup.interval.ms",
                )?,
            },
            replica_lag_time_max_ms: positive("replica.lag.time.max.ms")?,
            broker_heartbeat_interval_ms: positive("broker.heartbeat.interval.ms")? as u64,
            broker_session_timeout_ms: positive("broker.session.timeout.ms")? as u64,
            unclean_leader_election: get("unclean.leader.election.enable")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            leader_rebalance_interval_s: match get("auto.leader.rebalance.enable") {
                Some(v) if v.trim().eq_ignore_ascii_case("false") => None,
                _ => Some(positive("leader.imbalance.check.interval.seconds")? as u64),
            },
            replica_fetcher: ottla_replica::fetcher::FetcherConfig {
                max_partition_bytes: parse_num("replica.fetch.max.bytes")?
                    .clamp(0, i64::from(i32::MAX)) as i32,
                max_response_bytes: parse_num("replica.fetch.response.max.bytes")?
                    .clamp(0, i64::from(i32::MAX)) as i32,
                max_wait_ms: parse_num("replica.fetch.wait.max.ms")?.clamp(0, i64::from(i32::MAX))
                    as i32,
                min_bytes: parse_num("replica.fetch.min.bytes")?.clamp(0, i64::from(i32::MAX))
                    as i32,
                backoff: std::time::Duration::from_millis(
                    parse_num("replica.fetch.backoff.ms")?.max(0) as u64,
                ),
                client: ottla_client::ClientConfig {
                    request_timeout: std::time::Duration::from_millis(positive(
                        "replica.socket.timeout.ms",
                    )?
                        as u64),
                    ..ottla_client::ClientConfig::for_broker(node_id)
                },
                ..ottla_replica::fetcher::FetcherConfig::new(node_id)
            },
            broker_rack: get("broker.rack")
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty()),
            rack_aware_replica_selector: match get("replica.selector.class").as_deref().map(str::trim) {
                None | Some("") | Some(LEADER_SELECTOR) => false,
                Some(RACK_AWARE_REPLICA_SELECTOR) => true,
                Some(other) => {
                    return Err(format!(
                        "Invalid value {other} for configuration replica.selector.class: Class {other} cannot be found (Ottla provides {LEADER_SELECTOR} and {RACK_AWARE_REPLICA_SELECTOR})"
                    ))
                }
            },
            replication_quota: ReplicationQuotaConfig {
                window_num: positive("replication.quota.window.num")? as usize,
                window_size_ms: positive("replication.quota.window.size.seconds")?
                    .saturating_mul(1000),
                leader_rate: positive("leader.replication.throttled.rate")? as u64,
                follower_rate: positive("follower.replication.throttled.rate")? as u64,
            },
            group: ottla_group::coordinator::CoordinatorConfig {
                initial_rebalance_delay_ms: parse_num("group.initial.rebalance.delay.ms")?.max(0),
                min_session_timeout_ms: positive("group.min.session.timeout.ms")? as i32,
                max_session_timeout_ms: positive("group.max.session.timeout.ms")? as i32,
                max_group_size: positive("group.max.size")? as usize,
                offsets_retention_ms: positive("offsets.retention.minutes")?.saturating_mul(60_000),
                // Stored as an int16-length string in __consumer_offsets (Kafka's own
                // writer cannot go beyond that either).
                max_metadata_bytes: (positive("offset.metadata.max.bytes")? as usize)
                    .min(ottla_group::records::MAX_STRING_LEN),
                offsets_retention_check_interval_ms: positive(
                    "offsets.retention.check.interval.ms",
                )?,
                consumer: consumer_group_config(&get, &positive)?,
            },
            explicit: explicit.clone(),
        };
        config
            .explicit
            .insert("node.id".into(), node_id.to_string());
        config
            .explicit
            .insert("broker.id".into(), node_id.to_string());
        Ok(config)
    }

    /// The broker-level value of `key` (explicit, else Ottla's default, else Kafka's).
    pub fn broker_value(&self, key: &str) -> Option<String> {
        resolve_broker_value(&self.explicit, key)
    }

    /// The broker value behind a topic config when the topic does not override it,
    /// with its source, in Kafka's order: this broker's dynamic config, the
    /// cluster-wide dynamic default (both from the metadata `image`), the static
    /// config, Kafka's default. Within a level, Kafka's multi-key synonyms (retention
    /// in ms, minutes or hours; roll in ms or hours): the most precise key set wins.
    pub fn topic_default(&self, def: &ConfigDef, image: &MetadataImage) -> BrokerDefault {
        let chain = definitions::topic_config_synonyms(def.name);
        let levels = [
            (
                image.broker_configs.get(&Some(self.node_id)),
                ConfigSource::DynamicBroker,
            ),
            (
                image.broker_configs.get(&None),
                ConfigSource::DynamicDefaultBroker,
            ),
            (Some(&self.explicit), ConfigSource::StaticBroker),
        ];
        for (layer, source) in levels {
            let Some(layer) = layer else { continue };
            for synonym in chain {
                if let Some(v) = layer.get(synonym.name) {
                    let value = match v.trim().parse::<i64>() {
                        Ok(n) if synonym.multiplier != 1 && n >= 0 => {
                            n.saturating_mul(synonym.multiplier).to_string()
                        }
                        _ => v.clone(),
                    };
                    return BrokerDefault {
                        value: Some(value),
                        source,
                        key: Some(synonym.name),
                        raw: Some(v.clone()),
                    };
                }
            }
        }
        let key = chain.last().map(|s| s.name).or(def.broker_synonym);
        BrokerDefault {
            value: def.default.map(String::from),
            source: ConfigSource::Default,
            key,
            raw: key.and_then(|k| self.broker_value(k)),
        }
    }

    /// Effective value and source of topic config `key` given the topic's overrides.
    pub fn topic_value(
        &self,
        def: &ConfigDef,
        overrides: &BTreeMap<String, String>,
        image: &MetadataImage,
    ) -> (Option<String>, ConfigSource) {
        if let Some(v) = overrides.get(def.name) {
            return (Some(v.clone()), ConfigSource::DynamicTopic);
        }
        let d = self.topic_default(def, image);
        (d.value, d.source)
    }

    /// The typed configuration a partition of a topic with `overrides` runs with, the
    /// dynamic broker defaults of `image` included.
    pub fn partition_config(
        &self,
        overrides: &BTreeMap<String, String>,
        image: &MetadataImage,
    ) -> PartitionConfig {
        let value = |key: &str| -> String {
            let def = topic_config(key)
                .unwrap_or_else(|| panic!("topic config {key} missing from definitions"));
            self.topic_value(def, overrides, image)
                .0
                .unwrap_or_default()
        };
        let long = |key: &str, fallback: i64| value(key).trim().parse::<i64>().unwrap_or(fallback);
        let defaults = LogConfig::default();
        let cleanup = value("cleanup.policy");
        let policies: Vec<&str> = cleanup.split(',').map(str::trim).collect();
        // Kafka deletes segments by time or size only under the "delete" policy: a
        // compact-only topic (like __consumer_offsets) keeps every key's latest value.
        let deletes = policies.contains(&"delete");
        PartitionConfig {
            log: LogConfig {
                segment_bytes: long("segment.bytes", defaults.segment_bytes as i64).max(1) as u64,
                segment_ms: long("segment.ms", defaults.segment_ms),
                index_interval_bytes: long(
                    "index.interval.bytes",
                    defaults.index_interval_bytes as i64,
                )
                .max(0) as u64,
                retention_bytes: if deletes {
                    long("retention.bytes", defaults.retention_bytes)
                } else {
                    -1
                },
                retention_ms: if deletes {
                    long("retention.ms", defaults.retention_ms)
                } else {
                    -1
                },
                flush_interval_messages: long("flush.messages", defaults.flush_interval_messages),
                flush_interval_ms: long("flush.ms", defaults.flush_interval_ms),
                compact: policies.contains(&"compact"),
                min_cleanable_dirty_ratio: value("min.cleanable.dirty.ratio")
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .unwrap_or(defaults.min_cleanable_dirty_ratio),
                delete_retention_ms: long("delete.retention.ms", defaults.delete_retention_ms),
                min_compaction_lag_ms: long(
                    "min.compaction.lag.ms",
                    defaults.min_compaction_lag_ms,
                ),
                max_compaction_lag_ms: long(
                    "max.compaction.lag.ms",
                    defaults.max_compaction_lag_ms,
                ),
                file_delete_delay_ms: long("file.delete.delay.ms", defaults.file_delete_delay_ms),
            },
            max_message_bytes: long("max.message.bytes", 1_048_588).max(0) as usize,
            min_insync_replicas: long("min.insync.replicas", 1).max(1) as usize,
            log_append_time: value("message.timestamp.type") == "LogAppendTime",
            timestamp_after_max_ms: long("message.timestamp.after.max.ms", i64::MAX),
            compacted: policies.contains(&"compact"),
            delete_policy: deletes,
            replica_lag_time_max_ms: self.replica_lag_time_max_ms,
        }
    }
}

/// `key`'s value: explicit, else Ottla's default, else Kafka's.
fn resolve_broker_value(explicit: &BTreeMap<String, String>, key: &str) -> Option<String> {
    let single_node = !explicit.contains_key("controller.quorum.voters");
    let mut ottla_defaults = OTTLA_DEFAULTS
        .iter()
        .chain(SINGLE_NODE_DEFAULTS.iter().filter(|_| single_node));
    explicit
        .get(key)
        .cloned()
        .or_else(|| {
            ottla_defaults
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        })
        .or_else(|| broker_config(key).and_then(|d| d.default.map(String::from)))
}

/// Parse `NAME://host:port,...`. Only PLAINTEXT listeners and the controller listeners
/// (`controller_names`, plaintext too) are supported so far.
/// `group.consumer.*`: heartbeat interval and session timeout (within their min/max
/// bounds, as Kafka validates them), group size and the server-side assignors (names,
/// or Kafka's class names of the builtin ones).
fn consumer_group_config(
    get: &dyn Fn(&str) -> Option<String>,
    positive: &dyn Fn(&str) -> Result<i64, String>,
) -> Result<ottla_group::consumer::ConsumerGroupConfig, String> {
    let within = |key: &str, min: &str, max: &str| -> Result<i32, String> {
        let (v, lo, hi) = (positive(key)?, positive(min)?, positive(max)?);
        if v < lo || v > hi {
            return Err(format!(
                "Invalid value {v} for configuration {key}: must be between {min} ({lo}) and {max} ({hi})"
            ));
        }
        Ok(v.min(i64::from(i32::MAX)) as i32)
    };
    let mut assignors = Vec::new();
    for name in get("group.consumer.assignors")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let short = match name {
            "org.apache.kafka.coordinator.group.assignor.UniformAssignor" => "uniform",
            "org.apache.kafka.coordinator.group.assignor.RangeAssignor" => "range",
            other => other,
        };
        let assignor = ottla_group::assignor::assignor_by_name(short).ok_or_else(|| {
            format!(
                "Invalid value {name} for configuration group.consumer.assignors: Class {name} cannot be found (the builtin assignors are uniform and range)"
            )
        })?;
        assignors.push(assignor);
    }
    if assignors.is_empty() {
        return Err("Invalid value for configuration group.consumer.assignors: at least one assignor is required".into());
    }
    Ok(ottla_group::consumer::ConsumerGroupConfig {
        heartbeat_interval_ms: within(
            "group.consumer.heartbeat.interval.ms",
            "group.consumer.min.heartbeat.interval.ms",
            "group.consumer.max.heartbeat.interval.ms",
        )?,
        session_timeout_ms: within(
            "group.consumer.session.timeout.ms",
            "group.consumer.min.session.timeout.ms",
            "group.consumer.max.session.timeout.ms",
        )?,
        max_size: positive("group.consumer.max.size")? as usize,
        assignors,
        migration_policy: {
            let v = get("group.consumer.migration.policy").unwrap_or_default();
            ottla_group::consumer::MigrationPolicy::parse(&v).ok_or_else(|| {
                format!("Invalid value {v} for configuration group.consumer.migration.policy: String must be one of (case insensitive): DISABLED, DOWNGRADE, UPGRADE, BIDIRECTIONAL")
            })?
        },
        classic_max_size: positive("group.max.size")? as usize,
    })
}

fn parse_listeners(
    key: &str,
    text: &str,
    controller_names: &[String],
    protocol_map: &BTreeMap<String, SecurityProtocol>,
) -> Result<Vec<Listener>, String> {
    let mut listeners: Vec<Listener> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Listener::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("Invalid value {text} for configuration {key}: {e}"))?;
    if listeners.is_empty() {
        return Err(format!(
            "Invalid value {text} for configuration {key}: no listener"
        ));
    }
    for l in &mut listeners {
        let is_controller = controller_names.contains(&l.name);
        l.security_protocol = match protocol_map.get(&l.name) {
            Some(p) => *p,
            // KRaft assumes PLAINTEXT for a controller listener missing from the map.
            None if is_controller => SecurityProtocol::Plaintext,
            None => {
                return Err(format!(
                    "Invalid value {text} for configuration {key}: No security protocol defined for listener {}",
                    l.name
                ))
            }
        };
        if is_controller && l.security_protocol.uses_sasl() {
            return Err(format!(
                "Invalid value {text} for configuration {key}: controller listener {} uses {}; the quorum's listener supports PLAINTEXT and SSL (with ssl.client.auth=required for authentication)",
                l.name,
                l.security_protocol.name()
            ));
        }
    }
    Ok(listeners)
}

/// `listener.security.protocol.map`: `NAME:PROTOCOL,...`.
fn parse_protocol_map(text: &str) -> Result<BTreeMap<String, SecurityProtocol>, String> {
    let mut map = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let invalid = |why: String| {
            format!("Invalid value {text} for configuration listener.security.protocol.map: {why}")
        };
        let (name, protocol) = entry
            .split_once(':')
            .ok_or_else(|| invalid(format!("{entry} is not NAME:PROTOCOL")))?;
        let protocol = SecurityProtocol::parse(protocol.trim()).map_err(invalid)?;
        if map.insert(name.trim().to_string(), protocol).is_some() {
            return Err(invalid(format!("listener {name} appears more than once")));
        }
    }
    Ok(map)
}

/// Validate a topic config as CreateTopics/AlterConfigs do; Err is Kafka's message for
/// INVALID_CONFIG.
/// Broker configs other than the topic defaults that change at run time.
const DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    "follower.replication.throttled.rate",
    "leader.replication.throttled.rate",
];

/// Whether a broker config changes at run time (IncrementalAlterConfigs on a BROKER
/// resource, per broker or cluster-wide): the replication throttle rates and the
/// topic defaults Kafka reconfigures (`log.retention.ms`, `log.segment.bytes`,
/// `message.max.bytes`, `min.insync.replicas`, ...). Every other broker config is
/// read-only, as Kafka's non-dynamic ones are.
pub fn is_dynamic_broker_config(name: &str) -> bool {
    DYNAMIC_BROKER_CONFIGS.contains(&name)
        || definitions::is_dynamic_log_config(name)
        || reloadable_ssl_config(name).is_some()
}

/// The key and trust store settings a TLS listener reloads when they change through
/// IncrementalAlterConfigs on this broker (Kafka's `SslConfigs.RECONFIGURABLE_CONFIGS`
/// in PEM form; Ottla reads no passwords).
pub const RELOADABLE_SSL_CONFIGS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
];

/// For `ssl.keystore.location` or `listener.name.<l>.ssl.keystore.location` (and the
/// other [`RELOADABLE_SSL_CONFIGS`]), the unprefixed key. As in Kafka, only the
/// listener-prefixed form may be set dynamically, and per broker only (a key store
/// belongs to one broker's listener).
pub fn reloadable_ssl_config(name: &str) -> Option<&'static str> {
    let setting = match name.strip_prefix(LISTENER_PREFIX) {
        Some(rest) => rest.split_once('.')?.1,
        None => name,
    };
    RELOADABLE_SSL_CONFIGS
        .iter()
        .copied()
        .find(|key| *key == setting)
}

pub fn validate_topic_config(key: &str, value: &str) -> Result<(), String> {
    match topic_config(key) {
        None => Err(format!("Unknown topic config name: {key}")),
        Some(def) => def.validate(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<BrokerConfig, String> {
        BrokerConfig::from_values(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_controller_listener_takes_plaintext_or_ssl_not_sasl() {
        let with = |map: &str| {
            config(&[
                ("node.id", "1"),
                (
                    "listeners",
                    "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
                ),
                ("listener.security.protocol.map", map),
                ("controller.listener.names", "CONTROLLER"),
                ("controller.quorum.voters", "1@127.0.0.1:9093"),
            ])
        };
        let ssl = with("PLAINTEXT:PLAINTEXT,CONTROLLER:SSL").unwrap();
        assert_eq!(ssl.controller_protocol, SecurityProtocol::Ssl);
        assert_eq!(ssl.controller_listener_name, "CONTROLLER");
        let plain = with("PLAINTEXT:PLAINTEXT").unwrap();
        assert_eq!(plain.controller_protocol, SecurityProtocol::Plaintext);
        let err = with("PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_SSL").unwrap_err();
        assert!(
            err.contains("controller listener CONTROLLER uses SASL_SSL; the quorum's listener supports PLAINTEXT and SSL"),
            "{err}"
        );
    }

    #[test]
    fn quorum_voters_and_the_controller_listener() {
        let c = config(&[
            ("node.id", "2"),
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
            ),
            ("controller.listener.names", "CONTROLLER"),
            (
                "controller.quorum.voters",
                "1@127.0.0.1:19093,2@127.0.0.1:9093,3@[::1]:29093",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.listeners.len(),
            1,
            "clients do not get the CONTROLLER listener"
        );
        assert_eq!(c.controller_listener.as_ref().unwrap().port, 9093);
        assert_eq!(
            c.quorum_voters[2],
            QuorumVoter {
                node_id: 3,
                host: "::1".into(),
                port: 29093
            }
        );
        // A cluster keeps Kafka's replication factor of 3 for the internal topics; a
        // single node (below) defaults to 1.
        assert_eq!(c.offsets_topic_replication_factor, 3);
        // This node must be a voter, and it needs its CONTROLLER listener.
        let err = config(&[
            ("node.id", "4"),
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
            ),
            ("controller.listener.names", "CONTROLLER"),
            ("controller.quorum.voters", "1@127.0.0.1:19093"),
        ])
        .unwrap_err();
        assert!(
            err.contains("If process.roles contains the 'controller' role, the node id 4 must be included in the set of voters"),
            "{err}"
        );
        // A broker-only node is no voter and has no CONTROLLER listener.
        let broker_only = config(&[
            ("node.id", "4"),
            ("process.roles", "broker"),
            ("listeners", "PLAINTEXT://127.0.0.1:9092"),
            ("controller.listener.names", "CONTROLLER"),
            ("controller.quorum.voters", "1@127.0.0.1:19093"),
        ])
        .unwrap();
        assert_eq!(
            broker_only.roles,
            ProcessRoles {
                broker: true,
                controller: false
            }
        );
        assert!(broker_only.controller_listener.is_none());
        // A controller-only node has no client listener and advertises none.
        let controller_only = config(&[
            ("node.id", "1"),
            ("process.roles", "controller"),
            ("listeners", "CONTROLLER://127.0.0.1:19093"),
            ("controller.listener.names", "CONTROLLER"),
            ("controller.quorum.voters", "1@127.0.0.1:19093"),
        ])
        .unwrap();
        assert!(
            controller_only.listeners.is_empty() && controller_only.advertised_listeners.is_empty()
        );
        let err = config(&[("controller.quorum.voters", "1@127.0.0.1:19093")]).unwrap_err();
        assert!(err.contains("controller.listener.names"), "{err}");
        let err = config(&[("controller.quorum.voters", "x@127.0.0.1:19093")]).unwrap_err();
        assert!(err.contains("controller.quorum.voters"), "{err}");
        // Without voters: the embedded controller, as before.
        assert!(config(&[]).unwrap().quorum_voters.is_empty());
        assert_eq!(config(&[]).unwrap().offsets_topic_replication_factor, 1);
    }

    #[test]
    fn defaults_match_the_issue_and_kafka() {
        let c = config(&[]).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(
            c.listeners,
            vec![Listener {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
                security_protocol: SecurityProtocol::Plaintext,
            }]
        );
        assert_eq!(c.log_dirs, vec![PathBuf::from("./data")]);
        assert_eq!(c.num_partitions, 1);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert!(
            c.auto_create_topics_enable,
            "Kafka creates topics on metadata requests by default"
        );
        assert!(c.delete_topic_enable);
    }

    #[test]
    fn invalid_values_name_the_key_and_unknown_keys_are_ignored() {
        let err = config(&[("num.partitions", "abc")]).unwrap_err();
        assert!(err.contains("num.partitions"), "{err}");
        let err = config(&[("listeners", "PLAINTEXT://nohost")]).unwrap_err();
        assert!(err.contains("listeners"), "{err}");
        assert!(config(&[("some.unknown.key", "1")]).is_ok());
    }

    #[test]
    fn retention_synonyms_resolve_like_kafka() {
        let none = MetadataImage::default();
        let c = config(&[("log.retention.hours", "1")]).unwrap();
        let def = topic_config("retention.ms").unwrap();
        let (v, source) = c.topic_value(def, &BTreeMap::new(), &none);
        assert_eq!(v.as_deref(), Some("3600000"));
        assert_eq!(source, ConfigSource::StaticBroker);
        let c = config(&[("log.retention.hours", "1"), ("log.retention.ms", "5")]).unwrap();
        assert_eq!(
            c.topic_value(def, &BTreeMap::new(), &none).0.as_deref(),
            Some("5")
        );
        let overrides: BTreeMap<_, _> = [("retention.ms".to_string(), "7".to_string())].into();
        assert_eq!(
            c.topic_value(def, &overrides, &none),
            (Some("7".into()), ConfigSource::DynamicTopic)
        );
        let c = config(&[]).unwrap();
        assert_eq!(
            c.topic_value(def, &BTreeMap::new(), &none),
            (Some("604800000".into()), ConfigSource::Default)
        );
    }

    #[test]
    fn metrics_listener_urls() {
        let parse = MetricsListener::parse;
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(
            parse("http://0.0.0.0:9308/metrics").unwrap(),
            Some(MetricsListener {
                address: "0.0.0.0:9308".into(),
                path: "/metrics".into()
            })
        );
        assert_eq!(
            parse("http://:9400").unwrap(),
            Some(MetricsListener {
                address: "0.0.0.0:9400".into(),
                path: "/metrics".into()
            })
        );
        assert_eq!(parse("http://127.0.0.1:1/m").unwrap().unwrap().path, "/m");
        for bad in ["9308", "https://h:1/x", "http://h/x", "http://h:port/x"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("metrics.listener"), "{bad}: {err}");
        }
        assert!(config(&[("metrics.listener", "nope")]).is_err());
    }

    #[test]
    fn listeners_take_their_security_protocol_from_the_map() {
        let c = config(&[
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093,EXTERNAL://127.0.0.1:9094",
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,SSL:SSL,EXTERNAL:SASL_SSL",
            ),
            (
                "listener.name.external.plain.sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required user_a=\"b\";",
            ),
            ("listener.name.ssl.ssl.client.auth", "required"),
        ])
        .unwrap();
        let protocols: Vec<(&str, SecurityProtocol)> = c
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.security_protocol))
            .collect();
        assert_eq!(
            protocols,
            vec![
                ("PLAINTEXT", SecurityProtocol::Plaintext),
                ("SSL", SecurityProtocol::Ssl),
                ("EXTERNAL", SecurityProtocol::SaslSsl),
            ]
        );
        assert_eq!(c.inter_broker_listener, "PLAINTEXT");
        assert_eq!(
            c.listener_value("SSL", "ssl.client.auth").as_deref(),
            Some("required")
        );
        assert_eq!(
            c.listener_value("EXTERNAL", "ssl.client.auth").as_deref(),
            Some("none")
        );
        let err = config(&[("listeners", "OTHER://127.0.0.1:9092")]).unwrap_err();
        assert!(
            err.contains("No security protocol defined for listener OTHER"),
            "{err}"
        );
        let err = config(&[("listener.name.ssl.ssl.client.auth", "sometimes")]).unwrap_err();
        assert!(err.contains("ssl.client.auth"), "{err}");
        let err = config(&[("listener.name.ssl.no.such.thing", "1")]).unwrap_err();
        assert!(err.contains("not a listener security config"), "{err}");
        let err = config(&[
            ("listeners", "SSL://127.0.0.1:9093"),
            ("inter.broker.listener.name", "PLAINTEXT"),
        ])
        .unwrap_err();
        assert!(
            err.contains("inter.broker.listener.name must be a listener name"),
            "{err}"
        );
    }

    #[test]
    fn log_format_is_text_unless_json_is_asked() {
        assert_eq!(config(&[]).unwrap().log_format, LogFormat::Text);
        let json = config(&[("ottla.log.format", "JSON")]).unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
        let err = config(&[("ottla.log.format", "xml")]).unwrap_err();
        assert!(err.contains("ottla.log.format"), "{err}");
    }

    /// Kafka's order for a topic default: this broker's dynamic value, then the
    /// cluster-wide dynamic default, then the static config (any synonym of it), then
    /// Kafka's default; a topic override beats them all.
    #[test]
    fn dynamic_broker_defaults_come_before_static_ones() {
        let c = config(&[("node.id", "1"), ("log.retention.hours", "1")]).unwrap();
        let def = topic_config("retention.ms").unwrap();
        let mut image = MetadataImage::default();
        image
            .broker_configs
            .entry(None)
            .or_default()
            .insert("log.retention.ms".into(), "5000".into());
        let d = c.topic_default(def, &image);
        assert_eq!(
            (d.value.as_deref(), d.source, d.key),
            (
                Some("5000"),
                ConfigSource::DynamicDefaultBroker,
                Some("log.retention.ms")
            )
        );
        image
            .broker_configs
            .entry(Some(1))
            .or_default()
            .insert("log.retention.ms".into(), "7000".into());
        // Another broker's dynamic value does not apply here.
        image
            .broker_configs
            .entry(Some(2))
            .or_default()
            .insert("log.retention.ms".into(), "9000".into());
        assert_eq!(
            c.topic_value(def, &BTreeMap::new(), &image),
            (Some("7000".into()), ConfigSource::DynamicBroker)
        );
        assert_eq!(
            c.partition_config(&BTreeMap::new(), &image)
                .log
                .retention_ms,
            7000
        );
        let overrides: BTreeMap<_, _> = [("retention.ms".to_string(), "3".to_string())].into();
        assert_eq!(c.partition_config(&overrides, &image).log.retention_ms, 3);
        assert!(is_dynamic_broker_config("log.retention.ms"));
        assert!(is_dynamic_broker_config("message.max.bytes"));
        assert!(!is_dynamic_broker_config("log.retention.hours"));
        assert!(!is_dynamic_broker_config("num.partitions"));
    }

    #[test]
    fn compact_only_topics_are_never_deleted_by_retention() {
        let none = MetadataImage::default();
        let c = config(&[
            ("log.retention.hours", "1"),
            ("log.retention.bytes", "1000"),
        ])
        .unwrap();
        let overrides: BTreeMap<_, _> =
            [("cleanup.policy".to_string(), "compact".to_string())].into();
        let p = c.partition_config(&overrides, &none);
        assert_eq!((p.log.retention_ms, p.log.retention_bytes), (-1, -1));
        let p = c.partition_config(&BTreeMap::new(), &none);
        assert_eq!(
            (p.log.retention_ms, p.log.retention_bytes),
            (3_600_000, 1000)
        );
    }

    #[test]
    fn partition_config_from_overrides() {
        let none = MetadataImage::default();
        let c = config(&[("message.max.bytes", "2000")]).unwrap();
        let overrides: BTreeMap<_, _> = [
            ("cleanup.policy".to_string(), "compact,delete".to_string()),
            ("segment.bytes".to_string(), "1048576".to_string()),
        ]
        .into();
        let p = c.partition_config(&overrides, &none);
        assert!(p.compacted);
        assert_eq!(
            p.log.retention_ms, 604_800_000,
            "compact,delete still deletes by time"
        );
        assert_eq!(p.log.segment_bytes, 1_048_576);
        assert_eq!(p.max_message_bytes, 2000);
        assert!(!p.log_append_time);
    }
}
