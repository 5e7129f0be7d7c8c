//! `ringtail admin group list|describe|lag|delete`, over the Kafka protocol: each group is
//! asked of its coordinator (FindCoordinator), listing asks every broker.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    GroupId, ListGroupsRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::Decodable;
use serde_json::json;

use super::kafka::{check, error_name, s, Client, Target};
use super::{print_json, print_table, AdminArgs, AdminError, GroupCommand};

pub fn run(args: &AdminArgs, command: &GroupCommand) -> Result<(), AdminError> {
    let mut client = Client::connect(&args.bootstrap_server)?;
    match command {
        GroupCommand::List => list(args, &mut client),
        GroupCommand::Describe { group } => describe(args, &mut client, group),
        GroupCommand::Lag { group } => lag(args, &mut client, group),
        GroupCommand::Delete { groups } => delete(args, &mut client, groups),
    }
}

/// The node coordinating `group`, learned as a target.
fn coordinator(client: &mut Client, group: &str) -> Result<i32, AdminError> {
    let response = client.send(Target::Bootstrap, 3, |version| {
        let mut request = FindCoordinatorRequest::default().with_key(s(group));
        if version >= 1 {
            request.key_type = 0; // a consumer group
        }
        request
    })?;
    check(
        response.error_code,
        response.error_message.as_ref(),
        format!("finding the coordinator of group {group}"),
    )?;
    client.learn(response.node_id.0, &response.host, response.port);
    Ok(response.node_id.0)
}

fn list(args: &AdminArgs, client: &mut Client) -> Result<(), AdminError> {
    // (group, state, protocol type, coordinator)
    let mut groups: Vec<(String, String, String, i32)> = Vec::new();
    let mut failures = 0;
    let brokers = client.brokers();
    for (node, _) in &brokers {
        let node = *node;
        let response = client
            .send(Target::Node(node), 4, |_| ListGroupsRequest::default())
            .and_then(|r| {
                check(
                    r.error_code,
                    None,
                    format!("listing groups on broker {node}"),
                )
                .map(|()| r)
            });
        match response {
            Ok(response) => {
                for g in response.groups {
                    groups.push((
                        g.group_id.0.to_string(),
                        g.group_state.to_string(),
                        g.protocol_type.to_string(),
                        node,
                    ));
                }
            }
            Err(e) => {
                eprintln!("ringtail admin: {e}");
                failures += 1;
            }
        }
    }
    groups.sort();
    if args.json {
        let items: Vec<serde_json::Value> = groups
            .iter()
            .map(|(g, state, kind, node)| {
                json!({"group": g, "state": state, "protocol_type": kind, "coordinator": node})
            })
            .collect();
        print_json(&json!({ "groups": items }));
    } else {
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|(g, state, kind, node)| {
                vec![g.clone(), state.clone(), kind.clone(), node.to_string()]
            })
            .collect();
        print_table(&["group", "state", "protocol type", "coordinator"], &rows);
    }
    match failures {
        0 => Ok(()),
        n => Err(AdminError::Usage(format!(
            "{n} of {} brokers could not list their groups: the list above lacks theirs",
            brokers.len()
        ))),
    }
}

/// The partitions of a consumer's assignment (ConsumerProtocolAssignment), "topic-p" each.
fn assigned(assignment: &Bytes) -> Vec<String> {
    let mut bytes = assignment.clone();
    if bytes.remaining() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16().clamp(0, 3);
    let Ok(assignment) = ConsumerProtocolAssignment::decode(&mut bytes, version) else {
        return vec!["(undecodable assignment)".into()];
    };
    let mut out = Vec::new();
    for topic in assignment.assigned_partitions {
        for p in topic.partitions {
            out.push(format!("{}-{p}", topic.topic.0));
        }
    }
    out.sort();
    out
}

fn describe(args: &AdminArgs, client: &mut Client, group: &str) -> Result<(), AdminError> {
    let node = coordinator(client, group)?;
    let response = client.send(Target::Node(node), 5, |_| {
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))])
    })?;
    let described = response
        .groups
        .first()
        .ok_or_else(|| AdminError::Usage("DescribeGroups answered no group".into()))?;
    check(
        described.error_code,
        described.error_message.as_ref(),
        format!("describing group {group}"),
    )?;
    if described.group_state.as_str() == "Dead" {
        return Err(AdminError::Kafka {
            what: format!("describing group {group}"),
            code: 69,
            name: error_name(69),
            message: Some("no such group".into()),
        });
    }
    let consumer = described.protocol_type.as_str() == "consumer";
    let members: Vec<(String, String, String, Vec<String>)> = described
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.client_id.to_string(),
                m.client_host.to_string(),
                if consumer {
                    assigned(&m.member_assignment)
                } else {
                    Vec::new()
                },
            )
        })
        .collect();
    if args.json {
        let items: Vec<serde_json::Value> = members
            .iter()
            .map(|(id, client_id, host, partitions)| {
                json!({"member_id": id, "client_id": client_id, "host": host, "partitions": partitions})
            })
            .collect();
        print_json(&json!({
            "group": group,
            "state": described.group_state.as_str(),
            "protocol_type": described.protocol_type.as_str(),
            "protocol": described.protocol_data.as_str(),
            "coordinator": node,
            "members": items,
        }));
        return Ok(());
    }
    say!(
        "group {group}  state {}  protocol {} {}  coordinator {node}",
        described.group_state.as_str(),
        described.protocol_type.as_str(),
        described.protocol_data.as_str()
    );
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|(id, client_id, host, partitions)| {
            vec![
                id.clone(),
                client_id.clone(),
                host.clone(),
                partitions.join(","),
            ]
        })
        .collect();
    print_table(&["member", "client id", "host", "partitions"], &rows);
    Ok(())
}

fn lag(args: &AdminArgs, client: &mut Client, group: &str) -> Result<(), AdminError> {
    let node = coordinator(client, group)?;
    let response = client.send(Target::Node(node), 7, |_| {
        // Null topics (v2+): every partition the group committed.
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None)
    })?;
    check(
        response.error_code,
        None,
        format!("fetching the offsets of group {group}"),
    )?;
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for topic in &response.topics {
        for p in &topic.partitions {
            check(
                p.error_code,
                None,
                format!("the offset of {}-{}", topic.name.0, p.partition_index),
            )?;
            if p.committed_offset >= 0 {
                committed.insert(
                    (topic.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    let mut topics: Vec<String> = committed.keys().map(|(t, _)| t.clone()).collect();
    topics.dedup();
    let ends = if topics.is_empty() {
        BTreeMap::new()
    } else {
        let metadata = client.metadata(Some(topics))?;
        client.offsets_at(&metadata.topics.iter().collect::<Vec<_>>(), -1)
    };
    // (topic, partition, committed, log end, lag)
    type Row = (String, i32, i64, Option<i64>, Option<i64>);
    let rows: Vec<Row> = committed
        .iter()
        .map(|((topic, p), &offset)| {
            let end = ends.get(&(topic.clone(), *p)).copied();
            (
                topic.clone(),
                *p,
                offset,
                end,
                end.map(|e| (e - offset).max(0)),
            )
        })
        .collect();
    let total: i64 = rows.iter().filter_map(|r| r.4).sum();
    if args.json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(t, p, c, e, l)| {
                json!({"topic": t, "partition": p, "committed_offset": c, "log_end_offset": e, "lag": l})
            })
            .collect();
        print_json(&json!({"group": group, "partitions": items, "total_lag": total}));
        return Ok(());
    }
    if rows.is_empty() {
        say!("group {group} has no committed offsets");
        return Ok(());
    }
    let text = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(t, p, c, e, l)| vec![t.clone(), p.to_string(), c.to_string(), text(*e), text(*l)])
        .collect();
    print_table(
        &["topic", "partition", "committed", "log end", "lag"],
        &table,
    );
    say!("total lag {total}");
    Ok(())
}

fn delete(args: &AdminArgs, client: &mut Client, groups: &[String]) -> Result<(), AdminError> {
    let mut deleted = Vec::new();
    let mut failures = 0;
    for group in groups {
        let outcome = coordinator(client, group).and_then(|node| {
            let response = client.send(Target::Node(node), 2, |_| {
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))])
            })?;
            match response.results.first() {
                Some(r) => check(r.error_code, None, format!("deleting group {group}")),
                None => Err(AdminError::Usage("DeleteGroups answered no group".into())),
            }
        });
        match outcome {
            Ok(()) => deleted.push(group.clone()),
            Err(e) => {
                eprintln!("ringtail admin: {e}");
                failures += 1;
            }
        }
    }
    if args.json {
        print_json(&json!({ "deleted": deleted }));
    } else {
        for group in &deleted {
            say!("deleted group {group}");
        }
    }
    match failures {
        0 => Ok(()),
        n => Err(AdminError::Usage(format!(
            "{n} of {} groups not deleted",
            groups.len()
        ))),
    }
}
