//! LeaveGroup (v0-5): members leave at once; the rest of the group rebalances.

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};

use super::{str_bytes, Response};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::{LocalFuture, Shard};

/// A LeaveGroup request: the group and its leaving members as (member id, group instance id);
/// one member, by id, before v3.
pub(super) struct Request {
    pub group: String,
    pub members: Vec<(String, Option<String>)>,
}

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    let group = body.string()?;
    if version < 3 {
        let members = vec![(body.string()?, None)];
        return Ok(Request { group, members });
    }
    let members = body.structs(2, |body| {
        let member = (body.string()?, body.nullable_string()?);
        if version >= 5 {
            let _reason = body.nullable_string()?;
        }
        Ok(member)
    })?;
    Ok(Request { group, members })
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let Request { group, members } = decode(version, &mut body)?;
    let owner = shard.group_owner(&group);
    let asked = members.clone();
    let work = move |owner: Rc<Shard>| -> LocalFuture<Vec<i16>> {
        Box::pin(async move { owner.coordinator().leave(&group, &members) })
    };
    let codes = shard
        .on_shard(owner, work)
        .await
        .unwrap_or_else(|| vec![error_code::COORDINATOR_NOT_AVAILABLE; asked.len()]);
    let mut response = LeaveGroupResponse::default();
    if version >= 3 {
        response.members = asked
            .iter()
            .zip(&codes)
            .map(|((id, instance), code)| {
                MemberResponse::default()
                    .with_member_id(str_bytes(id))
                    .with_group_instance_id(instance.as_deref().map(str_bytes))
                    .with_error_code(*code)
            })
            .collect();
    } else {
        response.error_code = codes.first().copied().unwrap_or(error_code::NONE);
    }
    Ok(Response::framed(frame_response(header, &response)))
}
