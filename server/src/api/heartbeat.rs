//! Heartbeat (v0-4): keeps a member's session alive; tells it when a rebalance started.

use std::rc::Rc;

use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;

use super::Response;
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::{LocalFuture, Shard};

/// A Heartbeat request.
pub(super) struct Request {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
}

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    let group = body.string()?;
    let generation = body.i32()?;
    let member_id = body.string()?;
    let instance_id = if version >= 3 {
        body.nullable_string()?
    } else {
        None
    };
    Ok(Request {
        group,
        generation,
        member_id,
        instance_id,
    })
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let Request {
        group,
        generation,
        member_id,
        instance_id,
    } = decode(header.api_version, &mut body)?;
    let owner = shard.group_owner(&group);
    let work = move |owner: Rc<Shard>| -> LocalFuture<i16> {
        Box::pin(async move {
            owner
                .coordinator()
                .heartbeat(&group, generation, &member_id, instance_id.as_deref())
        })
    };
    let code = shard
        .on_shard(owner, work)
        .await
        .unwrap_or(error_code::COORDINATOR_NOT_AVAILABLE);
    Ok(Response::framed(frame_response(
        header,
        &HeartbeatResponse::default().with_error_code(code),
    )))
}
