//! CreateTopics (v2-7). A single broker: replication factor must be -1 (default) or 1, and
//! manual assignments may only name broker 0.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::TopicName;

use super::{str_bytes, Response};
use crate::controller::{create_topics, ControllerError, CreateError, NewTopic};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::Shard;

pub(super) struct Requested {
    name: String,
    partitions: i32,
    replication_factor: i16,
    assignments: Vec<Vec<i32>>,
    configs: BTreeMap<String, String>,
}

/// A CreateTopics request.
pub(super) struct Request {
    pub topics: Vec<Requested>,
    pub validate_only: bool,
}

pub(super) fn decode(body: &mut Reader) -> Result<Request, DecodeError> {
    let topics = body.structs(9, |body| {
        let name = body.string()?;
        let partitions = body.i32()?;
        let replication_factor = body.i16()?;
        let assignments = body.structs(8, |body| {
            let _partition_index = body.i32()?;
            let brokers = body.array(4)?;
            (0..brokers)
                .map(|_| body.i32())
                .collect::<Result<Vec<_>, _>>()
        })?;
        let configs = body.structs(3, |body| Ok((body.string()?, body.nullable_string()?)))?;
        let configs = configs
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key, v)))
            .collect();
        Ok(Requested {
            name,
            partitions,
            replication_factor,
            assignments,
            configs,
        })
    })?;
    let _timeout_ms = body.i32()?;
    let validate_only = body.bool()?;
    Ok(Request {
        topics,
        validate_only,
    })
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let Request {
        topics: requested,
        validate_only,
    } = decode(&mut body)?;
    let default_partitions = shard.shared.config.topics.num_partitions;
    let mut results: Vec<CreatableTopicResult> = Vec::with_capacity(requested.len());
    let mut to_create = Vec::new();
    let mut slots = Vec::new();
    for (i, topic) in requested.into_iter().enumerate() {
        let mut result =
            CreatableTopicResult::default().with_name(TopicName(str_bytes(&topic.name)));
        let rejected = if !matches!(topic.replication_factor, -1 | 1) {
            Some((
                error_code::INVALID_REPLICATION_FACTOR,
                format!(
                    "replication factor {} is not possible on a single broker",
                    topic.replication_factor
                ),
            ))
        } else if !topic.assignments.is_empty() && topic.partitions != -1 {
            Some((
                error_code::INVALID_REQUEST,
                "give either a partition count or assignments, not both".into(),
            ))
        } else if topic
            .assignments
            .iter()
            .flatten()
            .any(|&broker| broker != 0)
        {
            Some((
                error_code::INVALID_REPLICATION_FACTOR,
                "assignments may only name broker 0".into(),
            ))
        } else {
            None
        };
        if let Some((code, message)) = rejected {
            result = result
                .with_error_code(code)
                .with_error_message(Some(str_bytes(&message)));
        } else {
            let partitions = match (topic.assignments.len(), topic.partitions) {
                (n, _) if n > 0 => n as i32,
                (_, -1) => default_partitions,
                (_, n) => n,
            };
            to_create.push(NewTopic {
                name: topic.name,
                partitions,
                configs: topic.configs,
            });
            slots.push(i);
        }
        results.push(result);
    }
    let outcomes = if to_create.is_empty() {
        Vec::new()
    } else {
        create_topics(shard, to_create, validate_only).await
    };
    for (slot, outcome) in slots.into_iter().zip(outcomes) {
        let result = &mut results[slot];
        match outcome {
            Ok(topic) => {
                if header.api_version >= 7 {
                    result.topic_id = uuid::Uuid::from_bytes(topic.id);
                }
                if header.api_version >= 5 {
                    result.num_partitions = topic.shards.len() as i32;
                    result.replication_factor = 1;
                }
            }
            Err(err) => {
                let code = match &err {
                    CreateError::Exists => error_code::TOPIC_ALREADY_EXISTS,
                    CreateError::InvalidName(_) => error_code::INVALID_TOPIC_EXCEPTION,
                    CreateError::InvalidPartitions(_) => error_code::INVALID_PARTITIONS,
                    CreateError::InvalidConfig(_) => error_code::INVALID_CONFIG,
                    CreateError::Storage(e) if matches!(e.as_ref(), ControllerError::Quorum(_)) => {
                        error_code::REQUEST_TIMED_OUT
                    }
                    CreateError::Storage(_) => error_code::KAFKA_STORAGE_ERROR,
                    CreateError::Placement(_) => error_code::INVALID_REPLICATION_FACTOR,
                };
                let message = err.to_string();
                result.error_code = code;
                result.error_message = Some(str_bytes(&message));
                result.num_partitions = -1;
                result.replication_factor = -1;
            }
        }
    }
    Ok(Response::framed(frame_response(
        header,
        &CreateTopicsResponse::default().with_topics(results),
    )))
}
