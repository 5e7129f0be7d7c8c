//! ListGroups (v0-4): the groups of every shard, optionally filtered by state (v4).

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::GroupId;

use super::{str_bytes, Response};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{frame_response, RequestHeader};
use crate::shard::{LocalFuture, Shard};

/// A ListGroups request's filters: empty filters take every group.
pub(super) struct Request {
    pub states: Vec<String>,
    pub types: Vec<String>,
}

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    let strings = |body: &mut Reader| -> Result<Vec<String>, DecodeError> {
        let count = body.array(1)?;
        (0..count).map(|_| body.string()).collect()
    };
    let states = if version >= 4 {
        strings(body)?
    } else {
        Vec::new()
    };
    let types = if version >= 5 {
        strings(body)?
    } else {
        Vec::new()
    };
    Ok(Request { states, types })
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let Request { states, types } = decode(version, &mut body)?;
    let mut groups = Vec::new();
    for owner in shard.shared.shard_ids() {
        let work = |s: Rc<Shard>| -> LocalFuture<Vec<(String, String, &'static str)>> {
            Box::pin(async move { s.coordinator().list() })
        };
        groups.extend(shard.on_shard(owner, work).await.unwrap_or_default());
    }
    groups.sort();
    let listed = groups
        .into_iter()
        .filter(|(_, _, state)| {
            states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state))
        })
        // Every group here is a classic one (KIP-848's group types).
        .filter(|_| types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case("classic")))
        .map(|(id, protocol_type, state)| {
            let mut group = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&id)))
                .with_protocol_type(str_bytes(&protocol_type));
            if version >= 4 {
                group.group_state = str_bytes(state);
            }
            if version >= 5 {
                group.group_type = str_bytes("classic");
            }
            group
        })
        .collect();
    Ok(Response::framed(frame_response(
        header,
        &ListGroupsResponse::default().with_groups(listed),
    )))
}
