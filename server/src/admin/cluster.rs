//! `ringtail admin cluster status`: DescribeCluster (id, controller, brokers) and Metadata
//! (which broker leads how many partitions, and which partitions have no leader).

use std::collections::BTreeMap;

use kafka_protocol::messages::DescribeClusterRequest;
use serde_json::json;

use super::kafka::{check, Client, Target};
use super::{print_json, print_table, AdminArgs, AdminError};

pub fn status(args: &AdminArgs) -> Result<(), AdminError> {
    let mut client = Client::connect(&args.bootstrap_server)?;
    let cluster = client.send(Target::Bootstrap, 1, |_| DescribeClusterRequest::default())?;
    check(
        cluster.error_code,
        cluster.error_message.as_ref(),
        "describing the cluster",
    )?;
    let metadata = client.metadata(None)?;
    let mut leads: BTreeMap<i32, usize> = BTreeMap::new();
    let mut leaderless = Vec::new();
    let mut partitions = 0;
    for topic in &metadata.topics {
        let name = topic
            .name
            .as_ref()
            .map(|n| n.0.to_string())
            .unwrap_or_default();
        for p in &topic.partitions {
            partitions += 1;
            if p.leader_id.0 < 0 {
                leaderless.push(format!("{name}-{}", p.partition_index));
            } else {
                *leads.entry(p.leader_id.0).or_default() += 1;
            }
        }
    }
    leaderless.sort();
    let mut brokers: Vec<_> = cluster.brokers.iter().collect();
    brokers.sort_by_key(|b| b.broker_id.0);
    let controller = cluster.controller_id.0;
    if args.json {
        let items: Vec<serde_json::Value> = brokers
            .iter()
            .map(|b| {
                json!({
                    "id": b.broker_id.0,
                    "host": b.host.as_str(),
                    "port": b.port,
                    "rack": b.rack.as_ref().map(|r| r.as_str()),
                    "controller": b.broker_id.0 == controller,
                    "leader_partitions": leads.get(&b.broker_id.0).copied().unwrap_or(0),
                })
            })
            .collect();
        print_json(&json!({
            "cluster_id": cluster.cluster_id.as_str(),
            "controller": controller,
            "brokers": items,
            "topics": metadata.topics.len(),
            "partitions": partitions,
            "leaderless_partitions": leaderless,
        }));
        return Ok(());
    }
    say!(
        "cluster {}  controller {}  brokers {}  topics {}  partitions {}",
        cluster.cluster_id.as_str(),
        if controller < 0 {
            "none elected".to_string()
        } else {
            controller.to_string()
        },
        brokers.len(),
        metadata.topics.len(),
        partitions
    );
    let rows: Vec<Vec<String>> = brokers
        .iter()
        .map(|b| {
            vec![
                b.broker_id.0.to_string(),
                format!("{}:{}", b.host.as_str(), b.port),
                b.rack.as_ref().map_or("", |r| r.as_str()).to_string(),
                if b.broker_id.0 == controller {
                    "yes"
                } else {
                    ""
                }
                .to_string(),
                leads.get(&b.broker_id.0).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    print_table(&["broker", "address", "rack", "controller", "leads"], &rows);
    if !leaderless.is_empty() {
        say!(
            "{} partitions without a leader: {}",
            leaderless.len(),
            leaderless.join(" ")
        );
    }
    Ok(())
}
