//! Registry changes: creating and deleting topics. Runs on the controller (shard 0), one change
//! at a time; partitions are opened on their owner shards before the new registry is published,
//! so no shard ever sees a topic whose partitions are not ready.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::shard::{LocalFuture, Shard, ShardId};
use crate::topics::{new_topic_id, validate_name, Topic, TopicConfig};

pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

/// Why a topic was not created; each maps to a Kafka error code in CreateTopics.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CreateError {
    #[error("topic already exists")]
    Exists,
    #[error(transparent)]
    InvalidName(#[from] crate::topics::InvalidTopicName),
    #[error("number of partitions must be 1 to {PARTITIONS_MAX}, got {0}")]
    InvalidPartitions(i32),
    #[error(transparent)]
    InvalidConfig(#[from] crate::topics::TopicConfigError),
    #[error(transparent)]
    Storage(Arc<ControllerError>),
    /// In a cluster: too few live brokers for the replicas (Kafka: INVALID_REPLICATION_FACTOR).
    #[error("{0}")]
    Placement(String),
}

/// Why the controller could not carry out a registry change.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("the controller stopped")]
    ControllerStopped,
    #[error("shard {0} stopped")]
    ShardStopped(ShardId),
    #[error("cannot store the topic registry: {0}")]
    Registry(#[source] std::io::Error),
    #[error("cannot open the new partitions: {0}")]
    Open(#[source] crate::error::StartError),
    /// In a cluster: the quorum did not take or apply the change in time (retriable).
    #[error("controller quorum: {0}")]
    Quorum(String),
}

/// The most partitions one topic may have (a guard against typos; Kafka has no fixed limit).
pub const PARTITIONS_MAX: i32 = 10_000;

/// Creates `topics`, from any shard. Returns one result per topic, in order.
pub async fn create_topics(
    shard: &Rc<Shard>,
    topics: Vec<NewTopic>,
    validate_only: bool,
) -> Vec<Result<Arc<Topic>, CreateError>> {
    if shard.shared.cluster.is_some() {
        return crate::cluster::topics::create(shard, topics, validate_only).await;
    }
    let count = topics.len();
    let work = move |controller: Rc<Shard>| -> LocalFuture<Vec<Result<Arc<Topic>, CreateError>>> {
        Box::pin(async move { create_on_controller(&controller, topics, validate_only).await })
    };
    shard
        .on_shard(ShardId::CONTROLLER, work)
        .await
        .unwrap_or_else(|| {
            let stopped = Arc::new(ControllerError::ControllerStopped);
            vec![Err(CreateError::Storage(stopped)); count]
        })
}

async fn create_on_controller(
    controller: &Rc<Shard>,
    topics: Vec<NewTopic>,
    validate_only: bool,
) -> Vec<Result<Arc<Topic>, CreateError>> {
    let _guard = controller.controller().await;
    let mut registry = (*controller.shared.registry.snapshot()).clone();
    let shards = controller.shared.config.shards;
    let mut results = Vec::new();
    let mut created = Vec::new();
    for new in topics {
        let result = (|| {
            if new.name == crate::group::offsets::CONSUMER_OFFSETS {
                return Err(CreateError::Exists);
            }
            validate_name(&new.name)?;
            if registry.get(&new.name).is_some() {
                return Err(CreateError::Exists);
            }
            if !(1..=PARTITIONS_MAX).contains(&new.partitions) {
                return Err(CreateError::InvalidPartitions(new.partitions));
            }
            let configs = TopicConfig::parse(&new.configs)?;
            let topic = Arc::new(Topic {
                name: new.name.clone(),
                id: new_topic_id(),
                shards: registry.assign(new.partitions as usize, shards),
                configs,
                roles: None,
            });
            if !validate_only {
                registry.topics.insert(topic.name.clone(), topic.clone());
            }
            Ok(topic)
        })();
        if let Ok(topic) = &result {
            if !validate_only {
                created.push(topic.clone());
            }
        }
        results.push(result);
    }
    if created.is_empty() {
        return results;
    }
    let mut failure = None;
    for topic in &created {
        if let Err(e) = open_on_owners(controller, topic).await {
            failure = Some(e);
        }
    }
    if failure.is_none() {
        if let Err(e) = controller.shared.registry.store(registry) {
            failure = Some(ControllerError::Registry(e));
        }
    }
    if let Some(error) = failure {
        let error = Arc::new(error);
        for topic in &created {
            drop_everywhere(controller, &topic.name, topic).await;
        }
        return results
            .into_iter()
            .map(|r| r.and(Err(CreateError::Storage(error.clone()))))
            .collect();
    }
    results
}

/// Opens (creating) `topic`'s partitions on each shard that owns some; the last failure, if any.
pub(crate) async fn open_on_owners(
    controller: &Rc<Shard>,
    topic: &Arc<Topic>,
) -> Result<(), ControllerError> {
    let mut result = Ok(());
    for owner in unique_owners(topic) {
        let topic = topic.clone();
        let opened = controller
            .on_shard(
                owner,
                move |s: Rc<Shard>| -> LocalFuture<Result<(), ControllerError>> {
                    Box::pin(async move {
                        s.open_partitions(&topic, true)
                            .await
                            .map_err(ControllerError::Open)
                    })
                },
            )
            .await
            .unwrap_or(Err(ControllerError::ShardStopped(owner)));
        if opened.is_err() {
            result = opened;
        }
    }
    result
}

/// Drops the committed offsets of topic `name` on every shard's group coordinator.
pub(crate) async fn forget_everywhere(controller: &Rc<Shard>, name: &str) {
    for owner in controller.shared.shard_ids() {
        let name = name.to_string();
        controller
            .on_shard(owner, move |s: Rc<Shard>| -> LocalFuture<()> {
                Box::pin(async move { s.coordinator().forget_topic(&name).await })
            })
            .await;
    }
}

pub(crate) fn unique_owners(topic: &Topic) -> Vec<ShardId> {
    let mut owners = topic.shards.clone();
    owners.sort_unstable();
    owners.dedup();
    owners
}

pub(crate) async fn drop_everywhere(controller: &Rc<Shard>, name: &str, topic: &Topic) {
    for owner in unique_owners(topic) {
        let name = name.to_string();
        controller
            .on_shard(owner, move |s: Rc<Shard>| -> LocalFuture<()> {
                Box::pin(async move { s.drop_partitions(&name).await })
            })
            .await;
    }
}

/// Deletes a topic, from any shard: unpublished first, then its partitions are closed and their
/// directories removed. Returns false if there was no such topic.
pub async fn delete_topic(shard: &Rc<Shard>, name: String) -> Result<bool, ControllerError> {
    if shard.shared.cluster.is_some() {
        return crate::cluster::topics::delete(shard, name).await;
    }
    let work = move |controller: Rc<Shard>| -> LocalFuture<Result<bool, ControllerError>> {
        Box::pin(async move {
            let _guard = controller.controller().await;
            let mut registry = (*controller.shared.registry.snapshot()).clone();
            let Some(topic) = registry.topics.remove(&name) else {
                return Ok(false);
            };
            controller
                .shared
                .registry
                .store(registry)
                .map_err(ControllerError::Registry)?;
            drop_everywhere(&controller, &name, &topic).await;
            forget_everywhere(&controller, &name).await;
            Ok(true)
        })
    };
    shard
        .on_shard(ShardId::CONTROLLER, work)
        .await
        .unwrap_or(Err(ControllerError::ControllerStopped))
}

/// Why a topic's configs were not changed; each maps to a Kafka error code in AlterConfigs.
#[derive(Debug, thiserror::Error)]
pub enum AlterError {
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("the configs of {0} are fixed by the broker")]
    Internal(String),
    #[error(transparent)]
    InvalidConfig(#[from] crate::topics::TopicConfigError),
    #[error(transparent)]
    Storage(#[from] ControllerError),
}

/// The overrides `name` has now, under Kafka's names (None: no such topic).
pub fn topic_configs(shard: &Shard, name: &str) -> Option<BTreeMap<String, String>> {
    shard.registry().get(name).map(|t| t.configs.to_map())
}

/// Replaces the config overrides of topic `name` with `configs` (Kafka's dynamic topic
/// configs), from any shard: validated, stored, then applied to the open partitions without a
/// restart. `validate_only` checks and changes nothing.
pub async fn alter_topic_configs(
    shard: &Rc<Shard>,
    name: String,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), AlterError> {
    if name == crate::group::offsets::CONSUMER_OFFSETS {
        return Err(AlterError::Internal(name));
    }
    let parsed = TopicConfig::parse(&configs)?;
    if shard.shared.cluster.is_some() {
        return crate::cluster::topics::alter_configs(shard, name, parsed, validate_only).await;
    }
    let work = move |controller: Rc<Shard>| -> LocalFuture<Result<(), AlterError>> {
        Box::pin(async move {
            let _guard = controller.controller().await;
            let mut registry = (*controller.shared.registry.snapshot()).clone();
            let Some(current) = registry.get(&name) else {
                return Err(AlterError::UnknownTopic(name));
            };
            if validate_only || current.configs == parsed {
                return Ok(());
            }
            let topic = Arc::new(Topic {
                configs: parsed,
                ..(**current).clone()
            });
            registry.topics.insert(name, topic.clone());
            controller
                .shared
                .registry
                .store(registry)
                .map_err(ControllerError::Registry)?;
            reconfigure_on_owners(&controller, &topic).await;
            Ok(())
        })
    };
    shard
        .on_shard(ShardId::CONTROLLER, work)
        .await
        .unwrap_or(Err(AlterError::Storage(ControllerError::ControllerStopped)))
}

/// Applies `topic`'s (new) configs to its open partitions on every shard that owns some.
pub(crate) async fn reconfigure_on_owners(controller: &Rc<Shard>, topic: &Arc<Topic>) {
    for owner in unique_owners(topic) {
        let topic = topic.clone();
        controller
            .on_shard(owner, move |s: Rc<Shard>| -> LocalFuture<()> {
                Box::pin(async move { s.reconfigure_partitions(&topic) })
            })
            .await;
    }
}
