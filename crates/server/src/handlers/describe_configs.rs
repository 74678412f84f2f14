//! DescribeConfigs (key 32): topic and broker configs with Kafka's sources, synonyms,
//! types and documentation.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::config::definitions::{ConfigDef, BROKER_CONFIGS, TOPIC_CONFIGS};
use crate::config::{is_dynamic_broker_config, ConfigSource};
use crate::security::authorizer::{op, Caller};

/// Kafka's `ConfigResource.Type` ids.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

struct Options {
    version: i16,
    include_synonyms: bool,
    include_documentation: bool,
}

fn entry(
    def: &ConfigDef,
    value: Option<String>,
    source: ConfigSource,
    read_only: bool,
    synonyms: Vec<DescribeConfigsSynonym>,
    options: &Options,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(def.name))
        .with_value(if def.sensitive {
            None
        } else {
            value.map(str_bytes)
        })
        .with_read_only(read_only)
        .with_is_sensitive(def.sensitive)
        .with_config_source(source as i8);
    if options.version >= 1 && options.include_synonyms {
        e = e.with_synonyms(synonyms);
    }
    if options.version >= 3 {
        e = e.with_config_type(def.config_type.kafka_id());
        if options.include_documentation {
            e = e.with_documentation(Some(str_bytes(def.documentation)));
        }
    }
    e
}

fn synonym(name: &str, value: Option<String>, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(value.map(str_bytes))
        .with_source(source as i8)
}

fn wanted(keys: &Option<Vec<kafka_protocol::protocol::StrBytes>>, name: &str) -> bool {
    keys.as_ref()
        .is_none_or(|k| k.is_empty() || k.iter().any(|k| k.as_str() == name))
}

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DescribeConfigsRequest = decode(request)?;
    let options = Options {
        version: request.version(),
        include_synonyms: req.include_synonyms,
        include_documentation: req.include_documentation,
    };
    let image = broker.controller.image();
    let mut results = Vec::with_capacity(req.resources.len());
    let mut counts: std::collections::HashMap<(i8, String), usize> =
        std::collections::HashMap::new();
    for r in &req.resources {
        *counts
            .entry((r.resource_type, r.resource_name.to_string()))
            .or_default() += 1;
    }
    for resource in req.resources {
        let name = resource.resource_name.as_str().to_string();
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        if counts
            .get(&(resource.resource_type, name.clone()))
            .copied()
            .unwrap_or(0)
            > 1
        {
            // Each repetition would copy every config (and its documentation) again.
            results.push(
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!(
                        "Duplicate resource {name} in the request"
                    )))),
            );
            continue;
        }
        // KafkaApis: DESCRIBE_CONFIGS on the topic, or on the cluster for brokers.
        let (authorized, refusal) = match resource.resource_type {
            RESOURCE_TOPIC => (
                caller.allowed_on_topic(op::DESCRIBE_CONFIGS, &name),
                ResponseError::TopicAuthorizationFailed,
            ),
            _ => (
                caller.allowed_on_cluster(op::DESCRIBE_CONFIGS),
                ResponseError::ClusterAuthorizationFailed,
            ),
        };
        if !authorized {
            results.push(
                result
                    .with_error_code(refusal.code())
                    .with_error_message(Some(str_bytes("Authorization failed."))),
            );
            continue;
        }
        match resource.resource_type {
            RESOURCE_TOPIC => match image.topic(&name) {
                None => {
                    result = result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(str_bytes(format!(
                            "Topic {name} does not exist"
                        ))));
                }
                Some(topic) => {
                    let configs = TOPIC_CONFIGS
                        .iter()
                        .filter(|def| wanted(&resource.configuration_keys, def.name))
                        .map(|def| {
                            let default = broker.config.topic_default(def, &image);
                            let mut synonyms = Vec::new();
                            let (value, source) = match topic.configs.get(def.name) {
                                Some(v) => {
                                    synonyms.push(synonym(
                                        def.name,
                                        Some(v.clone()),
                                        ConfigSource::DynamicTopic,
                                    ));
                                    (Some(v.clone()), ConfigSource::DynamicTopic)
                                }
                                None => (default.value.clone(), default.source),
                            };
                            if let Some(key) = default.key {
                                let shown = default.raw.clone().or(default.value.clone());
                                synonyms.push(synonym(key, shown, default.source));
                            }
                            entry(def, value, source, false, synonyms, &options)
                        })
                        .collect();
                    result = result.with_configs(configs);
                }
            },
            RESOURCE_BROKER => {
                let default_only = name.is_empty();
                if !default_only && name != broker.config.node_id.to_string() {
                    result = result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(format!("Unexpected broker id, expected {} or empty string, but received {name}", broker.config.node_id))));
                } else {
                    let own = image.broker_configs.get(&Some(broker.config.node_id));
                    let cluster = image.broker_configs.get(&None);
                    let configs = BROKER_CONFIGS
                        .iter()
                        .filter(|def| wanted(&resource.configuration_keys, def.name))
                        .filter_map(|def| {
                            // Kafka's order of precedence, each level a synonym.
                            let mut levels = Vec::new();
                            if !default_only {
                                if let Some(v) = own.and_then(|c| c.get(def.name)) {
                                    levels.push((Some(v.clone()), ConfigSource::DynamicBroker));
                                }
                            }
                            if let Some(v) = cluster.and_then(|c| c.get(def.name)) {
                                levels.push((Some(v.clone()), ConfigSource::DynamicDefaultBroker));
                            }
                            if default_only {
                                // The cluster-wide resource lists only what is set there.
                                levels.first()?;
                            } else if let Some(v) = broker.config.explicit.get(def.name) {
                                levels.push((Some(v.clone()), ConfigSource::StaticBroker));
                            }
                            if levels.is_empty() {
                                levels.push((
                                    broker.config.broker_value(def.name),
                                    ConfigSource::Default,
                                ));
                            }
                            let (value, source) = levels[0].clone();
                            let synonyms = levels
                                .iter()
                                .map(|(v, s)| synonym(def.name, v.clone(), *s))
                                .collect();
                            let read_only = !is_dynamic_broker_config(def.name);
                            Some(entry(def, value, source, read_only, synonyms, &options))
                        })
                        .collect();
                    result = result.with_configs(configs);
                }
            }
            other => {
                result = result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!(
                        "Unsupported resource type {other}"
                    ))));
            }
        }
        results.push(result);
    }
    respond(
        request,
        &DescribeConfigsResponse::default().with_results(results),
    )
}
