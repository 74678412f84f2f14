//! Turning an IncrementalAlterConfigs or AlterConfigs resource into the dynamic configs
//! it ends with, checked as Kafka checks them (`ConfigAdminManager`,
//! `ControllerConfigurationValidator`): known keys only (INVALID_CONFIG), values of the
//! right type (INVALID_CONFIG), APPEND and SUBTRACT only on list configs, no key twice
//! (INVALID_REQUEST), broker configs only where Ottla applies them at run time
//! (INVALID_REQUEST for read-only ones), and the topic must exist
//! (UNKNOWN_TOPIC_OR_PARTITION). The controller then commits the result.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use ottla_controller::{ConfigChange, ConfigResource, MetadataImage};

use crate::config::definitions::{broker_config, topic_config, ConfigDef, ConfigType};
use crate::config::{is_dynamic_broker_config, reloadable_ssl_config};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// IncrementalAlterConfigs' `config_operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl ConfigOp {
    pub fn from_wire(op: i8) -> Option<ConfigOp> {
        match op {
            0 => Some(ConfigOp::Set),
            1 => Some(ConfigOp::Delete),
            2 => Some(ConfigOp::Append),
            3 => Some(ConfigOp::Subtract),
            _ => None,
        }
    }
}

/// One requested change of one key.
pub struct KeyChange {
    pub key: String,
    pub op: ConfigOp,
    pub value: Option<String>,
}

/// Finds a key's definition in the topic or the broker table.
type DefLookup = fn(&str) -> Option<&'static ConfigDef>;

/// A refused resource: Kafka's code and message.
pub type Refusal = (i16, String);

fn invalid_request(message: String) -> Refusal {
    (ResponseError::InvalidRequest.code(), message)
}

fn invalid_config(message: String) -> Refusal {
    (ResponseError::InvalidConfig.code(), message)
}

/// A broker config, or a listener's reloadable key store setting
/// (`listener.name.<l>.ssl.keystore.location`), checked as its unprefixed key.
fn broker_or_listener_config(name: &str) -> Option<&'static ConfigDef> {
    broker_config(name).or_else(|| reloadable_ssl_config(name).and_then(broker_config))
}

/// The change `changes` makes to resource (`resource_type`, `name`), asked of broker
/// `this_node`. With `replace_all` (AlterConfigs) every dynamic key not named is
/// removed.
///
/// A BROKER resource is checked as Kafka's receiving broker checks it
/// (`ConfigAdminManager.preprocess`): a named broker must be this one (clients send a
/// broker's configs to that broker), and whatever is refused there, an invalid value
/// included, is INVALID_REQUEST (`DynamicBrokerConfig.validate`'s ConfigException
/// becomes an InvalidRequestException, kept for compatibility by KAFKA-13609). Topic
/// values are checked by the controller: INVALID_CONFIG.
pub fn plan(
    image: &MetadataImage,
    this_node: i32,
    resource_type: i8,
    name: &str,
    changes: &[KeyChange],
    replace_all: bool,
) -> Result<ConfigChange, Refusal> {
    let mut seen = BTreeSet::new();
    if let Some(dup) = changes.iter().find(|c| !seen.insert(c.key.as_str())) {
        return Err(invalid_request(format!(
            "Error due to duplicate config keys: {}",
            dup.key
        )));
    }
    let (resource, current, lookup): (ConfigResource, BTreeMap<String, String>, DefLookup) =
        match resource_type {
            RESOURCE_TOPIC => {
                let topic = image.topic(name).ok_or_else(|| {
                    (
                        ResponseError::UnknownTopicOrPartition.code(),
                        format!("The topic '{name}' does not exist."),
                    )
                })?;
                (
                    ConfigResource::Topic(name.to_string()),
                    topic.configs.clone(),
                    topic_config,
                )
            }
            RESOURCE_BROKER => {
                let broker = if name.is_empty() {
                    None
                } else {
                    let id = name.parse::<i32>().map_err(|_| {
                        invalid_request(format!("Node id must be an integer, but it is: {name}"))
                    })?;
                    if id != this_node {
                        return Err(invalid_request(format!(
                            "Unexpected broker id, expected {this_node}, but received {name}"
                        )));
                    }
                    Some(id)
                };
                let read_only: Vec<&str> = changes
                    .iter()
                    .map(|c| c.key.as_str())
                    .filter(|k| broker_config(k).is_some() && !is_dynamic_broker_config(k))
                    .collect();
                if !read_only.is_empty() {
                    return Err(invalid_request(format!(
                        "Cannot update these configs dynamically: Set({})",
                        read_only.join(", ")
                    )));
                }
                // Kafka's `DynamicBrokerConfig.validateConfigs`, in its order.
                let security: Vec<&str> = changes
                    .iter()
                    .map(|c| c.key.as_str())
                    .filter(|k| reloadable_ssl_config(k).is_some())
                    .collect();
                let unprefixed: Vec<&str> = security
                    .iter()
                    .copied()
                    .filter(|k| !k.starts_with("listener.name."))
                    .collect();
                if !unprefixed.is_empty() {
                    return Err(invalid_request(format!(
                        "These security configs can be dynamically updated only per-listener using the listener prefix: Set({})",
                        unprefixed.join(", ")
                    )));
                }
                if broker.is_none() && !security.is_empty() {
                    return Err(invalid_request(format!(
                        "Cannot update these configs at default cluster level, broker id must be specified: Set({})",
                        security.join(", ")
                    )));
                }
                let current = image
                    .broker_configs
                    .get(&broker)
                    .cloned()
                    .unwrap_or_default();
                (
                    ConfigResource::Broker(broker),
                    current,
                    broker_or_listener_config,
                )
            }
            other => {
                return Err(invalid_request(format!(
                    "Unsupported resource type {other}"
                )));
            }
        };
    let kind = if resource_type == RESOURCE_TOPIC {
        "topic"
    } else {
        "broker"
    };
    let mut values: BTreeMap<String, Option<String>> = BTreeMap::new();
    if replace_all {
        for key in current.keys() {
            values.insert(key.clone(), None);
        }
    }
    for change in changes {
        let def = lookup(&change.key)
            .ok_or_else(|| invalid_config(format!("Unknown {kind} config name: {}", change.key)))?;
        let is_list = def.config_type == ConfigType::List;
        let now = || {
            current
                .get(&change.key)
                .cloned()
                .or_else(|| def.default.map(str::to_string))
                .unwrap_or_default()
        };
        let list = |text: String| -> Vec<String> {
            text.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let value = match change.op {
            ConfigOp::Delete => None,
            ConfigOp::Set => Some(change.value.clone().ok_or_else(|| {
                invalid_request(format!("Null value not supported for : {}", change.key))
            })?),
            ConfigOp::Append | ConfigOp::Subtract if !is_list => {
                let verb = if change.op == ConfigOp::Append {
                    "append"
                } else {
                    "subtract"
                };
                return Err(invalid_config(format!(
                    "Config value {verb} is not allowed for config key: {}",
                    change.key
                )));
            }
            ConfigOp::Append => {
                let mut items = list(now());
                for item in list(change.value.clone().unwrap_or_default()) {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                Some(items.join(","))
            }
            ConfigOp::Subtract => {
                let remove = list(change.value.clone().unwrap_or_default());
                let items: Vec<String> = list(now())
                    .into_iter()
                    .filter(|i| !remove.contains(i))
                    .collect();
                Some(items.join(","))
            }
        };
        if let Some(v) = &value {
            def.validate(v).map_err(|message| {
                if resource_type == RESOURCE_BROKER {
                    invalid_request(message)
                } else {
                    invalid_config(message)
                }
            })?;
        }
        values.insert(change.key.clone(), value);
    }
    Ok(ConfigChange {
        resource,
        values: values.into_iter().collect(),
    })
}

/// Commit the planned changes (all that passed the checks, in one controller write)
/// unless `validate_only`; one outcome per resource, in request order.
pub fn commit(
    broker: &crate::broker::Broker,
    planned: Vec<Result<ConfigChange, Refusal>>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    let accepted: Vec<ConfigChange> = planned
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let committed = if validate_only || accepted.is_empty() {
        Ok(vec![None; accepted.len()])
    } else {
        broker.controller.alter_configs(accepted)
    };
    let mut committed = match committed {
        Ok(results) => results.into_iter(),
        Err(e) => {
            let refusal = (e.kafka_error_code(), e.to_string());
            return planned
                .into_iter()
                .map(|p| p.and(Err(refusal.clone())))
                .collect();
        }
    };
    planned
        .into_iter()
        .map(|p| {
            p?;
            match committed.next().flatten() {
                None => Ok(()),
                Some(refusal) => Err(refusal),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ottla_controller::MetadataRecord;

    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        let id = uuid::Uuid::new_v4();
        for r in [
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
            MetadataRecord::TopicConfig {
                topic_id: id,
                key: "retention.ms".into(),
                value: Some("100".into()),
            },
        ] {
            image.replay(&r).unwrap();
        }
        image
    }

    fn change(key: &str, op: ConfigOp, value: Option<&str>) -> KeyChange {
        KeyChange {
            key: key.into(),
            op,
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn key_stores_are_set_per_broker_and_listener_only() {
        let set = |key: &str| vec![change(key, ConfigOp::Set, Some("/etc/ottla/new.pem"))];
        let key = "listener.name.ssl.ssl.keystore.location";
        let (code, message) = plan(&image(), 1, RESOURCE_BROKER, "", &set(key), false)
            .expect_err("a cluster-wide key store");
        assert_eq!(code, ResponseError::InvalidRequest.code());
        assert_eq!(
            message,
            "Cannot update these configs at default cluster level, broker id must be specified: Set(listener.name.ssl.ssl.keystore.location)"
        );
        let planned = plan(&image(), 1, RESOURCE_BROKER, "1", &set(key), false).unwrap();
        assert_eq!(planned.resource, ConfigResource::Broker(Some(1)));
        assert_eq!(
            planned.values,
            vec![(key.to_string(), Some("/etc/ottla/new.pem".to_string()))]
        );
        for broker in ["", "1"] {
            let (code, message) = plan(
                &image(),
                1,
                RESOURCE_BROKER,
                broker,
                &set("ssl.keystore.location"),
                false,
            )
            .expect_err("without the listener prefix");
            assert_eq!(code, ResponseError::InvalidRequest.code());
            assert_eq!(
                message,
                "These security configs can be dynamically updated only per-listener using the listener prefix: Set(ssl.keystore.location)"
            );
        }
        // Only the reloadable key store settings, on a listener, are dynamic.
        let (code, _) = plan(
            &image(),
            1,
            RESOURCE_BROKER,
            "1",
            &set("listener.name.ssl.ssl.client.auth"),
            false,
        )
        .expect_err("not reloadable");
        assert_ne!(code, 0);
    }

    #[test]
    fn incremental_changes_become_final_values_with_kafkas_errors() {
        let image = image();
        let planned = plan(
            &image,
            1,
            RESOURCE_TOPIC,
            "t",
            &[change("cleanup.policy", ConfigOp::Append, Some("compact"))],
            false,
        )
        .unwrap();
        assert_eq!(
            planned.values,
            vec![("cleanup.policy".into(), Some("delete,compact".into()))],
            "appended to Kafka's default"
        );
        // AlterConfigs replaces: the existing override goes.
        let replaced = plan(
            &image,
            1,
            RESOURCE_TOPIC,
            "t",
            &[change("segment.ms", ConfigOp::Set, Some("5"))],
            true,
        )
        .unwrap();
        assert_eq!(
            replaced.values,
            vec![
                ("retention.ms".into(), None),
                ("segment.ms".into(), Some("5".into()))
            ]
        );
        let code = |rt, name: &str, changes: &[KeyChange]| {
            plan(&image, 1, rt, name, changes, false).unwrap_err().0
        };
        let set = |k: &str, v: &str| change(k, ConfigOp::Set, Some(v));
        assert_eq!(
            code(RESOURCE_TOPIC, "t", &[set("nope", "1")]),
            40,
            "INVALID_CONFIG"
        );
        assert_eq!(code(RESOURCE_TOPIC, "t", &[set("retention.ms", "x")]), 40);
        assert_eq!(
            code(
                RESOURCE_TOPIC,
                "t",
                &[change("retention.ms", ConfigOp::Append, Some("1"))]
            ),
            40
        );
        assert_eq!(
            code(
                RESOURCE_TOPIC,
                "t",
                &[set("retention.ms", "1"), set("retention.ms", "2")]
            ),
            42
        );
        assert_eq!(code(RESOURCE_TOPIC, "gone", &[set("retention.ms", "1")]), 3);
        assert_eq!(
            code(RESOURCE_BROKER, "1", &[set("num.io.threads", "4")]),
            42,
            "read-only"
        );
        assert_eq!(code(RESOURCE_BROKER, "x", &[]), 42, "not a broker id");
        // Kafka's receiving broker checks BROKER resources: another broker's id, and a
        // bad value, are INVALID_REQUEST there (a topic's bad value is INVALID_CONFIG).
        let (c, message) = plan(
            &image,
            1,
            RESOURCE_BROKER,
            "2",
            &[set("log.retention.ms", "1")],
            false,
        )
        .unwrap_err();
        assert_eq!(
            (c, message.as_str()),
            (42, "Unexpected broker id, expected 1, but received 2")
        );
        let (c, message) = plan(&image, 1, RESOURCE_BROKER, "x", &[], false).unwrap_err();
        assert_eq!(
            (c, message.as_str()),
            (42, "Node id must be an integer, but it is: x")
        );
        assert_eq!(
            code(RESOURCE_BROKER, "1", &[set("log.retention.ms", "soon")]),
            42
        );
        assert_eq!(
            code(RESOURCE_BROKER, "", &[set("log.retention.ms", "soon")]),
            42
        );
        assert_eq!(code(1, "g", &[]), 42, "unsupported resource type");
        let cluster = plan(
            &image,
            1,
            RESOURCE_BROKER,
            "",
            &[set("leader.replication.throttled.rate", "10")],
            false,
        )
        .unwrap();
        assert_eq!(cluster.resource, ConfigResource::Broker(None));
    }
}
