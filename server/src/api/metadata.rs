//! Metadata (v0-12): the single broker, and topics with their partitions (all led by node 0).
//! Unknown topics are created when `auto.create.topics.enable` is on and the client allows it.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};

use super::{str_bytes, Response, AUTHORIZED_OPERATIONS_OMITTED};
use crate::controller::{create_topics, CreateError, NewTopic};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::Shard;
use crate::topics::{Topic, TopicId};

pub const CLUSTER_ID: &str = "ringtail-single-node";

pub(super) enum Wanted {
    Name(String),
    Id(TopicId),
}

pub(super) struct Request {
    /// None: all topics.
    topics: Option<Vec<Wanted>>,
    allow_auto_create: bool,
}

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    let count = if version == 0 {
        Some(body.array(2)?)
    } else {
        body.nullable_array(2)?
    };
    let mut wanted = Vec::new();
    for _ in 0..count.unwrap_or(0) {
        if version >= 10 {
            let id = body.uuid()?;
            match body.nullable_string()? {
                Some(name) => wanted.push(Wanted::Name(name)),
                None => wanted.push(Wanted::Id(id)),
            }
        } else {
            wanted.push(Wanted::Name(body.string()?));
        }
        body.tagged_fields()?;
    }
    let allow_auto_create = if version >= 4 { body.bool()? } else { true };
    // The rest (authorized-operations flags, v8+) needs no answer beyond "not provided".
    Ok(Request {
        // In v0 an empty list means every topic (null came in v1 for that).
        topics: count.filter(|&n| !(version == 0 && n == 0)).map(|_| wanted),
        allow_auto_create,
    })
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let Request {
        topics: wanted,
        allow_auto_create,
    } = decode(version, &mut body)?;
    let config = &shard.shared.config;
    let mut topics = Vec::new();
    match wanted {
        None => {
            for topic in shard.registry().topics.values() {
                topics.push(describe(topic, version, super::node_id(shard)));
            }
        }
        Some(wanted) => {
            for want in wanted {
                topics.push(match want {
                    Wanted::Id(id) => match shard.registry().by_id(&id).cloned() {
                        Some(topic) => describe(&topic, version, super::node_id(shard)),
                        None => error_topic(None, Some(id), error_code::UNKNOWN_TOPIC_ID),
                    },
                    Wanted::Name(name) => {
                        let auto = allow_auto_create && config.topics.auto_create_topics_enable;
                        match find_or_create(shard, &name, auto).await {
                            Ok(topic) => describe(&topic, version, super::node_id(shard)),
                            Err(code) => error_topic(Some(&name), None, code),
                        }
                    }
                });
            }
        }
    }
    let brokers = super::brokers(shard)
        .into_iter()
        .map(|(id, host, port)| {
            MetadataResponseBroker::default()
                .with_node_id(id)
                .with_host(str_bytes(&host))
                .with_port(port)
        })
        .collect();
    // Fields are set only for the versions that carry them (the encoder refuses others).
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    if version >= 1 {
        response.controller_id = super::controller_id(shard);
    }
    if version >= 2 {
        response.cluster_id = Some(str_bytes(CLUSTER_ID));
    }
    Ok(Response::framed(frame_response(header, &response)))
}

/// The topic, creating it first if allowed. Errors are Kafka error codes.
pub async fn find_or_create(
    shard: &Rc<Shard>,
    name: &str,
    auto_create: bool,
) -> Result<Arc<Topic>, i16> {
    if let Some(topic) = shard.registry().get(name) {
        return Ok(topic.clone());
    }
    if crate::topics::validate_name(name).is_err() {
        return Err(error_code::INVALID_TOPIC_EXCEPTION);
    }
    if !auto_create {
        return Err(error_code::UNKNOWN_TOPIC_OR_PARTITION);
    }
    let new = NewTopic {
        name: name.to_string(),
        partitions: shard.shared.config.topics.num_partitions,
        configs: Default::default(),
    };
    match create_topics(shard, vec![new], false).await.pop() {
        Some(Ok(topic)) => Ok(topic),
        // Created meanwhile by another request.
        Some(Err(CreateError::Exists)) => shard
            .registry()
            .get(name)
            .cloned()
            .ok_or(error_code::UNKNOWN_TOPIC_OR_PARTITION),
        Some(Err(CreateError::InvalidName(_))) => Err(error_code::INVALID_TOPIC_EXCEPTION),
        // In a cluster: no quorum or no live broker yet; the client retries.
        Some(Err(CreateError::Storage(_) | CreateError::Placement(_))) => {
            Err(error_code::LEADER_NOT_AVAILABLE)
        }
        _ => Err(error_code::UNKNOWN_SERVER_ERROR),
    }
}

fn describe(topic: &Topic, version: i16, node: BrokerId) -> MetadataResponseTopic {
    let partitions = (0..topic.shards.len() as i32)
        .map(|index| {
            let role = topic.roles.as_ref().and_then(|r| r.get(index as usize));
            let ids = |nodes: &[i32]| nodes.iter().map(|&n| BrokerId(n)).collect();
            let (leader, epoch, replicas, isr) = match role {
                Some(role) => (
                    BrokerId(role.leader),
                    role.leader_epoch,
                    ids(&role.replicas),
                    ids(&role.isr),
                ),
                None => (node, 0, vec![node], vec![node]),
            };
            let mut partition = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(leader)
                .with_replica_nodes(replicas)
                .with_isr_nodes(isr);
            if role.is_some_and(|r| r.leader < 0) {
                partition.error_code = error_code::LEADER_NOT_AVAILABLE;
            }
            if version >= 7 {
                partition.leader_epoch = epoch;
            }
            partition
        })
        .collect();
    let mut described = MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    if version >= 1 {
        described.is_internal = topic.is_internal();
    }
    if version >= 10 {
        described.topic_id = uuid::Uuid::from_bytes(topic.id);
    }
    described
}

fn error_topic(name: Option<&str>, id: Option<TopicId>, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(str_bytes(n))))
        // Only v10+ requests name topics by id, so only they get one back.
        .with_topic_id(id.map_or(uuid::Uuid::nil(), uuid::Uuid::from_bytes))
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
