//! Moving a partition from one shard (core) to another while the broker serves it.
//!
//! Runs on the controller shard, holding the controller (so no topic is created or deleted
//! meanwhile). The steps, each finished before the next:
//! 1. both shards mark the partition moving: a request for it that finds no log there is
//!    answered NOT_LEADER_OR_FOLLOWER (clients refresh metadata and retry) instead of
//!    UNKNOWN_TOPIC_OR_PARTITION;
//! 2. the old owner takes it out of its map and closes it: appends already taken finish,
//!    are written and flushed as at a clean stop, and their acknowledgements go out;
//! 3. the registry (`topics.meta`) is stored with the new owner and published, so requests
//!    are routed there;
//! 4. the new owner opens the directory (recovering it as at a restart after a clean stop,
//!    producer state included);
//! 5. both marks are cleared.
//!
//! If the new owner cannot open it, the registry goes back to the old owner, which reopens
//! it. Not in a cluster yet: there the registry follows the metadata log.

use std::rc::Rc;

use crate::controller::ControllerError;
use crate::shard::{LocalFuture, Shard, ShardId};

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("no topic {0}")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("no shard {shard}: this broker runs shards 0-{last}")]
    NoSuchShard { shard: usize, last: usize },
    #[error("{0} is internal: its partitions stay with the group coordinators")]
    Internal(String),
    #[error("moving partitions between cores is not supported in a cluster yet")]
    Cluster,
    #[error(
        "closing the partition on shard {shard} failed (it is offline until reopened): {source}"
    )]
    Close {
        shard: ShardId,
        source: ringtail_engine::StorageError,
    },
    #[error("{0}")]
    Controller(#[from] ControllerError),
}

/// A move done: where the partition was and is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    pub from: ShardId,
    pub to: ShardId,
}

/// Moves `topic`'s partition `partition` to shard `to`, from any shard.
pub async fn move_partition(
    shard: &Rc<Shard>,
    topic: String,
    partition: i32,
    to: usize,
) -> Result<Moved, MoveError> {
    let work = move |controller: Rc<Shard>| -> LocalFuture<Result<Moved, MoveError>> {
        Box::pin(async move { run(&controller, topic, partition, to).await })
    };
    shard
        .on_shard(ShardId::CONTROLLER, work)
        .await
        .unwrap_or(Err(MoveError::Controller(
            ControllerError::ControllerStopped,
        )))
}

async fn run(
    controller: &Rc<Shard>,
    topic: String,
    partition: i32,
    to: usize,
) -> Result<Moved, MoveError> {
    if controller.shared.cluster.is_some() {
        return Err(MoveError::Cluster);
    }
    let shards = controller.shared.config.shards;
    if to >= shards {
        return Err(MoveError::NoSuchShard {
            shard: to,
            last: shards - 1,
        });
    }
    let to = ShardId(to);
    let _guard = controller.controller().await;
    let registry = controller.shared.registry.snapshot();
    if topic == crate::group::offsets::CONSUMER_OFFSETS {
        return Err(MoveError::Internal(topic));
    }
    let Some(current) = registry.topics.get(&topic) else {
        return Err(MoveError::UnknownTopic(topic));
    };
    let Some(&from) = usize::try_from(partition)
        .ok()
        .and_then(|i| current.shards.get(i))
    else {
        return Err(MoveError::UnknownPartition { topic, partition });
    };
    if from == to {
        return Ok(Moved { from, to });
    }
    mark(controller, &[from, to], &topic, partition, true).await?;
    let result = hand_over(controller, &topic, partition, from, to).await;
    mark(controller, &[from, to], &topic, partition, false).await?;
    result.map(|()| Moved { from, to })
}

async fn mark(
    controller: &Rc<Shard>,
    shards: &[ShardId],
    topic: &str,
    partition: i32,
    moving: bool,
) -> Result<(), MoveError> {
    for &target in shards {
        let name = topic.to_string();
        let done = controller
            .on_shard(target, move |shard: Rc<Shard>| -> LocalFuture<()> {
                shard.set_moving(&name, partition, moving);
                Box::pin(async {})
            })
            .await;
        done.ok_or(ControllerError::ShardStopped(target))?;
    }
    Ok(())
}

/// Steps 2-4: close on `from`, store the new owner, open on `to` (or back on `from`).
async fn hand_over(
    controller: &Rc<Shard>,
    topic: &str,
    partition: i32,
    from: ShardId,
    to: ShardId,
) -> Result<(), MoveError> {
    let name = topic.to_string();
    let closed = controller
        .on_shard(from, move |shard: Rc<Shard>| -> LocalFuture<_> {
            Box::pin(async move { shard.close_partition(&name, partition).await })
        })
        .await
        .ok_or(ControllerError::ShardStopped(from))?;
    if let Some(Err(source)) = closed {
        // Its unsynced tail was cut at the durable end; a later reopen serves what survived.
        return Err(MoveError::Close {
            shard: from,
            source,
        });
    }
    set_owner(controller, topic, partition, to)?;
    match open_on(controller, topic, to).await {
        Ok(()) => Ok(()),
        Err(err) => {
            tracing::error!(topic, partition, shard = %to, "move failed, reopening on shard {from}: {err}");
            set_owner(controller, topic, partition, from)?;
            open_on(controller, topic, from).await?;
            Err(err.into())
        }
    }
}

fn set_owner(
    controller: &Rc<Shard>,
    topic: &str,
    partition: i32,
    owner: ShardId,
) -> Result<(), ControllerError> {
    let mut registry = (*controller.shared.registry.snapshot()).clone();
    if let Some(entry) = registry.topics.get_mut(topic) {
        let mut changed = (**entry).clone();
        changed.shards[partition as usize] = owner;
        *entry = std::sync::Arc::new(changed);
    }
    controller
        .shared
        .registry
        .store(registry)
        .map_err(ControllerError::Registry)
}

/// Has `shard` open the partitions of `topic` it owns and has not open (the moved one).
async fn open_on(
    controller: &Rc<Shard>,
    topic: &str,
    shard: ShardId,
) -> Result<(), ControllerError> {
    let name = topic.to_string();
    controller
        .on_shard(shard, move |target: Rc<Shard>| -> LocalFuture<_> {
            Box::pin(async move {
                let registry = target.registry();
                match registry.get(&name) {
                    Some(topic) => target.open_partitions(topic, false).await,
                    None => Ok(()),
                }
            })
        })
        .await
        .ok_or(ControllerError::ShardStopped(shard))?
        .map_err(ControllerError::Open)
}
