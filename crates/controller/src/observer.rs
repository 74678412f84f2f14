//! A broker-only node's view of the metadata (`process.roles=broker`, KRaft's
//! *observer*): it is no voter, so it never commits anything itself. It follows the
//! quorum's committed metadata through the voters' [`crate::feed::MetadataFeed`]
//! (fetching, as KRaft brokers fetch `__cluster_metadata`), publishes each change to its
//! publishers in log order exactly as a voter's state machine does, and sends every
//! change it wants (its registration, heartbeats, topic creation on behalf of its
//! clients ...) to the active controller, then waits until it has applied it.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::delta::MetadataDelta;
use crate::feed::MetadataFetch;
use crate::image::MetadataImage;
use crate::rpc::{QuorumClient, QuorumRequest, QuorumResponse};
use crate::{
    liveness, Backend, ChangeOutput, Controller, ControllerConfig, ControllerError, ControllerOp,
    ControllerOpResult, Publishing, QuorumDescription, QuorumSettings,
};

/// How long one fetch may wait at a voter for new metadata.
const FETCH_WAIT_MS: u64 = 500;
/// The pause before asking another voter after one did not answer.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// One exchange with a voter, the long poll included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct ObserverBackend {
    pub(crate) runtime: tokio::runtime::Handle,
    /// (node id, `host:port` of its CONTROLLER listener) of every voter.
    voters: Vec<(u64, String)>,
    /// The active controller, as the last voter that answered knew it.
    leader: Mutex<Option<u64>>,
    /// The log index this node has applied up to.
    applied: watch::Sender<u64>,
    pub(crate) write_timeout: Duration,
    pub(crate) stop: watch::Sender<bool>,
}

impl ObserverBackend {
    fn address_of(&self, id: u64) -> Option<&str> {
        self.voters
            .iter()
            .find(|(v, _)| *v == id)
            .map(|(_, a)| a.as_str())
    }

    pub(crate) fn leader(&self) -> Option<u64> {
        *self.leader.lock()
    }
}

impl Controller {
    /// Open a broker-only node's metadata: start following the voters. The image is
    /// empty until the first fetch answers; writes wait for an active controller.
    pub(crate) fn open_observer(
        config: ControllerConfig,
        quorum: QuorumSettings,
    ) -> Result<Arc<Controller>, ControllerError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            ControllerError::QuorumUnavailable(format!("no async runtime for the observer: {e}"))
        })?;
        let voters = quorum
            .voters
            .iter()
            .map(|(id, host, port)| (*id as u64, format!("{host}:{port}")))
            .collect::<Vec<_>>();
        if voters.is_empty() {
            return Err(ControllerError::QuorumUnavailable(
                "an observer needs controller.quorum.voters".into(),
            ));
        }
        let empty = Arc::new(MetadataImage::default());
        let (stop, stopped) = watch::channel(false);
        let controller = Arc::new(Controller {
            config,
            image: Arc::new(parking_lot::RwLock::new(empty.clone())),
            backend: Backend::Observer(ObserverBackend {
                runtime: runtime.clone(),
                voters,
                leader: Mutex::new(None),
                applied: watch::channel(0).0,
                write_timeout: quorum.write_timeout,
                stop,
            }),
            publishing: Arc::new(Mutex::new(Publishing {
                publishers: Vec::new(),
                last: empty,
            })),
            sessions: liveness::BrokerSessions::default(),
        });
        tracing::info!(
            "[Broker id={}] Following the metadata of controller.quorum.voters as an observer",
            controller.config.node_id
        );
        runtime.spawn(follow(Arc::downgrade(&controller), stopped));
        Ok(controller)
    }

    /// Apply what a voter sent, in log order, publishing each change as the voters'
    /// state machines do; returns the index applied up to.
    fn apply_fetched(&self, o: &ObserverBackend, fetch: MetadataFetch) {
        let mut publishing = self.publishing.lock();
        let mut publish = |delta: &MetadataDelta, next: Arc<MetadataImage>| {
            for publisher in &publishing.publishers {
                publisher.publish(delta, &next);
            }
            publishing.last = next.clone();
            *self.image.write() = next;
        };
        let before = *o.applied.borrow();
        let replaced = fetch.snapshot.is_some();
        if let Some(records) = fetch.snapshot {
            let mut image = MetadataImage::default();
            for (i, record) in records.iter().enumerate() {
                if let Err(e) = image.replay(record) {
                    tracing::error!(
                        "Metadata image from the quorum does not apply at record {i}: {e}"
                    );
                    return;
                }
            }
            let current = self.image();
            tracing::info!(
                "[Broker id={}] Loaded the metadata image at offset {} ({} topics)",
                self.config.node_id,
                fetch.applied_index,
                image.topic_count()
            );
            publish(&MetadataDelta::replaced(&current, &image), Arc::new(image));
        }
        for (index, records) in &fetch.batches {
            let current = self.image();
            let mut next = (*current).clone();
            if let Some(e) = records.iter().find_map(|r| next.replay(r).err()) {
                // The feed contradicts the image: start over from a whole image.
                tracing::error!(
                    "Metadata batch at offset {index} does not apply ({e}); reloading the image"
                );
                o.applied.send_replace(0);
                return;
            }
            publish(
                &MetadataDelta::from_records(&current, records),
                Arc::new(next),
            );
        }
        if replaced || fetch.applied_index > before {
            o.applied.send_replace(fetch.applied_index);
        }
    }

    /// Send `op` to the active controller and wait until this node has applied it.
    pub(crate) fn forward_as_observer(
        &self,
        o: &ObserverBackend,
        op: &ControllerOp,
    ) -> Result<ChangeOutput, ControllerError> {
        let deadline = Instant::now() + o.write_timeout;
        let mut tried = 0usize;
        loop {
            let leader = o.leader();
            let target = leader
                .and_then(|l| o.address_of(l))
                .unwrap_or_else(|| &o.voters[tried % o.voters.len()].1)
                .to_string();
            let left = deadline.saturating_duration_since(Instant::now());
            let mut client = QuorumClient::new(target, self.transport());
            let answer = o
                .runtime
                .block_on(client.call(&QuorumRequest::Forward(op.clone()), left));
            match answer {
                Ok(QuorumResponse::Forward(ControllerOpResult::Done {
                    applied_index,
                    output,
                })) => {
                    if let Some(index) = applied_index {
                        self.wait_applied(o, index, deadline)?;
                    }
                    return Ok(output);
                }
                Ok(QuorumResponse::Forward(ControllerOpResult::Failed { code, message }))
                    if code != ControllerError::NotActive.kafka_error_code() =>
                {
                    return Err(ControllerError::Forwarded { code, message });
                }
                // Not (or no longer) the active controller, or unreachable: ask again.
                _ => {
                    *o.leader.lock() = None;
                    tried += 1;
                }
            }
            if Instant::now() >= deadline {
                return Err(ControllerError::QuorumUnavailable(format!(
                    "no active controller within {:?}",
                    o.write_timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_applied(
        &self,
        o: &ObserverBackend,
        index: u64,
        deadline: Instant,
    ) -> Result<(), ControllerError> {
        let mut applied = o.applied.subscribe();
        let left = deadline.saturating_duration_since(Instant::now());
        let waited = o.runtime.block_on(tokio::time::timeout(
            left.max(Duration::from_millis(1)),
            applied.wait_for(|a| *a >= index),
        ));
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ControllerError::QuorumUnavailable(format!(
                "the change was committed (offset {index}) but not applied here in time"
            ))),
        }
    }

    /// DescribeQuorum from an observer: asked of the active controller.
    pub(crate) fn describe_quorum_as_observer(
        &self,
        o: &ObserverBackend,
    ) -> Result<QuorumDescription, ControllerError> {
        let deadline = Instant::now() + o.write_timeout;
        let mut tried = 0usize;
        loop {
            let target = o
                .leader()
                .and_then(|l| o.address_of(l))
                .unwrap_or_else(|| &o.voters[tried % o.voters.len()].1)
                .to_string();
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = o.runtime.block_on(
                QuorumClient::new(target, self.transport())
                    .call(&QuorumRequest::DescribeQuorum, left),
            );
            if let Ok(QuorumResponse::DescribeQuorum(Some(d))) = answer {
                return Ok(d);
            }
            tried += 1;
            if Instant::now() >= deadline {
                return Err(ControllerError::QuorumUnavailable(
                    "no active controller to describe the quorum".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The fetch loop: ask the active controller (or, not knowing it, each voter in turn)
/// for what follows the applied index, apply it, repeat. Ends when the controller is
/// dropped or shut down.
async fn follow(controller: Weak<Controller>, mut stop: watch::Receiver<bool>) {
    let mut turn = 0usize;
    let mut clients: std::collections::HashMap<String, QuorumClient> = Default::default();
    loop {
        let (request, target, node_id, transport) = {
            let Some(c) = controller.upgrade() else {
                return;
            };
            let Backend::Observer(o) = &c.backend else {
                return;
            };
            let target = o
                .leader()
                .and_then(|l| o.address_of(l))
                .unwrap_or_else(|| &o.voters[turn % o.voters.len()].1)
                .to_string();
            let request = QuorumRequest::FetchMetadata {
                observer: c.config.node_id,
                after: *o.applied.borrow(),
                max_wait_ms: FETCH_WAIT_MS,
            };
            (request, target, c.config.node_id, c.transport())
        };
        let client = clients
            .entry(target.clone())
            .or_insert_with(|| QuorumClient::new(target.clone(), transport));
        let answer = tokio::select! {
            answer = client.call(&request, FETCH_TIMEOUT) => answer,
            _ = stop.changed() => return,
        };
        let fetched = match answer {
            Ok(QuorumResponse::Metadata(Some(fetch))) => Some(fetch),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!("[Broker id={node_id}] Metadata fetch from {target} failed: {e:?}");
                None
            }
        };
        let Some(fetch) = fetched else {
            if let Some(c) = controller.upgrade() {
                if let Backend::Observer(o) = &c.backend {
                    *o.leader.lock() = None;
                }
            }
            turn += 1;
            tokio::time::sleep(RETRY_BACKOFF).await;
            continue;
        };
        let controller = controller.clone();
        // Publishers do file I/O (a new partition's directory): off the async workers.
        let applied = tokio::task::spawn_blocking(move || {
            let Some(c) = controller.upgrade() else {
                return;
            };
            if let Backend::Observer(o) = &c.backend {
                *o.leader.lock() = fetch.leader;
                c.apply_fetched(o, fetch);
            }
        })
        .await;
        if applied.is_err() {
            return;
        }
    }
}
