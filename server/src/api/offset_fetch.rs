//! OffsetFetch (v0-9): groups' committed offsets (-1 where none), for the partitions asked or for
//! all (a null topic list, v2+). v8+ asks for several groups at once (KIP-709), each answered by
//! its own coordinator shard.

use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, TopicName};

use super::{str_bytes, Response};
use crate::group::offsets::Committed;
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response_as, RequestHeader};
use crate::shard::{LocalFuture, Shard};

/// The topics and partitions asked for; None: every committed offset of the group.
pub(super) type Wanted = Option<Vec<(String, Vec<i32>)>>;

/// An OffsetFetch request: the groups asked for (one before v8), each with what it wants.
pub(super) struct Request {
    pub groups: Vec<(String, Wanted)>,
}

fn decode_topics(version: i16, body: &mut Reader) -> Result<Wanted, DecodeError> {
    let count = if version >= 2 {
        body.nullable_array(3)?
    } else {
        Some(body.array(3)?)
    };
    let Some(count) = count else {
        return Ok(None);
    };
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let name = body.string()?;
        let n = body.array(4)?;
        let partitions = (0..n).map(|_| body.i32()).collect::<Result<Vec<_>, _>>()?;
        body.tagged_fields()?;
        topics.push((name, partitions));
    }
    Ok(Some(topics))
}

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    if version < 8 {
        let group = body.string()?;
        let groups = vec![(group, decode_topics(version, body)?)];
        return Ok(Request { groups });
    }
    let groups = body.structs(3, |body| {
        let group = body.string()?;
        if version >= 9 {
            let _member_id = body.nullable_string()?;
            let _member_epoch = body.i32()?;
        }
        Ok((group, decode_topics(version, body)?))
    })?;
    Ok(Request { groups })
}

type Fetched = Vec<(String, Vec<(i32, Option<Committed>)>)>;

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let groups = decode(version, &mut body)?.groups;
    let mut answers = Vec::with_capacity(groups.len());
    for (group, wanted) in groups {
        let owner = shard.group_owner(&group);
        let id = group.clone();
        let work = move |owner: Rc<Shard>| -> LocalFuture<Fetched> {
            Box::pin(async move { owner.coordinator().fetch_offsets(&id, wanted.as_deref()) })
        };
        answers.push((group, shard.on_shard(owner, work).await));
    }
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        response.groups = answers
            .into_iter()
            .map(|(group, fetched)| group_response(group, fetched))
            .collect();
    } else if let Some((_, fetched)) = answers.pop() {
        match fetched {
            Some(fetched) => response.topics = topics_response(version, fetched),
            None if version >= 2 => response.error_code = error_code::COORDINATOR_NOT_AVAILABLE,
            None => {}
        }
    }
    // A v0 response is v1's bytes (v1 only moved the offsets from ZooKeeper to Kafka).
    Ok(Response::framed(frame_response_as(
        header,
        &response,
        version.max(1),
    )))
}

fn metadata_of(committed: Option<&Committed>) -> kafka_protocol::protocol::StrBytes {
    str_bytes(committed.and_then(|c| c.metadata.as_deref()).unwrap_or(""))
}

fn topics_response(version: i16, fetched: Fetched) -> Vec<OffsetFetchResponseTopic> {
    fetched
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(&topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, committed)| {
                            let mut partition = OffsetFetchResponsePartition::default()
                                .with_partition_index(index)
                                .with_committed_offset(committed.as_ref().map_or(-1, |c| c.offset))
                                .with_metadata(Some(metadata_of(committed.as_ref())));
                            if version >= 5 {
                                partition.committed_leader_epoch =
                                    committed.as_ref().map_or(-1, |c| c.leader_epoch);
                            }
                            partition
                        })
                        .collect(),
                )
        })
        .collect()
}

fn group_response(group: String, fetched: Option<Fetched>) -> OffsetFetchResponseGroup {
    let mut answer = OffsetFetchResponseGroup::default().with_group_id(GroupId(str_bytes(&group)));
    let Some(fetched) = fetched else {
        answer.error_code = error_code::COORDINATOR_NOT_AVAILABLE;
        return answer;
    };
    answer.topics = fetched
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopics::default()
                .with_name(TopicName(str_bytes(&topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, committed)| {
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(index)
                                .with_committed_offset(committed.as_ref().map_or(-1, |c| c.offset))
                                .with_committed_leader_epoch(
                                    committed.as_ref().map_or(-1, |c| c.leader_epoch),
                                )
                                .with_metadata(Some(metadata_of(committed.as_ref())))
                        })
                        .collect(),
                )
        })
        .collect();
    answer
}
