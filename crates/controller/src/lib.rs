//! ottla-controller: cluster metadata — brokers, topics, partitions, topic configs.
//!
//! The controller is a state machine over [`MetadataRecord`]s: each operation validates
//! against the current [`MetadataImage`], produces records, appends them durably to the
//! metadata log and then replays them into a new image snapshot. Today there is one
//! voter (this node) and the log is a local fsynced file; the multi-node issue replaces
//! the file with a Raft-replicated log without changing this shape.

pub mod acls;
mod campaign;
pub mod configs;
pub mod delta;
pub mod election;
pub mod feed;
pub mod image;
pub mod liveness;
pub mod metadata_log;
mod observer;
pub mod placement;
pub mod quorum;
pub mod reassignment;
pub mod records;
pub mod replication;
pub mod rpc;
pub mod scram;
pub mod topic_name;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::quorum::{ControllerNode, MetadataRaft, SharedImage};

pub use configs::{ConfigChange, ConfigResource};
pub use delta::{LocalPartition, LocalReplicaChanges, MetadataDelta, MetadataPublisher};
pub use election::ElectionType;
pub use image::{
    is_internal_topic, BrokerEndpoint, BrokerInfo, MetadataImage, PartitionInfo, ScramCredential,
    TopicInfo, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC,
};
use metadata_log::{MetadataLog, MetadataLogError};
pub use reassignment::OngoingReassignment;
pub use reassignment::ReassignmentRequest;
pub use records::MetadataRecord;
pub use replication::AlterPartitionSpec;
pub use rpc::{QuorumAdmission, QuorumTls, QuorumTransport};

/// Kafka caps partitions per CreateTopics/CreatePartitions request far above this; we
/// keep a named limit so one request cannot create millions of directories.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: i32,
    /// Where the metadata log lives (`<first log dir>/__ottla_metadata`).
    pub metadata_dir: PathBuf,
    /// `num.partitions`
    pub default_num_partitions: i32,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// The cluster id `ottla format` wrote, which a quorum's first change records; the
    /// embedded controller makes its own.
    pub cluster_id: Option<String>,
    /// The Raft quorum this controller is a voter of; `None`: the embedded single-node
    /// controller (a local fsynced log, no quorum, no format step).
    pub quorum: Option<QuorumSettings>,
}

/// `controller.quorum.voters` and this node's CONTROLLER listener.
#[derive(Debug, Clone)]
pub struct QuorumSettings {
    /// (node id, host, port) of every voter's CONTROLLER listener.
    pub voters: Vec<(i32, String, u16)>,
    /// Where this node's CONTROLLER listener binds.
    pub listen: String,
    /// How long a metadata change waits for the quorum before it fails with
    /// REQUEST_TIMED_OUT (Kafka's brokers give up on the controller after their
    /// `request.timeout.ms`).
    pub write_timeout: std::time::Duration,
    /// `broker.session.timeout.ms`: the active controller fences a broker it has not
    /// heard from for this long.
    pub broker_session_timeout: std::time::Duration,
    /// `unclean.leader.election.enable`, the default for topics that do not set it.
    pub unclean_leader_election: bool,
    /// `leader.imbalance.check.interval.seconds` when `auto.leader.rebalance.enable`:
    /// how often the active controller moves leaderships back to preferred replicas.
    pub leader_rebalance_interval: Option<std::time::Duration>,
    /// This node is no voter (`process.roles=broker`): it follows the quorum's metadata
    /// as an observer and forwards every change (`listen` is unused).
    pub observer: bool,
    /// PLAINTEXT or TLS on the CONTROLLER listener, and who it admits.
    pub transport: rpc::QuorumTransport,
}

/// What a client asked for in CreateTopics, already stripped of wire details.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateTopicSpec {
    pub name: String,
    /// -1: use `num.partitions`.
    pub num_partitions: i32,
    /// -1: use `default.replication.factor`.
    pub replication_factor: i16,
    /// Manual replica assignment by partition, if given (then counts must be -1).
    pub assignments: BTreeMap<i32, Vec<i32>>,
    /// Validated topic configs.
    pub configs: BTreeMap<String, String>,
}

/// Errors carry Kafka's error code and the message Kafka would send with it.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("This server does not host this topic-partition.")]
    UnknownTopicOrPartition,
    #[error("This server does not host this topic ID.")]
    UnknownTopicId,
    #[error("The leader epoch in the request is older than the epoch on the broker.")]
    FencedLeaderEpoch,
    #[error("The given partition epoch does not match the current partition epoch.")]
    InvalidUpdateVersion,
    #[error("{0}")]
    IneligibleReplica(String),
    /// A heartbeat or shutdown request from a broker with no registration (Kafka's
    /// `ClusterControlManager.checkBrokerEpoch`).
    #[error("No broker registration found for broker {0}")]
    StaleBrokerEpoch(i32),
    #[error("Leader election not needed for topic partition.")]
    ElectionNotNeeded,
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
    #[error("No partition reassignment is in progress for the topic '{0}' partition '{1}'.")]
    NoReassignmentInProgress(String, i32),
    #[error("metadata log write failed: {0}")]
    Storage(#[from] MetadataLogError),
    #[error("metadata record does not apply: {0}")]
    Replay(#[from] image::ReplayError),
    /// The quorum did not commit the change in time (no majority, no leader): retriable.
    #[error("the controller quorum did not answer: {0}")]
    QuorumUnavailable(String),
    /// This controller is not the active one (leadership moved while the change waited).
    #[error("this controller is not the active controller")]
    NotActive,
    /// The active controller refused a change this node forwarded to it.
    #[error("{message}")]
    Forwarded { code: i16, message: String },
}

impl ControllerError {
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ControllerError::TopicAlreadyExists(_) => 36,
            ControllerError::InvalidTopic(_) => 17,
            ControllerError::InvalidPartitions(_) => 37,
            ControllerError::InvalidReplicationFactor(_) => 38,
            ControllerError::InvalidReplicaAssignment(_) => 39,
            ControllerError::InvalidRequest(_) => 42,
            ControllerError::UnknownTopicOrPartition => 3,
            ControllerError::UnknownTopicId => 100,
            ControllerError::FencedLeaderEpoch => 74,
            ControllerError::InvalidUpdateVersion => 108,
            ControllerError::IneligibleReplica(_) => 107,
            ControllerError::StaleBrokerEpoch(_) => 77,
            ControllerError::PreferredLeaderNotAvailable(_) => 80,
            ControllerError::EligibleLeadersNotAvailable(_) => 83,
            ControllerError::ElectionNotNeeded => 84,
            ControllerError::NoReassignmentInProgress(..) => 85,
            // KAFKA_STORAGE_ERROR would be per partition; for metadata Kafka reports
            // UNKNOWN_SERVER_ERROR.
            ControllerError::Storage(_) | ControllerError::Replay(_) => -1,
            // REQUEST_TIMED_OUT, as a Kafka broker answers when no controller does.
            ControllerError::QuorumUnavailable(_) => 7,
            // NOT_CONTROLLER
            ControllerError::NotActive => 41,
            ControllerError::Forwarded { code, .. } => *code,
        }
    }

    /// TOPIC_ALREADY_EXISTS, whether decided here or by the active controller.
    pub fn is_topic_already_exists(&self) -> bool {
        self.kafka_error_code() == 36
    }
}

/// A metadata change, as a non-active controller forwards it to the active one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerOp {
    RegisterBroker {
        node_id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
        #[serde(default)]
        listeners: Vec<BrokerEndpoint>,
    },
    CreateTopic {
        spec: CreateTopicSpec,
    },
    DeleteTopic {
        topic_id: Uuid,
    },
    CreatePartitions {
        name: String,
        new_total: i32,
        assignments: Option<Vec<Vec<i32>>>,
    },
    AllocateProducerIds {
        count: i64,
    },
    AlterPartitions {
        specs: Vec<AlterPartitionSpec>,
    },
    BrokerHeartbeat {
        node_id: i32,
    },
    ControlledShutdown {
        node_id: i32,
    },
    ElectLeaders {
        election: ElectionType,
        /// `None`: every partition.
        partitions: Option<Vec<(String, Vec<i32>)>>,
    },
    AlterPartitionReassignments {
        requests: Vec<ReassignmentRequest>,
    },
    AlterConfigs {
        changes: Vec<configs::ConfigChange>,
    },
    AlterScramCredentials {
        changes: Vec<scram::ScramChange>,
    },
    CreateAcls {
        acls: Vec<acls::AclBinding>,
    },
    DeleteAcls {
        filters: Vec<acls::AclFilter>,
    },
}

/// What a change hands back besides its effect on the image, across a forward too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeOutput {
    #[default]
    Nothing,
    /// The first of the producer ids allocated.
    ProducerIds { start: i64 },
    /// ElectLeaders' answer per partition.
    Elections(Vec<PartitionOutcome>),
    /// AlterPartitionReassignments' answer per partition.
    Reassignments(Vec<PartitionOutcome>),
    /// AlterConfigs' answer per resource: `None` when done, else Kafka's error.
    Configs(Vec<Option<(i16, String)>>),
    /// AlterUserScramCredentials' answer per change: `None` when done, else Kafka's error.
    ScramCredentials(Vec<Option<(i16, String)>>),
    /// CreateAcls' answer per ACL: `None` when done, else Kafka's error.
    CreatedAcls(Vec<Option<(i16, String)>>),
    /// DeleteAcls' answer per filter.
    DeletedAcls(Vec<acls::DeleteOutcome>),
}

/// One partition's answer to a change made partition by partition (ElectLeaders,
/// AlterPartitionReassignments): `error` is Kafka's code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOutcome {
    pub topic: String,
    pub partition: i32,
    pub error: Option<(i16, String)>,
}

impl PartitionOutcome {
    pub(crate) fn new(topic: &str, partition: i32, outcome: Result<(), ControllerError>) -> Self {
        PartitionOutcome {
            topic: topic.to_string(),
            partition,
            error: outcome.err().map(|e| (e.kafka_error_code(), e.to_string())),
        }
    }
}

/// The active controller's answer to a forwarded change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerOpResult {
    /// Committed; applied at the active controller up to `applied_index`, which the
    /// forwarder waits for before it answers (so its own image shows the change).
    Done {
        applied_index: Option<u64>,
        output: ChangeOutput,
    },
    Failed {
        code: i16,
        message: String,
    },
}

/// The quorum as DescribeQuorum reports it (Kafka's `QuorumInfo`). Offsets are
/// exclusive ends, as Kafka's: a log end offset is the index of the next entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumDescription {
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<ReplicaProgress>,
    pub observers: Vec<ReplicaProgress>,
    /// Every voter's CONTROLLER endpoint: (node id, host, port).
    pub nodes: Vec<(i32, String, u16)>,
}

/// One replica of the metadata log, as the active controller sees it; -1 when unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaProgress {
    pub replica_id: i32,
    pub log_end_offset: i64,
    pub last_fetch_timestamp: i64,
    pub last_caught_up_timestamp: i64,
}

/// An observer not heard from for this long is no longer listed by DescribeQuorum.
const OBSERVER_EXPIRY_MS: i64 = 30_000;

/// How the controller makes a change durable.
enum Backend {
    /// The embedded single-node controller's fsynced file.
    Local(Mutex<MetadataLog>),
    /// A voter of an openraft quorum.
    Raft(RaftBackend),
    /// A broker-only node following the quorum (KRaft's observer).
    Observer(observer::ObserverBackend),
}

struct RaftBackend {
    raft: MetadataRaft,
    runtime: tokio::runtime::Handle,
    /// Serialises the active controller's validate-then-write, so that two changes never
    /// validate against the same image (Kafka's controller event thread). Holds the log
    /// index of the latest entry this controller committed: a voter that forwarded a
    /// change waits until it has applied that far (a later index is as good: it is
    /// committed too).
    writes: Mutex<Option<u64>>,
    write_timeout: std::time::Duration,
    /// Stops the CONTROLLER listener.
    stop: tokio::sync::watch::Sender<bool>,
    /// The committed metadata observers fetch.
    feed: Arc<feed::MetadataFeed>,
}

/// The publishers and the last image they were told about, under one lock so that a
/// publisher registered while changes are applied sees each change exactly once.
struct Publishing {
    publishers: Vec<Arc<dyn MetadataPublisher>>,
    last: Arc<MetadataImage>,
}

pub struct Controller {
    config: ControllerConfig,
    image: SharedImage,
    /// Local: writers are serialised by the log's lock (validate, append, replay and
    /// publish under it, so two concurrent CreateTopics for one name cannot both pass
    /// validation and publishers see deltas in commit order). Raft: by the backend's.
    backend: Backend,
    publishing: Arc<Mutex<Publishing>>,
    /// Broker sessions, kept by the active controller.
    sessions: liveness::BrokerSessions,
}

impl Controller {
    /// How this node reaches the others on the CONTROLLER listener.
    pub(crate) fn transport(&self) -> rpc::QuorumTransport {
        self.config
            .quorum
            .as_ref()
            .map(|q| q.transport.clone())
            .unwrap_or_default()
    }

    /// Open the metadata log (the local file, or this voter's share of the quorum's log)
    /// and replay it. The embedded controller makes sure the cluster has an id at once;
    /// a quorum's first change gives it one. With a quorum this starts the Raft node and
    /// its CONTROLLER listener, so it must run on a blocking thread of a tokio runtime.
    pub fn open(config: ControllerConfig) -> Result<Arc<Controller>, ControllerError> {
        match config.quorum.clone() {
            None => Controller::open_local(config),
            Some(quorum) if quorum.observer => Controller::open_observer(config, quorum),
            Some(quorum) => Controller::open_raft(config, quorum),
        }
    }

    fn open_local(config: ControllerConfig) -> Result<Arc<Controller>, ControllerError> {
        let (log, records) = MetadataLog::open(&config.metadata_dir)?;
        let mut image = MetadataImage::default();
        for record in &records {
            image.replay(record)?;
        }
        let image = Arc::new(image);
        let controller = Controller {
            config,
            image: Arc::new(RwLock::new(image.clone())),
            backend: Backend::Local(Mutex::new(log)),
            publishing: Arc::new(Mutex::new(Publishing {
                publishers: Vec::new(),
                last: image,
            })),
            sessions: liveness::BrokerSessions::default(),
        };
        if controller.image().cluster_id.is_none() {
            let cluster_id = new_cluster_id();
            controller.commit(|_| Ok((vec![MetadataRecord::ClusterId { cluster_id }], ())))?;
        }
        tracing::info!(
            "Loaded metadata: {} records, {} topics, cluster id {}",
            records.len(),
            controller.image().topic_count(),
            controller.image().cluster_id.as_deref().unwrap_or("?")
        );
        Ok(Arc::new(controller))
    }

    fn open_raft(
        config: ControllerConfig,
        quorum: QuorumSettings,
    ) -> Result<Arc<Controller>, ControllerError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            ControllerError::QuorumUnavailable(format!("{what}: {e}"))
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| unavailable("no async runtime for the quorum", &e))?;
        let image: SharedImage = Arc::new(RwLock::new(Arc::new(MetadataImage::default())));
        let publishing = Arc::new(Mutex::new(Publishing {
            publishers: Vec::new(),
            last: Arc::new(MetadataImage::default()),
        }));
        let observer_publishing = publishing.clone();
        let feed = Arc::new(feed::MetadataFeed::default());
        let observer_feed = feed.clone();
        let observer: quorum::MetadataObserver = Arc::new(move |delta, image, change| {
            match change {
                quorum::AppliedChange::Entry { index, records } => {
                    observer_feed.applied(index, records, image)
                }
                quorum::AppliedChange::Snapshot { index } => observer_feed.reset(index, image),
            }
            let publish = || {
                let mut publishing = observer_publishing.lock();
                for publisher in &publishing.publishers {
                    publisher.publish(delta, image);
                }
                publishing.last = image.clone();
            };
            // The state machine applies on an async task, and publishers do file I/O
            // (a new topic's partition directories): tell the runtime this worker
            // blocks, so the others keep serving meanwhile.
            match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                    tokio::task::block_in_place(publish)
                }
                _ => publish(),
            }
        });
        let (log_store, state_machine) = quorum::open_storage(
            &config.metadata_dir,
            quorum::QuorumLogConfig::default(),
            image.clone(),
            observer,
        )
        .map_err(|e| unavailable("cannot open the metadata log", &e))?;
        // KRaft's `controller.quorum.election.timeout.ms` is 1 s; heartbeats well inside it.
        let raft_config = openraft::Config {
            cluster_name: "ottla".into(),
            heartbeat_interval: 100,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| unavailable("invalid quorum settings", &e))?;
        let election_timeout_max =
            std::time::Duration::from_millis(raft_config.election_timeout_max);
        let node_id = config.node_id as u64;
        let raft = runtime
            .block_on(MetadataRaft::new(
                node_id,
                Arc::new(raft_config),
                rpc::QuorumNetworkFactory {
                    transport: quorum.transport.clone(),
                },
                log_store,
                state_machine,
            ))
            .map_err(|e| unavailable("cannot start the quorum", &e))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&quorum.listen))
            .map_err(|e| unavailable(&format!("cannot listen on {}", quorum.listen), &e))?;
        tracing::info!(
            "Controller {} listening for the quorum on {}",
            config.node_id,
            quorum.listen
        );
        // Every voter of a new quorum proposes the same membership; openraft refuses it
        // on a node that already has a log, which is the normal restart.
        let voters = rpc::voters_map(&quorum.voters);
        if let Err(e) = runtime.block_on(raft.initialize(voters)) {
            tracing::debug!("Quorum already initialized here: {e}");
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let controller = Arc::new(Controller {
            config,
            image,
            backend: Backend::Raft(RaftBackend {
                raft: raft.clone(),
                runtime: runtime.clone(),
                writes: Mutex::new(None),
                write_timeout: quorum.write_timeout,
                stop,
                feed,
            }),
            publishing,
            sessions: liveness::BrokerSessions::default(),
        });
        let target: Arc<dyn rpc::ForwardTarget> =
            Arc::new(LocalController(Arc::downgrade(&controller)));
        runtime.spawn(log_transitions(raft.clone(), controller.config.node_id));
        runtime.spawn(back_off_failed_campaigns(
            raft.clone(),
            controller.config.node_id,
            election_timeout_max,
        ));
        runtime.spawn(rpc::serve(
            listener,
            raft,
            target,
            stopped,
            quorum.transport.clone(),
        ));
        liveness::spawn_session_checker(
            Arc::downgrade(&controller),
            quorum.broker_session_timeout,
            quorum.leader_rebalance_interval,
        );
        Ok(controller)
    }

    /// Stop taking part in the quorum (clean shutdown).
    pub fn shutdown(&self) {
        match &self.backend {
            Backend::Raft(b) => {
                let _ = b.stop.send(true);
                if let Err(e) = b.runtime.block_on(b.raft.shutdown()) {
                    tracing::warn!("The quorum's Raft node did not stop cleanly: {e}");
                }
            }
            Backend::Observer(o) => {
                let _ = o.stop.send(true);
            }
            Backend::Local(_) => {}
        }
    }

    /// Whether this node belongs to a quorum, as a voter or an observer (else the
    /// embedded single node, where brokers neither heartbeat nor get fenced).
    pub fn has_quorum(&self) -> bool {
        !matches!(self.backend, Backend::Local(_))
    }

    /// Whether [`Controller::shutdown`] has run.
    fn is_shut_down(&self) -> bool {
        match &self.backend {
            Backend::Local(_) => false,
            Backend::Raft(b) => *b.stop.borrow(),
            Backend::Observer(o) => *o.stop.borrow(),
        }
    }

    /// The active controller's node id, if one is known.
    pub fn active_controller(&self) -> Option<i32> {
        match &self.backend {
            Backend::Local(_) => Some(self.config.node_id),
            Backend::Raft(b) => b.raft.metrics().borrow().current_leader.map(|id| id as i32),
            Backend::Observer(o) => o.leader().map(|id| id as i32),
        }
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The current metadata snapshot. Cheap (an `Arc` clone); never blocks on writers
    /// for longer than a pointer swap.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// Add a publisher: it receives the current image at once, as one delta, then every
    /// committed change.
    pub fn register_publisher(&self, publisher: Arc<dyn MetadataPublisher>) {
        let _writers = match &self.backend {
            Backend::Local(log) => Some(log.lock()),
            Backend::Raft(_) | Backend::Observer(_) => None,
        };
        let mut publishing = self.publishing.lock();
        let image = publishing.last.clone();
        publisher.publish(&MetadataDelta::full(&image), &image);
        publishing.publishers.push(publisher);
    }

    /// Validate-and-emit, make durable, replay, publish. Local: all under the log's
    /// lock. Raft: on the active controller only (after catching up with everything
    /// the quorum committed), the entry committed by the quorum, then applied and
    /// published by the state machine on every voter.
    fn commit<T>(
        &self,
        produce: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ControllerError>,
    ) -> Result<T, ControllerError>
    where
        T: Sized,
    {
        let log = match &self.backend {
            Backend::Local(log) => log,
            Backend::Raft(b) => return self.commit_raft(b, produce),
            // Never the active controller: its changes are forwarded.
            Backend::Observer(_) => return Err(ControllerError::NotActive),
        };
        let mut log = log.lock();
        let current = self.image();
        let (records, out) = produce(&current)?;
        if records.is_empty() {
            return Ok(out);
        }
        let mut next = (*current).clone();
        // Replay first on a copy: a record that does not apply must never reach the log.
        for record in &records {
            next.replay(record)?;
        }
        log.append(&records)?;
        let delta = MetadataDelta::from_records(&current, &records);
        let next = Arc::new(next);
        // Publish before readers see the new image: a topic becomes visible once this
        // broker has opened its partitions, never before.
        {
            let mut publishing = self.publishing.lock();
            for publisher in &publishing.publishers {
                publisher.publish(&delta, &next);
            }
            publishing.last = next.clone();
        }
        *self.image.write() = next;
        Ok(out)
    }

    fn commit_raft<T>(
        &self,
        b: &RaftBackend,
        produce: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ControllerError>,
    ) -> Result<T, ControllerError> {
        let mut last_written = b.writes.lock();
        let timeout = b.write_timeout;
        // Leader, and caught up with every committed change, before validating.
        let linearizable = b
            .runtime
            .block_on(tokio::time::timeout(timeout, b.raft.ensure_linearizable()));
        match linearizable {
            Err(_) => {
                return Err(ControllerError::QuorumUnavailable(format!(
                    "no quorum within {timeout:?}"
                )))
            }
            Ok(Err(openraft::error::RaftError::APIError(_))) => {
                return Err(ControllerError::NotActive)
            }
            Ok(Err(e)) => return Err(ControllerError::QuorumUnavailable(e.to_string())),
            Ok(Ok(_)) => {}
        }
        let current = self.image();
        let (records, out) = produce(&current)?;
        if records.is_empty() {
            return Ok(out);
        }
        let mut preview = (*current).clone();
        for record in &records {
            preview.replay(record)?;
        }
        let written = b.runtime.block_on(tokio::time::timeout(
            timeout,
            b.raft.client_write(quorum::MetadataBatch(records)),
        ));
        match written {
            Err(_) => Err(ControllerError::QuorumUnavailable(format!(
                "the change was not committed within {timeout:?}"
            ))),
            Ok(Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(_),
            ))) => Err(ControllerError::NotActive),
            Ok(Err(e)) => Err(ControllerError::QuorumUnavailable(e.to_string())),
            Ok(Ok(written)) => {
                *last_written = Some(written.log_id.index);
                Ok(out)
            }
        }
    }

    /// With a quorum and another voter active: send `op` there and wait until this
    /// node has applied it. `None`: run it here (embedded controller, or this voter is
    /// the active one).
    fn forward_if_not_active(
        &self,
        op: &dyn Fn() -> ControllerOp,
        deadline: std::time::Instant,
    ) -> Result<Option<ChangeOutput>, ControllerError> {
        let Backend::Raft(b) = &self.backend else {
            return Ok(None);
        };
        let op = op();
        loop {
            let (leader, node) = {
                let metrics = b.raft.metrics();
                let m = metrics.borrow();
                let leader = m.current_leader;
                let node =
                    leader.and_then(|l| m.membership_config.membership().get_node(&l).cloned());
                (leader, node)
            };
            match (leader, node) {
                (Some(l), _) if l == self.config.node_id as u64 => return Ok(None),
                (Some(l), Some(node)) => {
                    if let Some(done) = self.forward(b, l, &node, &op, deadline)? {
                        return Ok(Some(done));
                    }
                }
                _ => {}
            }
            if std::time::Instant::now() >= deadline {
                return Err(ControllerError::QuorumUnavailable(format!(
                    "no active controller within {:?}",
                    b.write_timeout
                )));
            }
            // An election is under way (or the active controller just changed).
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Run a change: here when this controller is the active one (or the embedded one),
    /// else at the active one (`forwarded` then reads the result from the local image,
    /// which has caught up). When leadership moves while the change waits, it is tried
    /// again until the quorum's write timeout: a client sees REQUEST_TIMED_OUT only when
    /// no quorum answered, never NOT_CONTROLLER (Kafka's brokers retry their
    /// forwarding the same way).
    fn run_change<T>(
        &self,
        op: &dyn Fn() -> ControllerOp,
        here: &dyn Fn() -> Result<T, ControllerError>,
        forwarded: &dyn Fn(ChangeOutput) -> Result<T, ControllerError>,
    ) -> Result<T, ControllerError> {
        let b = match &self.backend {
            Backend::Local(_) => return here(),
            Backend::Observer(o) => return forwarded(self.forward_as_observer(o, &op())?),
            Backend::Raft(b) => b,
        };
        let deadline = std::time::Instant::now() + b.write_timeout;
        loop {
            if let Some(done) = self.forward_if_not_active(op, deadline)? {
                return forwarded(done);
            }
            match here() {
                Err(ControllerError::NotActive) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(ControllerError::NotActive) => {
                    return Err(ControllerError::QuorumUnavailable(format!(
                        "no active controller within {:?}",
                        b.write_timeout
                    )))
                }
                other => return other,
            }
        }
    }

    /// Forward `op` to `node` (voter `leader`); `None` if it was not the active
    /// controller after all, or stopped being it while the change waited (a stopped or
    /// partitioned controller never answers: the wait ends when the quorum elects
    /// another, and the change is tried there).
    fn forward(
        &self,
        b: &RaftBackend,
        leader: u64,
        node: &ControllerNode,
        op: &ControllerOp,
        deadline: std::time::Instant,
    ) -> Result<Option<ChangeOutput>, ControllerError> {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut client =
            rpc::QuorumClient::new(format!("{}:{}", node.host, node.port), self.transport());
        let mut metrics = b.raft.metrics();
        let request = rpc::QuorumRequest::Forward(op.clone());
        let answer = b.runtime.block_on(async {
            let leader_moved = async {
                loop {
                    if metrics.borrow_and_update().current_leader != Some(leader) {
                        return;
                    }
                    if metrics.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                answer = client.call(&request, left) => Some(answer),
                () = leader_moved => None,
            }
        });
        let Some(answer) = answer else {
            return Ok(None);
        };
        match answer {
            Ok(rpc::QuorumResponse::Forward(ControllerOpResult::Done {
                applied_index,
                output,
            })) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let caught_up = b.runtime.block_on(
                    b.raft
                        .wait(Some(left.max(std::time::Duration::from_millis(1))))
                        .applied_index_at_least(applied_index, "a forwarded metadata change"),
                );
                if let Err(e) = caught_up {
                    return Err(ControllerError::QuorumUnavailable(format!(
                        "the change was committed but not applied here in time: {e}"
                    )));
                }
                Ok(Some(output))
            }
            Ok(rpc::QuorumResponse::Forward(ControllerOpResult::Failed { code, .. }))
                if code == ControllerError::NotActive.kafka_error_code() =>
            {
                Ok(None)
            }
            Ok(rpc::QuorumResponse::Forward(ControllerOpResult::Failed { code, message })) => {
                Err(ControllerError::Forwarded { code, message })
            }
            Ok(_) => Err(ControllerError::QuorumUnavailable(
                "unexpected answer from the active controller".into(),
            )),
            // The node just went away: wait for the next election.
            Err(_) => Ok(None),
        }
    }

    /// DescribeQuorum: the active controller's view of the quorum (asked of it when this
    /// node is not the active one). The embedded controller is a quorum of one that
    /// never held an election (epoch 0), its log end the count of metadata records.
    pub fn describe_quorum(&self) -> Result<QuorumDescription, ControllerError> {
        let b = match &self.backend {
            Backend::Local(_) => {
                let end = self.image().offset as i64;
                let id = self.config.node_id;
                return Ok(QuorumDescription {
                    leader_id: id,
                    leader_epoch: 0,
                    high_watermark: end,
                    voters: vec![ReplicaProgress {
                        replica_id: id,
                        log_end_offset: end,
                        last_fetch_timestamp: now_ms(),
                        last_caught_up_timestamp: now_ms(),
                    }],
                    observers: Vec::new(),
                    nodes: Vec::new(),
                });
            }
            Backend::Observer(o) => return self.describe_quorum_as_observer(o),
            Backend::Raft(b) => b,
        };
        if let Some(here) = self.describe_quorum_here(b) {
            return Ok(here);
        }
        let deadline = std::time::Instant::now() + b.write_timeout;
        loop {
            let leader_node = {
                let metrics = b.raft.metrics();
                let m = metrics.borrow();
                m.current_leader
                    .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
            };
            if let Some(node) = leader_node {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let mut client = rpc::QuorumClient::new(
                    format!("{}:{}", node.host, node.port),
                    self.transport(),
                );
                let answer = b
                    .runtime
                    .block_on(client.call(&rpc::QuorumRequest::DescribeQuorum, left));
                if let Ok(rpc::QuorumResponse::DescribeQuorum(Some(d))) = answer {
                    return Ok(d);
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(ControllerError::QuorumUnavailable(
                    "no active controller to describe the quorum".into(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The quorum as this voter sees it, if it is the active controller.
    fn describe_quorum_here(&self, b: &RaftBackend) -> Option<QuorumDescription> {
        let metrics = b.raft.metrics();
        let m = metrics.borrow();
        let me = self.config.node_id as u64;
        if m.current_leader != Some(me) {
            return None;
        }
        let end_of =
            |log_id: Option<&openraft::LogId<u64>>| log_id.map_or(0, |l| l.index as i64 + 1);
        let leader_end = m.last_log_index.map_or(0, |i| i as i64 + 1);
        let membership = m.membership_config.membership();
        let now = now_ms();
        let mut voters = Vec::new();
        for id in membership.voter_ids() {
            let log_end_offset = if id == me {
                leader_end
            } else {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&id))
                    .map_or(-1, |matched| end_of(matched.as_ref()))
            };
            voters.push(ReplicaProgress {
                replica_id: id as i32,
                log_end_offset,
                // openraft does not keep follower fetch times: unknown, except for the
                // leader itself.
                last_fetch_timestamp: if id == me { now } else { -1 },
                last_caught_up_timestamp: if id == me { now } else { -1 },
            });
        }
        let nodes = membership
            .nodes()
            .map(|(id, node)| (*id as i32, node.host.clone(), node.port))
            .collect();
        Some(QuorumDescription {
            leader_id: me as i32,
            leader_epoch: m.current_term.min(i32::MAX as u64) as i32,
            high_watermark: end_of(m.last_applied.as_ref()),
            voters,
            // Broker-only nodes fetching the metadata (KRaft lists brokers as observers).
            observers: b
                .feed
                .observers()
                .into_iter()
                .filter(|(_, p)| now - p.last_fetch_ms < OBSERVER_EXPIRY_MS)
                .map(|(id, p)| ReplicaProgress {
                    replica_id: id,
                    log_end_offset: p.applied_index as i64 + 1,
                    last_fetch_timestamp: p.last_fetch_ms,
                    last_caught_up_timestamp: p.last_fetch_ms,
                })
                .collect(),
            nodes,
        })
    }

    /// Answer a DescribeQuorum another voter forwarded.
    pub fn describe_quorum_forwarded(&self) -> Option<QuorumDescription> {
        match &self.backend {
            Backend::Raft(b) => self.describe_quorum_here(b),
            Backend::Local(_) | Backend::Observer(_) => None,
        }
    }

    /// Run a change another voter forwarded (this one believes itself active).
    pub fn execute_forwarded(&self, op: ControllerOp) -> ControllerOpResult {
        let Backend::Raft(b) = &self.backend else {
            return ControllerOpResult::Failed {
                code: ControllerError::NotActive.kafka_error_code(),
                message: "not a quorum voter".into(),
            };
        };
        if b.raft.metrics().borrow().current_leader != Some(self.config.node_id as u64) {
            return ControllerOpResult::Failed {
                code: ControllerError::NotActive.kafka_error_code(),
                message: "not the active controller".into(),
            };
        }
        let outcome = match op {
            ControllerOp::RegisterBroker {
                node_id,
                host,
                port,
                rack,
                listeners,
            } => self
                .register_broker_here(BrokerInfo {
                    node_id,
                    host,
                    port,
                    rack,
                    listeners,
                })
                .map(|()| ChangeOutput::Nothing),
            ControllerOp::CreateTopic { spec } => self
                .create_topic_here(&spec, false)
                .map(|_| ChangeOutput::Nothing),
            ControllerOp::DeleteTopic { topic_id } => self
                .delete_topic_here(topic_id)
                .map(|_| ChangeOutput::Nothing),
            ControllerOp::CreatePartitions {
                name,
                new_total,
                assignments,
            } => self
                .create_partitions_here(&name, new_total, assignments, false)
                .map(|_| ChangeOutput::Nothing),
            ControllerOp::AllocateProducerIds { count } => self
                .allocate_producer_ids_here(count)
                .map(|start| ChangeOutput::ProducerIds { start }),
            ControllerOp::AlterPartitions { specs } => self
                .alter_partitions_here(&specs)
                .map(|()| ChangeOutput::Nothing),
            ControllerOp::BrokerHeartbeat { node_id } => self
                .broker_heartbeat_here(node_id)
                .map(|()| ChangeOutput::Nothing),
            ControllerOp::ElectLeaders {
                election,
                partitions,
            } => self
                .elect_leaders_here(election, partitions.as_deref())
                .map(ChangeOutput::Elections),
            ControllerOp::AlterConfigs { changes } => {
                self.alter_configs_here(&changes).map(ChangeOutput::Configs)
            }
            ControllerOp::AlterScramCredentials { changes } => self
                .alter_scram_credentials_here(&changes)
                .map(ChangeOutput::ScramCredentials),
            ControllerOp::CreateAcls { acls } => {
                self.create_acls_here(&acls).map(ChangeOutput::CreatedAcls)
            }
            ControllerOp::DeleteAcls { filters } => self
                .delete_acls_here(&filters)
                .map(ChangeOutput::DeletedAcls),
            ControllerOp::AlterPartitionReassignments { requests } => self
                .alter_partition_reassignments_here(&requests)
                .map(ChangeOutput::Reassignments),
            ControllerOp::ControlledShutdown { node_id } => self
                .controlled_shutdown_here(node_id)
                .map(|()| ChangeOutput::Nothing),
        };
        match outcome {
            Ok(output) => ControllerOpResult::Done {
                applied_index: *b.writes.lock(),
                output,
            },
            Err(e) => ControllerOpResult::Failed {
                code: e.kafka_error_code(),
                message: e.to_string(),
            },
        }
    }

    /// Register (or update) this broker's endpoint. A quorum's first change also gives
    /// the cluster its id.
    pub fn register_broker(&self, info: BrokerInfo) -> Result<(), ControllerError> {
        self.run_change(
            &|| ControllerOp::RegisterBroker {
                node_id: info.node_id,
                host: info.host.clone(),
                port: info.port,
                rack: info.rack.clone(),
                listeners: info.listeners.clone(),
            },
            &|| self.register_broker_here(info.clone()),
            &|_| Ok(()),
        )
    }

    fn register_broker_here(&self, info: BrokerInfo) -> Result<(), ControllerError> {
        self.sessions_started(info.node_id);
        self.commit(|image| {
            let mut records = Vec::new();
            if image.cluster_id.is_none() {
                records.push(MetadataRecord::ClusterId {
                    cluster_id: self
                        .config
                        .cluster_id
                        .clone()
                        .unwrap_or_else(new_cluster_id),
                });
            }
            if image.brokers.get(&info.node_id) != Some(&info) {
                records.push(MetadataRecord::RegisterBroker {
                    node_id: info.node_id,
                    host: info.host.clone(),
                    port: info.port,
                    rack: info.rack.clone(),
                });
                if !info.listeners.is_empty() {
                    records.push(MetadataRecord::BrokerListeners {
                        node_id: info.node_id,
                        listeners: info.listeners.clone(),
                    });
                }
            }
            // A broker that was fenced (it shut down, or its session expired) is back.
            records.extend(self.unfence(image, info.node_id).0);
            Ok((records, ()))
        })
    }

    /// Create one topic (or, with `validate_only`, check that it could be created).
    pub fn create_topic(
        &self,
        spec: &CreateTopicSpec,
        validate_only: bool,
    ) -> Result<Arc<TopicInfo>, ControllerError> {
        if validate_only {
            return self.create_topic_here(spec, true);
        }
        self.run_change(
            &|| ControllerOp::CreateTopic { spec: spec.clone() },
            &|| self.create_topic_here(spec, false),
            &|_| {
                self.image().topic(&spec.name).cloned().ok_or_else(|| {
                    ControllerError::QuorumUnavailable("the new topic is not visible here".into())
                })
            },
        )
    }

    fn create_topic_here(
        &self,
        spec: &CreateTopicSpec,
        validate_only: bool,
    ) -> Result<Arc<TopicInfo>, ControllerError> {
        let default_partitions = self.config.default_num_partitions;
        let default_rf = self.config.default_replication_factor;
        let result = self.commit(|image| {
            topic_name::validate(&spec.name).map_err(ControllerError::InvalidTopic)?;
            if image.topic(&spec.name).is_some() {
                return Err(ControllerError::TopicAlreadyExists(spec.name.clone()));
            }
            if let Some(existing) = image
                .topics()
                .find(|t| topic_name::collides(&t.name, &spec.name))
            {
                return Err(ControllerError::InvalidTopic(format!(
                    "Topic '{}' collides with existing topic: {}",
                    spec.name, existing.name
                )));
            }
            let assignment = plan_assignment(image, spec, default_partitions, default_rf)?;
            let topic_id = Uuid::new_v4();
            let mut records = vec![MetadataRecord::Topic {
                name: spec.name.clone(),
                topic_id,
            }];
            for (key, value) in &spec.configs {
                records.push(MetadataRecord::TopicConfig {
                    topic_id,
                    key: key.clone(),
                    value: Some(value.clone()),
                });
            }
            for (partition, replicas) in assignment.into_iter().enumerate() {
                records.push(partition_record(topic_id, partition as i32, replicas));
            }
            let mut preview = image.clone();
            for r in &records {
                preview.replay(r)?;
            }
            let topic = preview
                .topic(&spec.name)
                .cloned()
                .expect("topic was just replayed");
            if validate_only {
                return Ok((vec![], topic));
            }
            Ok((records, topic))
        })?;
        if !validate_only {
            tracing::info!(
                "Created topic {} with topic ID {} and {} partitions",
                result.name,
                ottla_protocol::kafka_uuid::encode_topic_id(result.topic_id),
                result.partitions.len()
            );
        }
        Ok(result)
    }

    /// Delete a topic by id; returns what was deleted.
    pub fn delete_topic(&self, topic_id: Uuid) -> Result<Arc<TopicInfo>, ControllerError> {
        let before = self.image().topic_by_id(&topic_id).cloned();
        self.run_change(
            &|| ControllerOp::DeleteTopic { topic_id },
            &|| self.delete_topic_here(topic_id),
            &|_| before.clone().ok_or(ControllerError::UnknownTopicId),
        )
    }

    fn delete_topic_here(&self, topic_id: Uuid) -> Result<Arc<TopicInfo>, ControllerError> {
        let topic = self.commit(|image| {
            let topic = image
                .topic_by_id(&topic_id)
                .cloned()
                .ok_or(ControllerError::UnknownTopicId)?;
            Ok((vec![MetadataRecord::RemoveTopic { topic_id }], topic))
        })?;
        tracing::info!(
            "Deleted topic {} with topic ID {}",
            topic.name,
            ottla_protocol::kafka_uuid::encode_topic_id(topic.topic_id)
        );
        Ok(topic)
    }

    /// Grow a topic to `new_total` partitions (CreatePartitions).
    pub fn create_partitions(
        &self,
        name: &str,
        new_total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<Arc<TopicInfo>, ControllerError> {
        if validate_only {
            return self.create_partitions_here(name, new_total, assignments, true);
        }
        self.run_change(
            &|| ControllerOp::CreatePartitions {
                name: name.to_string(),
                new_total,
                assignments: assignments.clone(),
            },
            &|| self.create_partitions_here(name, new_total, assignments.clone(), false),
            &|_| {
                self.image()
                    .topic(name)
                    .cloned()
                    .ok_or(ControllerError::UnknownTopicOrPartition)
            },
        )
    }

    fn create_partitions_here(
        &self,
        name: &str,
        new_total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<Arc<TopicInfo>, ControllerError> {
        let node_id = self.config.node_id;
        let result = self.commit(|image| {
            let topic = image.topic(name).cloned().ok_or(ControllerError::UnknownTopicOrPartition)?;
            let current = topic.partitions.len() as i32;
            if new_total < current {
                return Err(ControllerError::InvalidPartitions(format!(
                    "Topic currently has {current} partitions, which is higher than the requested {new_total}."
                )));
            }
            if new_total == current {
                return Err(ControllerError::InvalidPartitions(format!("Topic already has {current} partitions.")));
            }
            if new_total > MAX_PARTITIONS_PER_TOPIC {
                return Err(ControllerError::InvalidPartitions(format!(
                    "The requested {new_total} partitions exceed the limit of {MAX_PARTITIONS_PER_TOPIC}."
                )));
            }
            let rf = topic.partitions.first().map(|p| p.replicas.len()).unwrap_or(1);
            let added = (new_total - current) as usize;
            let replica_sets: Vec<Vec<i32>> = match assignments {
                Some(a) => {
                    if a.len() != added {
                        return Err(ControllerError::InvalidReplicaAssignment(format!(
                            "Increasing the number of partitions by {added} but {} assignments provided.",
                            a.len()
                        )));
                    }
                    for replicas in &a {
                        check_replicas(image, replicas)?;
                    }
                    a
                }
                None => {
                    let brokers = live_brokers(image, node_id);
                    if rf > brokers.len() {
                        return Err(not_enough_brokers(rf as i16, brokers.len()));
                    }
                    (0..added).map(|i| placement::place(image, &brokers, current as usize + i, rf)).collect()
                }
            };
            let records: Vec<_> = replica_sets
                .into_iter()
                .enumerate()
                .map(|(i, replicas)| partition_record(topic.topic_id, current + i as i32, replicas))
                .collect();
            let mut preview = image.clone();
            for r in &records {
                preview.replay(r)?;
            }
            let updated = preview.topic(name).cloned().expect("topic exists");
            Ok((if validate_only { vec![] } else { records }, updated))
        })?;
        if !validate_only {
            tracing::info!(
                "Increased partition count of {} to {}",
                name,
                result.partitions.len()
            );
        }
        Ok(result)
    }

    /// Reserve `count` producer ids; returns the first. Durable before it returns, so
    /// ids are unique across restarts (Kafka's AllocateProducerIds, in blocks).
    pub fn allocate_producer_ids(&self, count: i64) -> Result<i64, ControllerError> {
        self.run_change(
            &|| ControllerOp::AllocateProducerIds { count },
            &|| self.allocate_producer_ids_here(count),
            &|output| match output {
                ChangeOutput::ProducerIds { start } => Ok(start),
                _ => Err(ControllerError::QuorumUnavailable(
                    "no producer ids in the answer".into(),
                )),
            },
        )
    }

    fn allocate_producer_ids_here(&self, count: i64) -> Result<i64, ControllerError> {
        assert!(count > 0, "allocate at least one producer id");
        self.commit(|image| {
            let start = image.next_producer_id;
            Ok((
                vec![MetadataRecord::ProducerIds {
                    next_producer_id: start + count,
                }],
                start,
            ))
        })
    }
}

impl Controller {
    /// AlterPartition: commit the ISRs partition leaders propose, in one metadata
    /// write (see [`replication::alter_partition`] for the rules). A refused proposal
    /// is logged and left out; once the write is committed and published here, each
    /// proposal is either applied by the publisher or was refused, and the leader
    /// forgets whatever is still pending.
    pub fn alter_partitions(&self, specs: &[AlterPartitionSpec]) -> Result<(), ControllerError> {
        self.run_change(
            &|| ControllerOp::AlterPartitions {
                specs: specs.to_vec(),
            },
            &|| self.alter_partitions_here(specs),
            &|_| Ok(()),
        )
    }

    fn alter_partitions_here(&self, specs: &[AlterPartitionSpec]) -> Result<(), ControllerError> {
        let node_id = self.config.node_id;
        self.commit(|image| {
            let mut records = Vec::with_capacity(specs.len());
            for spec in specs {
                match replication::alter_partition(image, spec) {
                    Ok(record) => records.push(record),
                    Err(e) => tracing::info!(
                        "[QuorumController id={node_id}] Rejecting AlterPartition request from node {} for partition {} of topic {}: {e} (error code {})",
                        spec.leader_id,
                        spec.partition,
                        spec.topic_id,
                        e.kafka_error_code()
                    ),
                }
            }
            Ok((records, ()))
        })
    }
}

fn partition_record(topic_id: Uuid, partition: i32, replicas: Vec<i32>) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id,
        partition,
        isr: replicas.clone(),
        leader: replicas[0],
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
        adding_replicas: vec![],
        removing_replicas: vec![],
    }
}

fn live_brokers(image: &MetadataImage, self_id: i32) -> Vec<i32> {
    let mut brokers: Vec<i32> = image.live_brokers();
    if brokers.is_empty() {
        brokers.push(self_id);
    }
    brokers
}

fn not_enough_brokers(rf: i16, available: usize) -> ControllerError {
    ControllerError::InvalidReplicationFactor(format!(
        "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {available} broker(s) are registered."
    ))
}

pub(crate) fn check_replicas(
    image: &MetadataImage,
    replicas: &[i32],
) -> Result<(), ControllerError> {
    if replicas.is_empty() {
        return Err(ControllerError::InvalidReplicaAssignment(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    let mut seen = replicas.to_vec();
    seen.sort();
    seen.dedup();
    if seen.len() != replicas.len() {
        return Err(ControllerError::InvalidReplicaAssignment(
            "The manual partition assignment includes the broker more than once.".into(),
        ));
    }
    for r in replicas {
        if !image.brokers.contains_key(r) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes broker {r}, but no such broker is registered."
            )));
        }
    }
    Ok(())
}

fn plan_assignment(
    image: &MetadataImage,
    spec: &CreateTopicSpec,
    default_partitions: i32,
    default_rf: i16,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    if !spec.assignments.is_empty() {
        if spec.num_partitions != -1 || spec.replication_factor != -1 {
            return Err(ControllerError::InvalidRequest(
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        let mut out = Vec::with_capacity(spec.assignments.len());
        for (expected, (partition, replicas)) in spec.assignments.iter().enumerate() {
            if *partition != expected as i32 {
                return Err(ControllerError::InvalidReplicaAssignment(
                    "Partitions should be 0-based and consecutive.".into(),
                ));
            }
            check_replicas(image, replicas)?;
            out.push(replicas.clone());
        }
        return Ok(out);
    }
    let partitions = if spec.num_partitions == -1 {
        default_partitions
    } else {
        spec.num_partitions
    };
    if partitions <= 0 {
        return Err(ControllerError::InvalidPartitions(
            "Number of partitions was set to an invalid non-positive value.".into(),
        ));
    }
    if partitions > MAX_PARTITIONS_PER_TOPIC {
        return Err(ControllerError::InvalidPartitions(format!(
            "Number of partitions {partitions} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC}."
        )));
    }
    let rf = if spec.replication_factor == -1 {
        default_rf
    } else {
        spec.replication_factor
    };
    if rf <= 0 {
        return Err(ControllerError::InvalidReplicationFactor(
            "Replication factor must be larger than 0, or -1 to use the default value.".into(),
        ));
    }
    // New replicas go to live brokers only (a fenced broker would leave them offline).
    let brokers: Vec<i32> = image.live_brokers();
    if rf as usize > brokers.len() {
        return Err(not_enough_brokers(rf, brokers.len()));
    }
    Ok((0..partitions as usize)
        .map(|p| placement::place(image, &brokers, p, rf as usize))
        .collect())
}

/// The local controller as the CONTROLLER listener reaches it (weakly: the listener must
/// not keep a shut-down controller alive).
struct LocalController(std::sync::Weak<Controller>);

impl rpc::ForwardTarget for LocalController {
    fn execute(&self, op: ControllerOp) -> ControllerOpResult {
        match self.0.upgrade() {
            Some(controller) => controller.execute_forwarded(op),
            None => ControllerOpResult::Failed {
                code: ControllerError::NotActive.kafka_error_code(),
                message: "the controller is shutting down".into(),
            },
        }
    }

    fn describe(&self) -> Option<QuorumDescription> {
        self.0.upgrade()?.describe_quorum_forwarded()
    }

    fn feed(&self) -> Option<Arc<feed::MetadataFeed>> {
        match &self.0.upgrade()?.backend {
            Backend::Raft(b) => Some(b.feed.clone()),
            _ => None,
        }
    }

    fn leader(&self) -> Option<u64> {
        self.0.upgrade()?.active_controller().map(|id| id as u64)
    }
}

/// Log each change of the quorum's leader or epoch in KRaft's words, for operators
/// who grep for them; ends when the Raft node stops.
async fn log_transitions(raft: MetadataRaft, node_id: i32) {
    let mut metrics = raft.metrics();
    let mut seen: Option<(u64, Option<u64>)> = None;
    loop {
        let (term, leader) = {
            let m = metrics.borrow_and_update();
            (m.current_term, m.current_leader)
        };
        if seen != Some((term, leader)) {
            seen = Some((term, leader));
            match leader {
                Some(l) if l == node_id as u64 => tracing::info!(
                    "[RaftManager id={node_id}] Completed transition to Leader(localId={node_id}, epoch={term})"
                ),
                Some(l) => tracing::info!(
                    "[RaftManager id={node_id}] Completed transition to Follower(leaderId={l}, epoch={term})"
                ),
                None => tracing::info!(
                    "[RaftManager id={node_id}] Completed transition to Unattached(epoch={term}): no leader"
                ),
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Pauses this node's elections after a failed campaign, as KRaft backs off (see
/// [`campaign`]): openraft alone can leave two survivors tied forever.
pub(crate) async fn back_off_failed_campaigns(
    raft: MetadataRaft,
    node_id: i32,
    election_timeout_max: std::time::Duration,
) {
    let mut metrics = raft.metrics();
    let mut backoff = campaign::Backoff::default();
    loop {
        let (state, term, leader) = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_term, m.current_leader)
        };
        if let Some(failed) = backoff.observe(state, term, leader) {
            let pause = campaign::Backoff::pause(election_timeout_max, rand::random::<f64>());
            tracing::info!(
                "[RaftManager id={node_id}] Election in epoch {failed} did not elect a leader. \
                 We will backoff {} ms before retrying election again",
                pause.as_millis()
            );
            raft.runtime_config().elect(false);
            // The pause ends early once a leader is known: then there is nothing to tie.
            let sleep = tokio::time::sleep(pause);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    changed = metrics.changed() => {
                        if changed.is_err() || metrics.borrow().current_leader.is_some() {
                            break;
                        }
                    }
                }
            }
            raft.runtime_config().elect(true);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A Kafka-style cluster id: a random UUID in Kafka's base64 form (22 characters),
/// never starting with '-' (Kafka's `Uuid.randomUuid` avoids those too).
fn new_cluster_id() -> String {
    loop {
        let id = ottla_protocol::kafka_uuid::encode_topic_id(Uuid::new_v4());
        if !id.starts_with('-') {
            return id;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An embedded controller (node 1) with broker 1 registered.
    pub(crate) fn controller(dir: &std::path::Path) -> Arc<Controller> {
        let c = Controller::open(ControllerConfig {
            node_id: 1,
            metadata_dir: dir.to_path_buf(),
            default_num_partitions: 1,
            default_replication_factor: 1,
            cluster_id: None,
            quorum: None,
        })
        .unwrap();
        c.register_broker(BrokerInfo {
            node_id: 1,
            host: "localhost".into(),
            port: 9092,
            rack: None,
            listeners: Vec::new(),
        })
        .unwrap();
        c
    }

    fn spec(name: &str, partitions: i32) -> CreateTopicSpec {
        CreateTopicSpec {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: -1,
            ..Default::default()
        }
    }

    #[test]
    fn topics_survive_reopen_with_configs_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (id, cluster) = {
            let c = controller(dir.path());
            let mut s = spec("orders", 3);
            s.configs.insert("retention.ms".into(), "1000".into());
            let t = c.create_topic(&s, false).unwrap();
            c.create_partitions("orders", 5, None, false).unwrap();
            (t.topic_id, c.image().cluster_id.clone().unwrap())
        };
        let c = controller(dir.path());
        let image = c.image();
        assert_eq!(image.cluster_id.as_deref(), Some(cluster.as_str()));
        assert_eq!(cluster.len(), 22);
        let t = image.topic("orders").unwrap();
        assert_eq!(t.topic_id, id);
        assert_eq!(t.partitions.len(), 5);
        assert_eq!(
            t.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
    }

    #[test]
    fn create_errors_have_kafka_codes() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        c.create_topic(&spec("a.b", 1), false).unwrap();
        let code = |s: CreateTopicSpec| c.create_topic(&s, false).unwrap_err().kafka_error_code();
        assert_eq!(code(spec("a.b", 1)), 36);
        assert_eq!(code(spec("a_b", 1)), 17, "collision");
        assert_eq!(code(spec("bad name!", 1)), 17);
        assert_eq!(code(spec("p", 0)), 37);
        let mut rf = spec("r", 1);
        rf.replication_factor = 3;
        assert_eq!(code(rf), 38);
        assert_eq!(
            c.create_partitions("a.b", 1, None, false)
                .unwrap_err()
                .kafka_error_code(),
            37
        );
        assert_eq!(
            c.create_partitions("nope", 2, None, false)
                .unwrap_err()
                .kafka_error_code(),
            3
        );
    }

    #[test]
    fn producer_id_blocks_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = controller(dir.path()).allocate_producer_ids(1000).unwrap();
        let second = controller(dir.path()).allocate_producer_ids(1000).unwrap();
        assert_eq!(first, 0);
        assert_eq!(second, 1000);
    }

    #[test]
    fn validate_only_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        let before = c.image().offset;
        let t = c.create_topic(&spec("v", 4), true).unwrap();
        assert_eq!(t.partitions.len(), 4);
        assert!(c.image().topic("v").is_none());
        assert_eq!(c.image().offset, before);
    }

    #[test]
    fn delete_then_recreate_gets_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        let t1 = c.create_topic(&spec("x", 1), false).unwrap();
        c.delete_topic(t1.topic_id).unwrap();
        assert_eq!(
            c.delete_topic(t1.topic_id).unwrap_err().kafka_error_code(),
            100
        );
        let t2 = c.create_topic(&spec("x", 2), false).unwrap();
        assert_ne!(t1.topic_id, t2.topic_id);
        assert_eq!(c.image().topic("x").unwrap().partitions.len(), 2);
    }
}
