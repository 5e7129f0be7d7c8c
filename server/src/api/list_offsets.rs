//! ListOffsets (v1-7): earliest (-2), latest (-1), max timestamp (-3, v7) and by timestamp.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::TopicName;

use super::errors::read_error_code;
use super::{str_bytes, Response};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::{LocalFuture, Shard, ShardId};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// A ListOffsets request: per topic, (partition, timestamp or LATEST / EARLIEST).
pub(super) struct Request {
    pub topics: Vec<(String, Vec<(i32, i64)>)>,
}

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    let _replica_id = body.i32()?;
    if version >= 2 {
        let _isolation_level = body.i8()?;
    }
    let requests = body.structs(3, |body| {
        let name = body.string()?;
        let partitions = body.structs(12, |body| {
            let index = body.i32()?;
            if version >= 4 {
                let _current_leader_epoch = body.i32()?;
            }
            Ok((index, body.i64()?))
        })?;
        Ok((name, partitions))
    })?;
    Ok(Request { topics: requests })
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let requests = decode(version, &mut body)?.topics;
    let registry = shard.registry();
    let mut topics = Vec::with_capacity(requests.len());
    for (name, partitions) in requests {
        let topic = registry.get(&name).cloned();
        let mut responses = Vec::with_capacity(partitions.len());
        for (index, timestamp) in partitions {
            let owner = topic.as_ref().and_then(|t| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| t.shards.get(i))
                    .copied()
            });
            let refused = topic
                .as_ref()
                .and_then(|t| usize::try_from(index).ok().and_then(|i| t.serves(i).err()));
            let (code, offset, found_timestamp) = match (owner, refused) {
                (None, _) => (error_code::UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
                (Some(_), Some(code)) => (code, -1, -1),
                (Some(owner), None) => lookup(shard, owner, name.clone(), index, timestamp).await,
            };
            let mut response = ListOffsetsPartitionResponse::default()
                .with_partition_index(index)
                .with_error_code(code)
                .with_offset(offset)
                .with_timestamp(found_timestamp);
            if version >= 4 && code == error_code::NONE {
                response.leader_epoch = 0;
            }
            responses.push(response);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(TopicName(str_bytes(&name)))
                .with_partitions(responses),
        );
    }
    Ok(Response::framed(frame_response(
        header,
        &ListOffsetsResponse::default().with_topics(topics),
    )))
}

/// (error code, offset, timestamp) for one partition, computed on its owner.
async fn lookup(
    shard: &Rc<Shard>,
    owner: ShardId,
    topic: String,
    index: i32,
    timestamp: i64,
) -> (i16, i64, i64) {
    let job = move |owner_shard: Rc<Shard>| -> LocalFuture<(i16, i64, i64)> {
        Box::pin(async move {
            let Some(partition) = owner_shard.partition(&topic, index) else {
                return (owner_shard.missing_partition_code(&topic, index), -1, -1);
            };
            let target = match timestamp {
                LATEST => return (error_code::NONE, partition.high_watermark().get(), -1),
                EARLIEST => return (error_code::NONE, partition.log_start_offset().get(), -1),
                MAX_TIMESTAMP => partition.max_timestamp(),
                t if t < 0 => return (error_code::INVALID_REQUEST, -1, -1),
                t => t,
            };
            if target < 0 {
                return (error_code::NONE, -1, -1);
            }
            match partition.offset_for_timestamp(target).await {
                Ok(Some((offset, found_timestamp))) => {
                    (error_code::NONE, offset.get(), found_timestamp)
                }
                Ok(None) => (error_code::NONE, -1, -1),
                Err(err) => (read_error_code(&err), -1, -1),
            }
        })
    };
    shard
        .on_shard(owner, job)
        .await
        .unwrap_or((error_code::KAFKA_STORAGE_ERROR, -1, -1))
}
