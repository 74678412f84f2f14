//! DeleteTopics (key 20): by name (v1-5) or by name or topic id (v6+).

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;
use uuid::Uuid;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DeleteTopicsRequest = decode(request)?;
    let version = request.version();
    // Normalise both request shapes to (name, id).
    let wanted: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let image = broker.controller.image();
        let by_id = !id.is_nil();
        let found = if by_id {
            image.topic_by_id(&id).cloned()
        } else {
            name.as_ref().and_then(|n| image.topic(n.as_str()).cloned())
        };
        let mut result = DeletableTopicResult::default();
        if version >= 6 {
            result = result.with_topic_id(id);
        }
        result = result.with_name(name.clone());
        // KafkaApis: DELETE on the topic (by name; a topic id resolves first). A topic
        // the caller may not delete is refused whether it exists or not.
        let target = found
            .as_ref()
            .map(|t| t.name.clone())
            .or_else(|| name.as_ref().map(|n| n.to_string()));
        let denied = target
            .as_deref()
            .is_some_and(|t| !caller.allowed_on_topic(op::DELETE, t));
        let outcome = match found {
            _ if !broker.config.delete_topic_enable => Err((
                ResponseError::TopicDeletionDisabled.code(),
                "Topic deletion is disabled.".to_string(),
            )),
            _ if denied => Err((
                ResponseError::TopicAuthorizationFailed.code(),
                "Authorization failed.".to_string(),
            )),
            None if by_id => Err((
                ResponseError::UnknownTopicId.code(),
                "This server does not host this topic ID.".into(),
            )),
            None => Err((
                ResponseError::UnknownTopicOrPartition.code(),
                "This server does not host this topic-partition.".into(),
            )),
            Some(topic) if topic.is_internal() => Err((
                ResponseError::InvalidTopicException.code(),
                format!("Cannot delete internal topic {}", topic.name),
            )),
            Some(topic) => match broker.controller.delete_topic(topic.topic_id) {
                // The metadata publisher deleted the logs.
                Ok(deleted) => {
                    if version >= 6 {
                        result = result
                            .with_topic_id(deleted.topic_id)
                            .with_name(Some(TopicName(str_bytes(deleted.name.clone()))));
                    }
                    Ok(())
                }
                Err(e) => Err((e.kafka_error_code(), e.to_string())),
            },
        };
        if let Err((code, message)) = outcome {
            result = result.with_error_code(code);
            if version >= 5 {
                result = result.with_error_message(Some(str_bytes(message)));
            }
        }
        responses.push(result);
    }
    respond(
        request,
        &DeleteTopicsResponse::default().with_responses(responses),
    )
}
