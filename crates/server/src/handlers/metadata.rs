//! Metadata (key 3): brokers, cluster id, controller, and topics with their partitions.
//!
//! With `auto.create.topics.enable=true` (Kafka's default) and a client that allows it,
//! a requested topic that does not exist is created as Kafka's
//! `AutoTopicCreationManager` does (with the broker defaults; `__consumer_offsets` with
//! the offsets topic's settings); here creation is synchronous, so the new topic is
//! returned at once instead of LEADER_NOT_AVAILABLE on the first try.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use ottla_controller::{CreateTopicSpec, TopicInfo, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use ottla_protocol::frame::Request;
use uuid::Uuid;

use super::describe_cluster::AUTHORIZED_OPERATIONS_OMITTED;
use super::{decode, respond, str_bytes, AdvertisedEndpoint, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, resource, Caller};

/// Topics one Metadata request may auto-create; each costs an fsynced metadata record and
/// directories, so a single request naming a million new topics is answered in rounds
/// (the rest get the retriable LEADER_NOT_AVAILABLE, as while Kafka creates them).
pub const MAX_AUTO_CREATED_TOPICS_PER_REQUEST: usize = 100;

/// Whether answering `request` may create topics (auto-creation on, allowed by the
/// request, and a named topic missing): then it runs on the blocking pool. An
/// undecodable request is answered by [`handle`], which reports it.
pub fn may_create_topics(broker: &Broker, request: &Request) -> bool {
    if !broker.config.auto_create_topics_enable {
        return false;
    }
    let Ok(req) = decode::<MetadataRequest>(request) else {
        return false;
    };
    if request.version() >= 4 && !req.allow_auto_topic_creation {
        return false;
    }
    let image = broker.controller.image();
    req.topics.as_deref().unwrap_or_default().iter().any(|t| {
        t.name
            .as_ref()
            .is_some_and(|n| image.topic(n.as_str()).is_none())
    })
}

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    here: &AdvertisedEndpoint,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: MetadataRequest = decode(request)?;
    // KafkaApis: topics the caller may not DESCRIBE are left out of "all topics" and
    // answered TOPIC_AUTHORIZATION_FAILED when named, existing or not.
    let describable = |name: &str| caller.allowed_on_topic(op::DESCRIBE, name);
    let denied = |name: Option<String>| {
        error_topic(
            request.version(),
            name,
            Uuid::nil(),
            ResponseError::TopicAuthorizationFailed.code(),
        )
    };
    let version = request.version();
    let image = broker.controller.image();
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all_topics = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let allow_auto_create = version < 4 || req.allow_auto_topic_creation;
    let mut created = 0usize;
    let mut topics = Vec::new();
    if all_topics {
        // Leaving a topic out of a listing is not an event: no denial log (Kafka's
        // logIfDenied = false).
        let listable = |name: &str| caller.allowed_quietly(op::DESCRIBE, resource::TOPIC, name);
        for topic in image.topics().filter(|t| listable(&t.name)) {
            topics.push(topic_metadata(version, &image, topic));
        }
    } else {
        // Kafka answers each requested topic once, however often it is listed (it
        // collects them in a set); without this a small request could ask for the same
        // large topic a million times.
        let mut seen_names = std::collections::HashSet::new();
        let mut seen_ids = std::collections::HashSet::new();
        for wanted in req.topics.as_deref().unwrap_or_default() {
            let fresh = if version >= 12 && !wanted.topic_id.is_nil() {
                seen_ids.insert(wanted.topic_id)
            } else {
                seen_names.insert(wanted.name.as_ref().map(|n| n.as_str().to_string()))
            };
            if !fresh {
                continue;
            }
            // As in Kafka, a request that carries a topic id is looked up by id only;
            // the name (Java sends "") is ignored.
            // Lookup by id exists from v12 (Kafka ignores ids in older requests).
            if version >= 12 && !wanted.topic_id.is_nil() {
                match image.topic_by_id(&wanted.topic_id) {
                    Some(topic) if !describable(&topic.name) => topics.push(error_topic(
                        version,
                        None,
                        wanted.topic_id,
                        ResponseError::TopicAuthorizationFailed.code(),
                    )),
                    Some(topic) => topics.push(topic_metadata(version, &image, topic)),
                    None => topics.push(error_topic(
                        version,
                        None,
                        wanted.topic_id,
                        ResponseError::UnknownTopicId.code(),
                    )),
                }
                continue;
            }
            if let Some(name) = wanted.name.as_ref().filter(|n| !describable(n.as_str())) {
                topics.push(denied(Some(name.to_string())));
                continue;
            }
            if let Some(topic) = wanted
                .name
                .as_ref()
                .and_then(|name| image.topic(name.as_str()))
            {
                topics.push(topic_metadata(version, &image, topic));
                continue;
            }
            let Some(name) = wanted.name.as_ref().map(|n| n.as_str().to_string()) else {
                topics.push(error_topic(
                    version,
                    None,
                    wanted.topic_id,
                    ResponseError::UnknownTopicId.code(),
                ));
                continue;
            };
            let may_create =
                caller.allowed_on_cluster(op::CREATE) || caller.allowed_on_topic(op::CREATE, &name);
            if allow_auto_create && broker.config.auto_create_topics_enable && !may_create {
                topics.push(denied(Some(name)));
            } else if allow_auto_create && broker.config.auto_create_topics_enable {
                if created >= MAX_AUTO_CREATED_TOPICS_PER_REQUEST {
                    // Retriable: the client asks again and the rest are created then.
                    topics.push(error_topic(
                        version,
                        Some(name),
                        Uuid::nil(),
                        ResponseError::LeaderNotAvailable.code(),
                    ));
                    continue;
                }
                created += 1;
                match auto_create(broker, &name) {
                    Ok(topic) => topics.push(topic_metadata(version, &image, &topic)),
                    Err(code) => topics.push(error_topic(version, Some(name), Uuid::nil(), code)),
                }
            } else {
                let code = match ottla_controller::topic_name::validate(&name) {
                    Ok(()) => ResponseError::UnknownTopicOrPartition.code(),
                    Err(_) => ResponseError::InvalidTopicException.code(),
                };
                topics.push(error_topic(version, Some(name), Uuid::nil(), code));
            }
        }
    }
    // Fenced brokers are left out, as Kafka lists alive brokers only.
    let brokers = image
        .brokers
        .values()
        .filter(|b| !image.fenced_brokers.contains(&b.node_id))
        .filter_map(|b| {
            let (host, port) = here.host_port(b)?;
            let mut m = MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(host))
                .with_port(port);
            if version >= 1 {
                m = m.with_rack(b.rack.clone().map(str_bytes));
            }
            Some(m)
        })
        .collect();
    // KIP-430: what the caller may do with each topic it may see (not with the ones it
    // was refused or whose id is unknown), and with the cluster, when asked.
    if version >= 8 && req.include_topic_authorized_operations {
        let refused = [
            ResponseError::TopicAuthorizationFailed.code(),
            ResponseError::UnknownTopicId.code(),
        ];
        for t in topics
            .iter_mut()
            .filter(|t| !refused.contains(&t.error_code))
        {
            if let Some(name) = &t.name {
                t.topic_authorized_operations =
                    caller.authorized_operations(resource::TOPIC, name.as_str());
            }
        }
    }
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    if version >= 1 {
        // As a KRaft broker does, name a live broker as the "controller": admin clients
        // send it CreateTopics and the like, and any broker forwards those to the
        // active controller. This one is certainly alive.
        response = response.with_controller_id(BrokerId(broker.config.node_id));
    }
    if version >= 2 {
        response = response.with_cluster_id(image.cluster_id.clone().map(str_bytes));
    }
    if (8..=10).contains(&version) {
        response = response.with_cluster_authorized_operations(
            if req.include_cluster_authorized_operations {
                super::describe_cluster::cluster_authorized_operations(caller)
            } else {
                AUTHORIZED_OPERATIONS_OMITTED
            },
        );
    }
    respond(request, &response)
}

/// Create a topic a Metadata request asked for, as Kafka's `AutoTopicCreationManager`
/// does: `__consumer_offsets` and `__transaction_state` with their own settings, any other valid
/// name (`__`-prefixed ones included) with the broker's defaults.
fn auto_create(broker: &Arc<Broker>, name: &str) -> Result<Arc<TopicInfo>, i16> {
    if name == OFFSETS_TOPIC {
        return broker.ensure_offsets_topic().map_err(|e| {
            tracing::error!("Cannot create the offsets topic: {e:#}");
            // Retriable, as while Kafka's controller is still creating it.
            ResponseError::LeaderNotAvailable.code()
        });
    }
    if name == TRANSACTION_STATE_TOPIC {
        return broker.ensure_transaction_state_topic().map_err(|e| {
            tracing::error!("Cannot create the transaction state topic: {e:#}");
            ResponseError::LeaderNotAvailable.code()
        });
    }
    let spec = CreateTopicSpec {
        name: name.to_string(),
        num_partitions: -1,
        replication_factor: -1,
        ..Default::default()
    };
    match broker.controller.create_topic(&spec, false) {
        Ok(topic) => {
            if !broker.hosts_led_partitions(&topic) {
                tracing::error!("Auto-created topic {name} but could not open its partitions");
                return Err(ResponseError::KafkaStorageError.code());
            }
            Ok(topic)
        }
        // A concurrent request created it first: answer with what exists.
        Err(e) if e.is_topic_already_exists() => broker
            .controller
            .image()
            .topic(name)
            .cloned()
            .ok_or(ResponseError::LeaderNotAvailable.code()),
        Err(e) => Err(e.kafka_error_code()),
    }
}

fn error_topic(
    version: i16,
    name: Option<String>,
    topic_id: Uuid,
    code: i16,
) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(str_bytes(n))));
    if version >= 10 {
        t = t.with_topic_id(topic_id);
    }
    if version >= 8 {
        t = t.with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    }
    t
}

/// A topic's partitions as Kafka's `KRaftMetadataCache` reports them: a partition
/// without a leader carries LEADER_NOT_AVAILABLE, and replicas on fenced brokers are
/// listed as offline (v5+).
fn topic_metadata(
    version: i16,
    image: &ottla_controller::MetadataImage,
    topic: &TopicInfo,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let mut m = MetadataResponsePartition::default()
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(p.leader))
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect());
            if p.leader < 0 {
                m = m.with_error_code(ResponseError::LeaderNotAvailable.code());
            }
            if version >= 5 {
                m = m.with_offline_replicas(
                    p.replicas
                        .iter()
                        .copied()
                        .filter(|r| !image.is_eligible_replica(*r))
                        .map(BrokerId)
                        .collect(),
                );
            }
            if version >= 7 {
                m = m.with_leader_epoch(p.leader_epoch);
            }
            m
        })
        .collect();
    let mut t = MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_partitions(partitions);
    if version >= 1 {
        t = t.with_is_internal(topic.is_internal());
    }
    if version >= 10 {
        t = t.with_topic_id(topic.topic_id);
    }
    if version >= 8 {
        t = t.with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    }
    t
}
