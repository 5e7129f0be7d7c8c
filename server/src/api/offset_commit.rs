//! OffsetCommit (v0-9): checked against the group's generation, written durably to the group's
//! internal offsets log, then acknowledged.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::TopicName;

use super::{str_bytes, Response};
use crate::group::offsets::Committed;
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response_as, RequestHeader};
use crate::shard::{LocalFuture, Shard};

pub(super) struct Request {
    group: String,
    generation: i32,
    member_id: String,
    /// Per topic, the offsets to commit.
    topics: Vec<(String, Vec<PartitionCommit>)>,
}

/// One partition's commit.
pub(super) struct PartitionCommit {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<String>,
}

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    let group = body.string()?;
    let (generation, member_id) = if version >= 1 {
        (body.i32()?, body.string()?)
    } else {
        (-1, String::new())
    };
    if version >= 7 {
        let _instance_id = body.nullable_string()?;
    }
    if (2..=4).contains(&version) {
        let _retention_time_ms = body.i64()?;
    }
    let topics = body.structs(3, |body| {
        let name = body.string()?;
        let partitions = body.structs(14, |body| {
            let index = body.i32()?;
            let offset = body.i64()?;
            let leader_epoch = if version >= 6 { body.i32()? } else { -1 };
            if version == 1 {
                let _commit_timestamp = body.i64()?;
            }
            Ok(PartitionCommit {
                partition: index,
                offset,
                leader_epoch,
                metadata: body.nullable_string()?,
            })
        })?;
        Ok((name, partitions))
    })?;
    Ok(Request {
        group,
        generation,
        member_id,
        topics,
    })
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let request = decode(header.api_version, &mut body)?;
    let owner = shard.group_owner(&request.group);
    let shape: Vec<(String, Vec<i32>)> = request
        .topics
        .iter()
        .map(|(t, ps)| (t.clone(), ps.iter().map(|p| p.partition).collect()))
        .collect();
    let work = move |owner: Rc<Shard>| -> LocalFuture<i16> {
        Box::pin(async move {
            let coordinator = owner.coordinator();
            if let Some(code) =
                coordinator.commit_check(&request.group, request.generation, &request.member_id)
            {
                return code;
            }
            let now = owner.now_ms();
            let entries = request
                .topics
                .into_iter()
                .flat_map(|(topic, partitions)| {
                    partitions.into_iter().map(
                        move |PartitionCommit {
                                  partition,
                                  offset,
                                  leader_epoch,
                                  metadata,
                              }| {
                            (
                                topic.clone(),
                                partition,
                                Committed {
                                    offset,
                                    leader_epoch,
                                    metadata,
                                    commit_timestamp_ms: now,
                                },
                            )
                        },
                    )
                })
                .collect();
            match coordinator.commit(&request.group, entries).await {
                Ok(()) => error_code::NONE,
                Err(code) => code,
            }
        })
    };
    let code = shard
        .on_shard(owner, work)
        .await
        .unwrap_or(error_code::COORDINATOR_NOT_AVAILABLE);
    let topics = shape
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(str_bytes(&topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    // v0 and v1 responses are v2's bytes (throttle time came in v3); the codec knows v2+.
    Ok(Response::framed(frame_response_as(
        header,
        &OffsetCommitResponse::default().with_topics(topics),
        header.api_version.max(2),
    )))
}
