//! A cluster member's topics: the metadata image is the record, and each broker derives its
//! registry from it (docs/cluster.md).
//!
//! - CreateTopics and DeleteTopics on any broker propose a record to the quorum (forwarded to
//!   its leader) and answer once this broker has applied it.
//! - The controller shard (shard 0) follows the image, delivered to its inbox by the controller
//!   thread: each new image gives a new registry in
//!   which every partition carries its [`Role`] (leader, epoch, replicas, and whether this
//!   broker holds and leads it). Partitions with a replica here are opened on their owner
//!   shards before the registry that routes to them is published; topics gone from the image
//!   are closed and their directories removed.
//! - Produce, Fetch and ListOffsets read the role (`Topic::serves`): a partition led elsewhere
//!   answers NOT_LEADER_OR_FOLLOWER, so clients refresh their metadata and go to its leader.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ringtail_engine::io as rio;
use tracing::{error, warn};

use super::metadata::{assign_replicas, MetadataImage, MetadataRecord, PartitionRecord};
use super::quorum::ProposeError;
use crate::controller::{
    drop_everywhere, forget_everywhere, open_on_owners, reconfigure_on_owners, AlterError,
    ControllerError, CreateError, NewTopic,
};
use crate::shard::{Shard, ShardId};
use crate::topics::{new_topic_id, validate_name, Registry, Role, Topic, TopicConfig};

/// How long a proposal may wait for this broker to apply it before the request answers
/// REQUEST_TIMED_OUT.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// Follows the metadata image on the controller shard, for the life of the broker.
/// Each new image arrives in the shard's inbox (`ClusterNode::attach`); only the newest one
/// is synced when several arrive during a sync.
pub async fn run_sync(shard: Rc<Shard>) {
    let mut seen: Option<Arc<MetadataImage>> = None;
    loop {
        let notified = shard.cluster_changed.notified();
        if let Some(view) = shard.cluster_view() {
            if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &view.image)) {
                sync(&shard, &view.image).await;
                seen = Some(view.image.clone());
                continue; // another may have arrived meanwhile
            }
        }
        notified.await;
    }
}

fn roles_of(image_topic: &super::metadata::TopicImage, me: i32) -> Arc<[Role]> {
    image_topic
        .partitions
        .iter()
        .map(|p| {
            let leader = p.leader.map_or(-1, |l| l as i32);
            Role {
                leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.iter().map(|&r| r as i32).collect(),
                isr: p.isr.iter().map(|&r| r as i32).collect(),
                local: p.replicas.iter().any(|&r| r as i32 == me),
                led_here: leader == me,
            }
        })
        .collect()
}

/// Brings this broker's registry and open partitions in line with `image`.
async fn sync(controller: &Rc<Shard>, image: &MetadataImage) {
    let _guard = controller.controller().await;
    let me = crate::api::node_id(controller).0;
    let current = controller.shared.registry.snapshot();
    for (name, topic) in &current.topics {
        if image.topic(name).map(|t| t.id) != Some(topic.id) {
            drop_everywhere(controller, name, topic).await;
            forget_everywhere(controller, name).await; // its committed offsets, as alone
        }
    }
    let mut next = Registry::default();
    let mut to_open = Vec::new();
    let mut to_reconfigure = Vec::new();
    // Kept topics first, so that new ones balance over the shards around them.
    let (kept, new): (Vec<_>, Vec<_>) = image
        .topics
        .values()
        .partition(|t| current.get(&t.name).is_some_and(|c| c.id == t.id));
    for image_topic in kept.into_iter().chain(new) {
        let roles = roles_of(image_topic, me);
        let topic = match current.get(&image_topic.name) {
            Some(existing) if existing.id == image_topic.id => {
                let configs = parse_configs(image_topic);
                let same_roles = existing.roles.as_deref() == Some(&*roles);
                if same_roles && existing.configs == configs {
                    existing.clone()
                } else {
                    let reconfigured = existing.configs != configs;
                    let topic = Arc::new(Topic {
                        roles: Some(roles),
                        configs,
                        ..(**existing).clone()
                    });
                    if !same_roles {
                        to_open.push(topic.clone()); // a partition may have become local
                    }
                    if reconfigured {
                        to_reconfigure.push(topic.clone());
                    }
                    topic
                }
            }
            _ => {
                let configs = parse_configs(image_topic);
                let shards = next.assign(
                    image_topic.partitions.len(),
                    controller.shared.config.shards,
                );
                let topic = Arc::new(Topic {
                    name: image_topic.name.clone(),
                    id: image_topic.id,
                    shards,
                    configs,
                    roles: Some(roles),
                });
                to_open.push(topic.clone());
                topic
            }
        };
        next.topics.insert(topic.name.clone(), topic);
    }
    for topic in to_open {
        if let Err(e) = open_on_owners(controller, &topic).await {
            error!(topic = %topic.name, "cannot open this broker's partitions: {e}");
        }
    }
    for topic in to_reconfigure {
        reconfigure_on_owners(controller, &topic).await;
    }
    controller.shared.registry.publish(next);
}

fn parse_configs(image_topic: &super::metadata::TopicImage) -> TopicConfig {
    TopicConfig::parse(&image_topic.configs).unwrap_or_else(|e| {
        warn!(topic = %image_topic.name, "topic configs not applied: {e}");
        TopicConfig::default()
    })
}

fn quorum_error(e: ProposeError) -> Arc<ControllerError> {
    Arc::new(ControllerError::Quorum(e.to_string()))
}

/// Waits until this broker's registry satisfies `done` (it applied the change), bounded.
async fn applied(shard: &Rc<Shard>, done: impl Fn(&Registry) -> bool) -> bool {
    let deadline = std::time::Instant::now() + APPLY_WAIT;
    while std::time::Instant::now() < deadline {
        if done(&shard.registry()) {
            return true;
        }
        rio::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// CreateTopics in a cluster: placement over the live brokers, one record per topic.
pub async fn create(
    shard: &Rc<Shard>,
    topics: Vec<NewTopic>,
    validate_only: bool,
) -> Vec<Result<Arc<Topic>, CreateError>> {
    let mut results = Vec::with_capacity(topics.len());
    for new in topics {
        results.push(create_one(shard, new, validate_only).await);
    }
    results
}

async fn create_one(
    shard: &Rc<Shard>,
    new: NewTopic,
    validate_only: bool,
) -> Result<Arc<Topic>, CreateError> {
    let cluster = shard.shared.cluster.as_ref().expect("cluster mode");
    if new.name == crate::group::offsets::CONSUMER_OFFSETS {
        return Err(CreateError::Exists);
    }
    validate_name(&new.name)?;
    if !(1..=crate::controller::PARTITIONS_MAX).contains(&new.partitions) {
        return Err(CreateError::InvalidPartitions(new.partitions));
    }
    let configs = TopicConfig::parse(&new.configs)?;
    let image = cluster.image();
    if image.topic(&new.name).is_some() {
        return Err(CreateError::Exists);
    }
    let assignment = assign_replicas(&image, new.partitions as usize, 1)
        .map_err(|e| CreateError::Placement(e.to_string()))?;
    let id = new_topic_id();
    if validate_only {
        return Ok(Arc::new(Topic {
            name: new.name,
            id,
            shards: vec![ShardId(0); assignment.len()],
            configs,
            roles: None,
        }));
    }
    let record = MetadataRecord::CreateTopic {
        name: new.name.clone(),
        id,
        configs: new.configs.clone(),
        partitions: assignment.into_iter().map(PartitionRecord::new).collect(),
    };
    match cluster.propose(record).await {
        Ok(()) => {}
        // Another broker created the name first: Kafka's answer for a race is the same.
        Err(ProposeError::Ignored(_)) if cluster.image().topic(&new.name).is_some() => {
            return Err(CreateError::Exists)
        }
        Err(e) => return Err(CreateError::Storage(quorum_error(e))),
    }
    let name = new.name.clone();
    if !applied(shard, |r| r.get(&name).is_some_and(|t| t.id == id)).await {
        return Err(CreateError::Storage(Arc::new(ControllerError::Quorum(
            "committed, but not applied here in time".into(),
        ))));
    }
    shard
        .registry()
        .get(&new.name)
        .cloned()
        .ok_or(CreateError::Exists)
}

/// DeleteTopics in a cluster. Returns false if there was no such topic.
pub async fn delete(shard: &Rc<Shard>, name: String) -> Result<bool, ControllerError> {
    let cluster = shard.shared.cluster.as_ref().expect("cluster mode");
    let Some(topic) = cluster.image().topic(&name).cloned() else {
        return Ok(false);
    };
    match cluster
        .propose(MetadataRecord::DeleteTopic { id: topic.id })
        .await
    {
        Ok(()) => {}
        Err(ProposeError::Ignored(_)) => return Ok(false), // deleted meanwhile
        Err(e) => return Err(ControllerError::Quorum(e.to_string())),
    }
    let id = topic.id;
    if !applied(shard, |r| r.get(&name).is_none_or(|t| t.id != id)).await {
        return Err(ControllerError::Quorum(
            "committed, but not applied here in time".into(),
        ));
    }
    Ok(true)
}

/// AlterConfigs in a cluster: one record replacing the topic's overrides; answered once this
/// broker has applied it (and so its partitions here run with the new settings).
pub async fn alter_configs(
    shard: &Rc<Shard>,
    name: String,
    configs: TopicConfig,
    validate_only: bool,
) -> Result<(), AlterError> {
    let cluster = shard.shared.cluster.as_ref().expect("cluster mode");
    let Some(topic) = cluster.image().topic(&name).cloned() else {
        return Err(AlterError::UnknownTopic(name));
    };
    let wanted = configs.to_map();
    if validate_only || topic.configs == wanted {
        return Ok(());
    }
    let id = topic.id;
    match cluster
        .propose(MetadataRecord::ReplaceTopicConfigs {
            id,
            configs: wanted,
        })
        .await
    {
        Ok(()) => {}
        Err(ProposeError::Ignored(_)) => return Err(AlterError::UnknownTopic(name)), // deleted meanwhile
        Err(e) => return Err(ControllerError::Quorum(e.to_string()).into()),
    }
    let done = |r: &Registry| {
        r.get(&name)
            .is_some_and(|t| t.id == id && t.configs == configs)
    };
    if !applied(shard, done).await {
        return Err(
            ControllerError::Quorum("committed, but not applied here in time".into()).into(),
        );
    }
    Ok(())
}

/// The broker coordinating `group` in a cluster: the group's offsets partition (Kafka's hash)
/// maps onto the voters in id order, a fixed map, so that a group's coordinator does not move
/// while brokers come and go (with replication factor 1 its offsets live on that broker).
pub fn group_coordinator(shard: &Shard, group: &str) -> Option<(i32, String, i32)> {
    let view = shard.cluster_view()?;
    let partition = crate::group::offsets::partition_of(group) as usize;
    let node = *view.voters.get(partition % view.voters.len().max(1))?;
    let broker = view.image.brokers.get(&node).filter(|b| !b.fenced)?;
    Some((node as i32, broker.host.clone(), i32::from(broker.port)))
}
