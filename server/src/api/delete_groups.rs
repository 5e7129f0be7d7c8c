//! DeleteGroups (v0-2): empty groups only; their committed offsets are deleted durably.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use kafka_protocol::messages::GroupId;

use super::{str_bytes, Response};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::{LocalFuture, Shard};

pub(super) fn decode(body: &mut Reader) -> Result<Vec<String>, DecodeError> {
    let count = body.array(2)?;
    (0..count).map(|_| body.string()).collect()
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let wanted = decode(&mut body)?;
    let mut results = Vec::with_capacity(wanted.len());
    for group_id in wanted {
        let owner = shard.group_owner(&group_id);
        let id = group_id.clone();
        let work = move |s: Rc<Shard>| -> LocalFuture<i16> {
            Box::pin(async move { s.coordinator().delete(&id).await })
        };
        let code = shard
            .on_shard(owner, work)
            .await
            .unwrap_or(error_code::COORDINATOR_NOT_AVAILABLE);
        results.push(
            DeletableGroupResult::default()
                .with_group_id(GroupId(str_bytes(&group_id)))
                .with_error_code(code),
        );
    }
    Ok(Response::framed(frame_response(
        header,
        &DeleteGroupsResponse::default().with_results(results),
    )))
}
