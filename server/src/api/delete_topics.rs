//! DeleteTopics (v1-6): by name, or by topic id (v6).

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::TopicName;

use super::{str_bytes, Response};
use crate::controller::delete_topic;
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::Shard;

/// A topic to delete: by name, or (v6+, name null) by id.
pub(super) struct Doomed {
    pub name: Option<String>,
    pub id: [u8; 16],
}

/// A DeleteTopics request.
pub(super) struct Request {
    pub topics: Vec<Doomed>,
}

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    let topics = if version >= 6 {
        body.structs(18, |body| {
            Ok(Doomed {
                name: body.nullable_string()?,
                id: body.uuid()?,
            })
        })?
    } else {
        let count = body.array(2)?;
        (0..count)
            .map(|_| {
                Ok(Doomed {
                    name: Some(body.string()?),
                    id: [0; 16],
                })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?
    };
    Ok(Request { topics })
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let wanted = decode(version, &mut body)?.topics;
    let mut responses = Vec::with_capacity(wanted.len());
    for Doomed { name, id } in wanted {
        let registry = shard.registry();
        let topic = match &name {
            Some(name) => registry.get(name).cloned(),
            None => registry.by_id(&id).cloned(),
        };
        let mut result = DeletableTopicResult::default()
            .with_name(name.as_deref().map(|n| TopicName(str_bytes(n))));
        if version >= 6 {
            result.topic_id = uuid::Uuid::from_bytes(id);
        }
        match topic {
            None => {
                let code = if name.is_some() {
                    error_code::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    error_code::UNKNOWN_TOPIC_ID
                };
                result.error_code = code;
            }
            Some(topic) if topic.is_internal() => {
                result.name = Some(TopicName(str_bytes(&topic.name)));
                if version >= 6 {
                    result.topic_id = uuid::Uuid::from_bytes(topic.id);
                }
                result.error_code = if version >= 3 {
                    error_code::TOPIC_DELETION_DISABLED
                } else {
                    error_code::INVALID_REQUEST
                };
                if version >= 5 {
                    result.error_message = Some(str_bytes(
                        "__consumer_offsets is internal: it holds the groups' committed offsets",
                    ));
                }
            }
            Some(topic) => {
                result.name = Some(TopicName(str_bytes(&topic.name)));
                if version >= 6 {
                    result.topic_id = uuid::Uuid::from_bytes(topic.id);
                }
                match delete_topic(shard, topic.name.clone()).await {
                    Ok(true) => {}
                    Ok(false) => result.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    Err(err) => {
                        tracing::error!(topic = %topic.name, "DeleteTopics: {err}");
                        result.error_code = error_code::KAFKA_STORAGE_ERROR;
                        if version >= 5 {
                            result.error_message = Some(str_bytes(&err.to_string()));
                        }
                    }
                }
            }
        }
        responses.push(result);
    }
    Ok(Response::framed(frame_response(
        header,
        &DeleteTopicsResponse::default().with_responses(responses),
    )))
}
