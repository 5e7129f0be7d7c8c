//! SyncGroup (v0-5): the leader hands in the assignment; every member waits for its share.

use std::rc::Rc;

use kafka_protocol::messages::sync_group_response::SyncGroupResponse;

use super::{str_bytes, Response};
use crate::group::{SyncRequest, SyncResult};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::{LocalFuture, Shard};

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<SyncRequest, DecodeError> {
    let group = body.string()?;
    let generation = body.i32()?;
    let member_id = body.string()?;
    let instance_id = if version >= 3 {
        body.nullable_string()?
    } else {
        None
    };
    if version >= 5 {
        let _protocol_type = body.nullable_string()?;
        let _protocol_name = body.nullable_string()?;
    }
    let assignments = body.structs(3, |body| Ok((body.string()?, body.bytes_or_empty()?)))?;
    Ok(SyncRequest {
        group,
        generation,
        member_id,
        instance_id,
        assignments,
    })
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let request = decode(version, &mut body)?;
    let owner = shard.group_owner(&request.group);
    let work = move |owner: Rc<Shard>| -> LocalFuture<SyncResult> {
        Box::pin(async move {
            match owner.coordinator().sync(request) {
                Ok(result) => result,
                Err(waiting) => waiting.await.unwrap_or(SyncResult {
                    error_code: error_code::COORDINATOR_NOT_AVAILABLE,
                    ..SyncResult::default()
                }),
            }
        })
    };
    let result = shard.on_shard(owner, work).await.unwrap_or(SyncResult {
        error_code: error_code::COORDINATOR_NOT_AVAILABLE,
        ..SyncResult::default()
    });
    let mut response = SyncGroupResponse::default()
        .with_error_code(result.error_code)
        .with_assignment(result.assignment);
    if version >= 5 {
        response.protocol_type = result.protocol_type.as_deref().map(str_bytes);
        response.protocol_name = result.protocol.as_deref().map(str_bytes);
    }
    Ok(Response::framed(frame_response(header, &response)))
}
