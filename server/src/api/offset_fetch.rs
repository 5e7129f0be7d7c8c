//! OffsetFetch (v0-7): a group's committed offsets (-1 where none), for the partitions asked or
//! for all (a null topic list, v2+).

use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::TopicName;

use super::{str_bytes, Response};
use crate::group::offsets::Committed;
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::{LocalFuture, Shard};

pub(super) type Request = (String, Option<Vec<(String, Vec<i32>)>>);

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    let group = body.string()?;
    let count = if version >= 2 {
        body.nullable_array(3)?
    } else {
        Some(body.array(3)?)
    };
    let topics = match count {
        None => None,
        Some(count) => {
            let mut topics = Vec::with_capacity(count);
            for _ in 0..count {
                let name = body.string()?;
                let n = body.array(4)?;
                let partitions = (0..n).map(|_| body.i32()).collect::<Result<Vec<_>, _>>()?;
                body.tagged_fields()?;
                topics.push((name, partitions));
            }
            Some(topics)
        }
    };
    Ok((group, topics))
}

type Fetched = Vec<(String, Vec<(i32, Option<Committed>)>)>;

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let (group, wanted) = decode(version, &mut body)?;
    let owner = shard.group_owner(&group);
    let work = move |owner: Rc<Shard>| -> LocalFuture<Fetched> {
        Box::pin(async move { owner.coordinator().fetch_offsets(&group, wanted.as_deref()) })
    };
    let mut response = OffsetFetchResponse::default();
    match shard.on_shard(owner, work).await {
        Some(fetched) => {
            response.topics = fetched
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
                                        .with_committed_offset(
                                            committed.as_ref().map_or(-1, |c| c.offset),
                                        )
                                        .with_metadata(Some(str_bytes(
                                            committed
                                                .as_ref()
                                                .and_then(|c| c.metadata.as_deref())
                                                .unwrap_or(""),
                                        )));
                                    if version >= 5 {
                                        partition.committed_leader_epoch =
                                            committed.as_ref().map_or(-1, |c| c.leader_epoch);
                                    }
                                    partition
                                })
                                .collect(),
                        )
                })
                .collect();
        }
        None if version >= 2 => response.error_code = error_code::COORDINATOR_NOT_AVAILABLE,
        None => {}
    }
    Ok(Response::framed(frame_response(header, &response)))
}
