//! CreateTopics (key 19): validate names, counts and configs, then create through the
//! controller and open the new partitions' logs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;
use ottla_controller::CreateTopicSpec;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::config::definitions::TOPIC_CONFIGS;
use crate::config::validate_topic_config;
use crate::security::authorizer::{op, Caller};

/// Longest topic config value accepted. Kafka has no such limit; real values are a few
/// bytes, and every value is stored in the metadata log and replayed at each start.
pub const MAX_TOPIC_CONFIG_VALUE_BYTES: usize = 16 * 1024;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: CreateTopicsRequest = decode(request)?;
    // KafkaApis: CREATE on the cluster, else on each topic.
    let on_cluster = caller.allowed_on_cluster(op::CREATE);
    let version = request.version();
    let mut name_counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *name_counts.entry(t.name.as_str().to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.as_str().to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let error = |code: i16, message: String| -> (i16, Option<String>) { (code, Some(message)) };
        let outcome: Result<_, (i16, Option<String>)> = (|| {
            if name_counts.get(&name).copied().unwrap_or(0) > 1 {
                return Err(error(
                    ResponseError::InvalidRequest.code(),
                    format!("Found multiple entries for topic {name}."),
                ));
            }
            if !on_cluster && !caller.allowed_on_topic(op::CREATE, &name) {
                return Err(error(
                    ResponseError::TopicAuthorizationFailed.code(),
                    "Authorization failed.".to_string(),
                ));
            }
            if ottla_controller::is_internal_topic(&name) {
                return Err(error(
                    ResponseError::InvalidRequest.code(),
                    format!("Topic {name} is reserved for the broker's internal use"),
                ));
            }
            let mut configs = BTreeMap::new();
            for c in &topic.configs {
                let key = c.name.as_str().to_string();
                let Some(value) = c.value.as_ref().map(|v| v.as_str().to_string()) else {
                    return Err(error(
                        ResponseError::InvalidConfig.code(),
                        format!("Null value not supported for topic configs: {key}"),
                    ));
                };
                if value.len() > MAX_TOPIC_CONFIG_VALUE_BYTES {
                    return Err(error(
                        ResponseError::InvalidConfig.code(),
                        format!(
                            "Value of {key} is longer than {MAX_TOPIC_CONFIG_VALUE_BYTES} bytes"
                        ),
                    ));
                }
                validate_topic_config(&key, &value)
                    .map_err(|m| error(ResponseError::InvalidConfig.code(), m))?;
                configs.insert(key, value);
            }
            let spec = CreateTopicSpec {
                name: name.clone(),
                num_partitions: topic.num_partitions,
                replication_factor: topic.replication_factor,
                assignments: topic
                    .assignments
                    .iter()
                    .map(|a| {
                        (
                            a.partition_index,
                            a.broker_ids.iter().map(|b| b.0).collect(),
                        )
                    })
                    .collect(),
                configs,
            };
            let created = broker
                .controller
                .create_topic(&spec, req.validate_only)
                .map_err(|e| (e.kafka_error_code(), Some(e.to_string())))?;
            // The metadata publisher opened the partitions before the commit returned.
            if !req.validate_only && !broker.hosts_led_partitions(&created) {
                return Err((
                    ResponseError::KafkaStorageError.code(),
                    Some(format!(
                        "Created topic {name} but could not open its partitions"
                    )),
                ));
            }
            Ok(created)
        })();
        match outcome {
            Ok(topic_info) => {
                if version >= 5 {
                    let image = broker.controller.image();
                    let configs = TOPIC_CONFIGS
                        .iter()
                        .map(|def| {
                            let (value, source) =
                                broker.config.topic_value(def, &topic_info.configs, &image);
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(def.name))
                                .with_value(if def.sensitive {
                                    None
                                } else {
                                    value.map(str_bytes)
                                })
                                .with_config_source(source as i8)
                                .with_is_sensitive(def.sensitive)
                        })
                        .collect();
                    result = result
                        .with_num_partitions(topic_info.partitions.len() as i32)
                        .with_replication_factor(
                            topic_info
                                .partitions
                                .first()
                                .map(|p| p.replicas.len())
                                .unwrap_or(0) as i16,
                        )
                        .with_configs(Some(configs));
                }
                if version >= 7 {
                    result = result.with_topic_id(topic_info.topic_id);
                }
            }
            Err((code, message)) => {
                tracing::info!(
                    "CreateTopics for {name} failed with error {code}: {}",
                    message.as_deref().unwrap_or("")
                );
                result = result.with_error_code(code);
                if version >= 1 {
                    result = result.with_error_message(message.map(str_bytes));
                }
                if version >= 5 {
                    result = result.with_num_partitions(-1).with_replication_factor(-1);
                }
            }
        }
        results.push(result);
    }
    respond(
        request,
        &CreateTopicsResponse::default().with_topics(results),
    )
}
