//! `ringtail admin topic create|list|describe|delete|alter-config`, over the Kafka protocol.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use serde_json::json;

use super::kafka::{check, s, topic_name, Client, Target};
use super::{key_value, print_json, print_table, AdminArgs, AdminError, TopicCommand};

const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs' source of a config the topic sets itself.
const SOURCE_TOPIC: i8 = 1;
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

pub fn run(args: &AdminArgs, command: &TopicCommand) -> Result<(), AdminError> {
    let mut client = Client::connect(&args.bootstrap_server)?;
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => create(
            args,
            &mut client,
            name,
            *partitions,
            *replication_factor,
            configs,
        ),
        TopicCommand::List => list(args, &mut client),
        TopicCommand::Describe { names } => describe(args, &mut client, names),
        TopicCommand::Delete { names } => delete(args, &mut client, names),
        TopicCommand::AlterConfig { name, set, delete } => {
            alter_config(args, &mut client, name, set, delete)
        }
    }
}

fn create(
    args: &AdminArgs,
    client: &mut Client,
    name: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[String],
) -> Result<(), AdminError> {
    let configs = configs
        .iter()
        .map(|c| key_value(c, "--config"))
        .collect::<Result<Vec<_>, _>>()?;
    let topic = CreatableTopic::default()
        .with_name(TopicName(s(name)))
        .with_num_partitions(partitions.unwrap_or(-1))
        .with_replication_factor(replication_factor.unwrap_or(-1))
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(s(k))
                        .with_value(Some(s(v)))
                })
                .collect(),
        );
    let response = client.send(Target::Bootstrap, 7, |version| {
        let mut topic = topic;
        if version < 4 {
            // -1 (the broker's default) arrived in v4; before it, Kafka's own defaults.
            if topic.num_partitions < 0 {
                topic.num_partitions = 1;
            }
            if topic.replication_factor < 0 {
                topic.replication_factor = 1;
            }
        }
        CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(30_000)
    })?;
    let result = response
        .topics
        .first()
        .ok_or_else(|| AdminError::Usage("CreateTopics answered no topic".into()))?;
    check(
        result.error_code,
        result.error_message.as_ref(),
        format!("creating topic {name}"),
    )?;
    if args.json {
        print_json(&json!({
            "topic": name,
            "partitions": result.num_partitions,
            "replication_factor": result.replication_factor,
            "topic_id": result.topic_id.to_string(),
        }));
    } else if result.num_partitions > 0 {
        say!(
            "created topic {name}: {} partitions, replication factor {}",
            result.num_partitions,
            result.replication_factor
        );
    } else {
        say!("created topic {name}");
    }
    Ok(())
}

fn list(args: &AdminArgs, client: &mut Client) -> Result<(), AdminError> {
    let metadata = client.metadata(None)?;
    let mut topics: Vec<&MetadataResponseTopic> = metadata.topics.iter().collect();
    topics.sort_by_key(|t| topic_name(t));
    if args.json {
        let items: Vec<serde_json::Value> = topics
            .iter()
            .map(|t| {
                json!({
                    "topic": topic_name(t),
                    "partitions": t.partitions.len(),
                    "internal": t.is_internal,
                })
            })
            .collect();
        print_json(&json!({ "topics": items }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| {
            vec![
                topic_name(t),
                t.partitions.len().to_string(),
                if t.is_internal { "yes" } else { "" }.to_string(),
            ]
        })
        .collect();
    print_table(&["topic", "partitions", "internal"], &rows);
    Ok(())
}

/// Each topic's overrides (configs it sets itself), by topic.
fn overrides(
    client: &mut Client,
    names: &[String],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, AdminError> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let resources: Vec<DescribeConfigsResource> = names
        .iter()
        .map(|n| {
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(s(n))
                .with_configuration_keys(None)
        })
        .collect();
    let response = client.send(Target::Bootstrap, 4, |_| {
        DescribeConfigsRequest::default().with_resources(resources)
    })?;
    let mut out = BTreeMap::new();
    for result in response.results {
        let name = result.resource_name.to_string();
        check(
            result.error_code,
            result.error_message.as_ref(),
            format!("describing the configs of {name}"),
        )?;
        let set: BTreeMap<String, String> = result
            .configs
            .iter()
            .filter(|c| c.config_source == SOURCE_TOPIC)
            .map(|c| {
                (
                    c.name.to_string(),
                    c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        out.insert(name, set);
    }
    Ok(out)
}

fn ids(nodes: &[BrokerId]) -> String {
    let ids: Vec<String> = nodes.iter().map(|n| n.0.to_string()).collect();
    ids.join(",")
}

fn describe(args: &AdminArgs, client: &mut Client, names: &[String]) -> Result<(), AdminError> {
    let wanted = (!names.is_empty()).then(|| names.to_vec());
    let metadata = client.metadata(wanted)?;
    let mut topics: Vec<&MetadataResponseTopic> = metadata.topics.iter().collect();
    topics.sort_by_key(|t| topic_name(t));
    for topic in &topics {
        check(
            topic.error_code,
            None,
            format!("describing topic {}", topic_name(topic)),
        )?;
    }
    let user_names: Vec<String> = topics
        .iter()
        .filter(|t| !t.is_internal)
        .map(|t| topic_name(t))
        .collect();
    let configs = overrides(client, &user_names)?;
    let starts = client.offsets_at(&topics, EARLIEST);
    let ends = client.offsets_at(&topics, LATEST);
    let offsets_of = |key: &(String, i32)| (starts.get(key).copied(), ends.get(key).copied());
    let offset_text = |o: Option<i64>| o.map_or("-".to_string(), |o| o.to_string());
    if args.json {
        let items: Vec<serde_json::Value> = topics
            .iter()
            .map(|t| {
                let name = topic_name(t);
                let mut partitions: Vec<_> = t.partitions.iter().collect();
                partitions.sort_by_key(|p| p.partition_index);
                let partitions: Vec<serde_json::Value> = partitions
                    .iter()
                    .map(|p| {
                        let (start, end) = offsets_of(&(name.clone(), p.partition_index));
                        json!({
                            "partition": p.partition_index,
                            "leader": p.leader_id.0,
                            "leader_epoch": p.leader_epoch,
                            "replicas": p.replica_nodes.iter().map(|n| n.0).collect::<Vec<_>>(),
                            "isr": p.isr_nodes.iter().map(|n| n.0).collect::<Vec<_>>(),
                            "log_start_offset": start,
                            "log_end_offset": end,
                            "error": (p.error_code != 0).then(|| super::kafka::error_name(p.error_code)),
                        })
                    })
                    .collect();
                json!({
                    "topic": name,
                    "topic_id": t.topic_id.to_string(),
                    "internal": t.is_internal,
                    "configs": configs.get(&name).cloned().unwrap_or_default(),
                    "partitions": partitions,
                })
            })
            .collect();
        print_json(&json!({ "topics": items }));
        return Ok(());
    }
    for (i, topic) in topics.iter().enumerate() {
        let name = topic_name(topic);
        if i > 0 {
            say!("");
        }
        let replication = topic
            .partitions
            .first()
            .map_or(0, |p| p.replica_nodes.len());
        say!(
            "topic {name}  id {}  partitions {}  replication factor {replication}{}",
            topic.topic_id,
            topic.partitions.len(),
            if topic.is_internal {
                "  (internal)"
            } else {
                ""
            }
        );
        let set = configs.get(&name).cloned().unwrap_or_default();
        if set.is_empty() {
            say!("configs: the broker's defaults");
        } else {
            let text: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
            say!("configs: {}", text.join(" "));
        }
        let mut partitions: Vec<_> = topic.partitions.iter().collect();
        partitions.sort_by_key(|p| p.partition_index);
        let rows: Vec<Vec<String>> = partitions
            .iter()
            .map(|p| {
                let (start, end) = offsets_of(&(name.clone(), p.partition_index));
                vec![
                    p.partition_index.to_string(),
                    if p.leader_id.0 < 0 {
                        "none".to_string()
                    } else {
                        p.leader_id.0.to_string()
                    },
                    ids(&p.replica_nodes),
                    ids(&p.isr_nodes),
                    offset_text(start),
                    offset_text(end),
                ]
            })
            .collect();
        print_table(
            &[
                "partition",
                "leader",
                "replicas",
                "isr",
                "log start",
                "log end",
            ],
            &rows,
        );
    }
    Ok(())
}

fn delete(args: &AdminArgs, client: &mut Client, names: &[String]) -> Result<(), AdminError> {
    let response = client.send(Target::Bootstrap, 5, |_| {
        DeleteTopicsRequest::default()
            .with_topic_names(names.iter().map(|n| TopicName(s(n))).collect())
            .with_timeout_ms(30_000)
    })?;
    let mut failures = 0;
    let mut deleted = Vec::new();
    for result in &response.responses {
        let name = result
            .name
            .as_ref()
            .map(|n| n.0.to_string())
            .unwrap_or_default();
        match check(
            result.error_code,
            result.error_message.as_ref(),
            format!("deleting topic {name}"),
        ) {
            Ok(()) => deleted.push(name),
            Err(e) => {
                eprintln!("ringtail admin: {e}");
                failures += 1;
            }
        }
    }
    if args.json {
        print_json(&json!({ "deleted": deleted }));
    } else {
        for name in &deleted {
            say!("deleted topic {name}");
        }
    }
    match failures {
        0 => Ok(()),
        n => Err(AdminError::Usage(format!(
            "{n} of {} topics not deleted",
            names.len()
        ))),
    }
}

fn alter_config(
    args: &AdminArgs,
    client: &mut Client,
    name: &str,
    set: &[String],
    delete: &[String],
) -> Result<(), AdminError> {
    if set.is_empty() && delete.is_empty() {
        return Err(AdminError::Usage(
            "nothing to change: give --set KEY=VALUE or --delete KEY".into(),
        ));
    }
    let mut entries = Vec::new();
    for text in set {
        let (key, value) = key_value(text, "--set")?;
        entries.push(
            AlterableConfig::default()
                .with_name(s(&key))
                .with_config_operation(0)
                .with_value(Some(s(&value))),
        );
    }
    for key in delete {
        entries.push(
            AlterableConfig::default()
                .with_name(s(key))
                .with_config_operation(1)
                .with_value(None),
        );
    }
    let resource = AlterConfigsResource::default()
        .with_resource_type(RESOURCE_TOPIC)
        .with_resource_name(s(name))
        .with_configs(entries);
    let response = client.send(Target::Bootstrap, 1, |_| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![resource])
    })?;
    for result in &response.responses {
        check(
            result.error_code,
            result.error_message.as_ref(),
            format!("altering the configs of {name}"),
        )?;
    }
    let now = overrides(client, &[name.to_string()])?
        .remove(name)
        .unwrap_or_default();
    if args.json {
        print_json(&json!({ "topic": name, "configs": now }));
    } else {
        let text: Vec<String> = now.iter().map(|(k, v)| format!("{k}={v}")).collect();
        say!(
            "altered topic {name}; its overrides now: {}",
            if text.is_empty() {
                "none (the broker's defaults)".to_string()
            } else {
                text.join(" ")
            }
        );
    }
    Ok(())
}
