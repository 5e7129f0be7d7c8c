//! DescribeGroups (v0-5): state, protocol and members (with their assignments) of each group.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::GroupId;

use super::{str_bytes, Response, AUTHORIZED_OPERATIONS_OMITTED};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{frame_response, RequestHeader};
use crate::shard::{LocalFuture, Shard};

pub(super) fn decode(body: &mut Reader) -> Result<Vec<String>, DecodeError> {
    let count = body.array(2)?;
    (0..count).map(|_| body.string()).collect()
}

type Member = (String, Option<String>, String, String, Bytes, Bytes);
type Description = Option<(&'static str, String, String, Vec<Member>)>;

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let wanted = decode(&mut body)?;
    let mut described = Vec::with_capacity(wanted.len());
    for group_id in wanted {
        let owner = shard.group_owner(&group_id);
        let id = group_id.clone();
        let work = move |s: Rc<Shard>| -> LocalFuture<Description> {
            Box::pin(async move { s.coordinator().describe(&id) })
        };
        let mut group = DescribedGroup::default().with_group_id(GroupId(str_bytes(&group_id)));
        if version >= 3 {
            group.authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
        }
        match shard.on_shard(owner, work).await.flatten() {
            // Kafka describes an unknown group as Dead with no members.
            None => group.group_state = str_bytes("Dead"),
            Some((state, protocol_type, protocol, members)) => {
                group.group_state = str_bytes(state);
                group.protocol_type = str_bytes(&protocol_type);
                group.protocol_data = str_bytes(&protocol);
                group.members = members
                    .into_iter()
                    .map(
                        |(id, instance, client_id, client_host, metadata, assignment)| {
                            let mut member = DescribedGroupMember::default()
                                .with_member_id(str_bytes(&id))
                                .with_client_id(str_bytes(&client_id))
                                .with_client_host(str_bytes(&client_host))
                                .with_member_metadata(metadata)
                                .with_member_assignment(assignment);
                            if version >= 4 {
                                member.group_instance_id = instance.as_deref().map(str_bytes);
                            }
                            member
                        },
                    )
                    .collect();
            }
        }
        described.push(group);
    }
    Ok(Response::framed(frame_response(
        header,
        &DescribeGroupsResponse::default().with_groups(described),
    )))
}
