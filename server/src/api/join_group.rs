//! JoinGroup (v0-9): registers the member and waits, on the group's shard, until the join
//! phase of the next generation ends. New members first get a member id (MEMBER_ID_REQUIRED,
//! v4+), as Kafka asks of them.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};

use super::{str_bytes, Response};
use crate::group::{JoinRequest, JoinResult};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::{LocalFuture, Shard};

pub(super) fn decode(
    version: i16,
    body: &mut Reader,
    client_id: &str,
    client_host: &str,
) -> Result<JoinRequest, DecodeError> {
    let group = body.string()?;
    let session_timeout_ms = body.i32()?;
    let rebalance_timeout_ms = if version >= 1 {
        body.i32()?
    } else {
        session_timeout_ms
    };
    let member_id = body.string()?;
    let instance_id = if version >= 5 {
        body.nullable_string()?
    } else {
        None
    };
    let protocol_type = body.string()?;
    let protocols = body.structs(3, |body| Ok((body.string()?, body.bytes_or_empty()?)))?;
    if version >= 8 {
        let _reason = body.nullable_string()?;
    }
    Ok(JoinRequest {
        group,
        member_id,
        instance_id,
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type,
        protocols,
        require_known_member_id: version >= 4,
    })
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
    client_host: &str,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let client_id = header.client_id.clone().unwrap_or_default();
    let request = decode(version, &mut body, &client_id, client_host)?;
    let owner = shard.group_owner(&request.group);
    let member_id = request.member_id.clone();
    let work = move |owner: Rc<Shard>| -> LocalFuture<JoinResult> {
        Box::pin(async move {
            match owner.coordinator().join(request) {
                Ok(result) => result,
                Err(waiting) => waiting.await.unwrap_or_else(|_| JoinResult {
                    error_code: error_code::COORDINATOR_NOT_AVAILABLE,
                    generation: -1,
                    ..JoinResult::default()
                }),
            }
        })
    };
    let result = shard
        .on_shard(owner, work)
        .await
        .unwrap_or_else(|| JoinResult {
            error_code: error_code::COORDINATOR_NOT_AVAILABLE,
            generation: -1,
            member_id,
            ..JoinResult::default()
        });
    let mut response = JoinGroupResponse::default()
        .with_error_code(result.error_code)
        .with_generation_id(result.generation)
        .with_protocol_name(Some(str_bytes(result.protocol.as_deref().unwrap_or(""))))
        .with_leader(str_bytes(&result.leader))
        .with_member_id(str_bytes(&result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(
                    |(id, instance, metadata): (String, Option<String>, Bytes)| {
                        let mut member = JoinGroupResponseMember::default()
                            .with_member_id(str_bytes(&id))
                            .with_metadata(metadata);
                        if version >= 5 {
                            member.group_instance_id = instance.as_deref().map(str_bytes);
                        }
                        member
                    },
                )
                .collect(),
        );
    if version >= 7 {
        response.protocol_type = result.protocol_type.as_deref().map(str_bytes);
        response.protocol_name = result.protocol.as_deref().map(str_bytes);
    }
    Ok(Response::framed(frame_response(header, &response)))
}
