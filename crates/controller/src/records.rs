//! Metadata records: the only way cluster metadata changes.
//!
//! The controller validates a request against the current [`crate::MetadataImage`],
//! emits records, makes them durable in the metadata log, then replays them into the
//! image. Restart replays the log from the start. This mirrors KRaft's record types
//! (`TopicRecord`, `PartitionRecord`, `ConfigRecord`, `RemoveTopicRecord`,
//! `RegisterBrokerRecord`), so replicating the log through Raft later changes the
//! transport, not the model.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// First record of a new cluster.
    ClusterId {
        cluster_id: String,
    },
    RegisterBroker {
        node_id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
    },
    /// Every advertised listener of a broker registered just before (KRaft keeps them
    /// in `RegisterBrokerRecord.endPoints`; a record of its own keeps the older
    /// `RegisterBroker` readable as it is).
    BrokerListeners {
        node_id: i32,
        listeners: Vec<crate::image::BrokerEndpoint>,
    },
    /// The broker's session expired, or it is shutting down: it leads nothing and is in
    /// no ISR until it is unfenced (KRaft's `FenceBrokerRecord`).
    FenceBroker {
        node_id: i32,
    },
    /// The broker is back: it may lead and join ISRs again (`UnfenceBrokerRecord`).
    UnfenceBroker {
        node_id: i32,
    },
    Topic {
        name: String,
        topic_id: Uuid,
    },
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        /// Replicas a reassignment adds (KIP-455, KRaft's `addingReplicas`): in
        /// `replicas` but not yet part of the target assignment until they join the ISR.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding_replicas: Vec<i32>,
        /// Replicas a reassignment removes once every target replica is in sync.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing_replicas: Vec<i32>,
    },
    /// A topic-level config set (`value: Some`) or removed (`value: None`).
    TopicConfig {
        topic_id: Uuid,
        key: String,
        value: Option<String>,
    },
    RemoveTopic {
        topic_id: Uuid,
    },
    /// A dynamic broker config set (`value: Some`) or removed: for broker `broker`, or
    /// the cluster-wide default when `None` (KRaft's `ConfigRecord` for a BROKER
    /// resource; an empty resource name is the default).
    BrokerConfig {
        broker: Option<i32>,
        key: String,
        value: Option<String>,
    },
    /// A block of producer ids was handed out; ids below `next_producer_id` are taken
    /// (KRaft's `ProducerIdsRecord`). Producer ids must never repeat, even across
    /// restarts, or a new producer would inherit an old one's sequence numbers.
    ProducerIds {
        next_producer_id: i64,
    },
    /// A user's SCRAM credential for one mechanism, set or replaced (KRaft's
    /// `UserScramCredentialRecord`): the salted keys only, never the password.
    UserScramCredential {
        name: String,
        /// Kafka's mechanism type: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512.
        mechanism: i8,
        salt: Vec<u8>,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        iterations: i32,
    },
    /// A user's SCRAM credential for one mechanism removed
    /// (`RemoveUserScramCredentialRecord`).
    RemoveUserScramCredential {
        name: String,
        mechanism: i8,
    },
    /// An ACL created (KRaft's `AccessControlEntryRecord`), under an id the controller
    /// chose, by which it is removed.
    AccessControlEntry {
        id: uuid::Uuid,
        acl: crate::acls::AclBinding,
    },
    /// An ACL deleted (`RemoveAccessControlEntryRecord`).
    RemoveAccessControlEntry {
        id: uuid::Uuid,
    },
}
