//! Shards: one thread per core, each pinned, each with its own io_uring runtime, partitions and
//! connections.
//!
//! A [`Shard`] lives on its thread (`Rc`, never shared). Work for a partition owned by another
//! shard travels as a [`Job`] through that shard's bounded inbox (crossbeam), with a waker that
//! writes the target's eventfd if it is parked; replies come back through a oneshot. Every shard
//! accepts on the same port (SO_REUSEPORT) and owns the connections it accepts.
//!
//! Shard 0 is the controller: it alone changes the topic registry, one change at a time.

mod partitions;

use partitions::PartitionMap;

use crate::clock::{Clock, SystemClock};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use ringtail_engine::io::{self as rio, Notify, Pipe};
use ringtail_engine::storage::OsStorage;
use ringtail_engine::{LogConfig, Partition};
use tracing::{error, warn};

use crate::config::Config;
use crate::error::StartError;
pub use crate::ids::ShardId;
use crate::sync;
use crate::topics::{Registry, RegistryCell, Topic};

/// Work sent to a shard: runs on that shard's thread.
pub type Job = Box<dyn FnOnce(&Rc<Shard>) + Send>;

/// Pipe size for splicing fetch responses.
const PIPE_BYTES: usize = 1 << 20;

/// A shard's mailbox, as every shard holds it: the inbox's sending side, and the waker of the
/// shard's inbox task when it waits for a job.
pub struct ShardHandle {
    pub(crate) tx: crossbeam_channel::Sender<Job>,
    pub(crate) waker: Mutex<Option<Waker>>,
}

impl ShardHandle {
    /// Queues `job` from a thread that is not a shard (the controller's): gives it back when
    /// the inbox is full; Ok(false) when the shard has stopped (the job is dropped).
    pub fn try_post(&self, job: Job) -> Result<bool, Job> {
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(back)) => return Err(back),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return Ok(false),
        }
        let waker = self.waker.lock().expect("inbox waker lock").take();
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(true)
    }
}

/// What all shards share: configuration, the topic registry, the inboxes.
pub struct Shared {
    pub config: Config,
    pub registry: RegistryCell,
    pub handles: Vec<Arc<ShardHandle>>,
    pub stopping: AtomicBool,
    /// `max.connections` and `max.connections.per.ip`, over every shard.
    pub limits: Arc<crate::conn_limits::ConnectionLimits>,
    /// The node's part in a cluster (`--controller-quorum-voters`), if any.
    pub cluster: Option<crate::cluster::node::ClusterNode>,
}

impl Shared {
    /// Every shard, in order.
    pub fn shard_ids(&self) -> impl Iterator<Item = ShardId> {
        (0..self.handles.len()).map(ShardId)
    }

    /// Queues `job` on shard `target`, waiting (without blocking the thread) while its inbox is
    /// full.
    pub async fn send(&self, target: ShardId, mut job: Job) {
        let handle = &self.handles[target.0];
        crate::metrics::cross_shard_sent();
        loop {
            match handle.tx.try_send(job) {
                Ok(()) => break,
                Err(crossbeam_channel::TrySendError::Full(back)) => {
                    job = back;
                    rio::sleep(Duration::from_micros(50)).await;
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
            }
        }
        let waker = handle.waker.lock().expect("inbox waker lock").take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

pub struct Shard {
    pub id: ShardId,
    pub shared: Arc<Shared>,
    partitions: RefCell<PartitionMap>,
    registry: RefCell<(u64, Arc<Registry>)>,
    pipes: RefCell<Vec<Rc<Pipe>>>,
    /// Connections being served, for the drain at stop.
    pub connections: Cell<usize>,
    pub stop: Notify,
    pub stopped: Cell<bool>,
    /// The group coordinator of this shard's internal offsets partitions.
    coordinator: RefCell<Option<Rc<crate::group::Coordinator>>>,
    /// Producer ids, on the controller only.
    producer_ids: RefCell<Option<crate::producer_ids::ProducerIds>>,
    /// Serialises registry changes on the controller.
    controller_busy: Cell<bool>,
    controller_free: Notify,
    /// Held while offline partitions are reopened, and by a topic's deletion here: a reopen
    /// must not recreate a directory being deleted.
    partitions_busy: Cell<bool>,
    partitions_free: Notify,
    /// Partitions being moved to or from this shard (`moves`): requests for them are answered
    /// NOT_LEADER_OR_FOLLOWER, which clients retry, until the move finished.
    moving: RefCell<std::collections::HashSet<(String, i32)>>,
    /// When "still offline" was last logged (once a minute at most).
    offline_logged: Cell<Option<std::time::Instant>>,
    /// Timestamps of appends (`segment.ms`), retention by age, and the coordinator's time.
    clock: Rc<dyn Clock>,
    /// In a cluster: the metadata as last delivered to this shard's inbox by the controller
    /// thread, and a signal for the controller shard's sync when a new one arrives.
    cluster_view: RefCell<Option<Arc<crate::cluster::node::ClusterView>>>,
    pub(crate) cluster_changed: Notify,
}

pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl Shard {
    /// A new shard for the calling thread (its runtime runs it), on the system's clock.
    pub(crate) fn new(id: ShardId, shared: Arc<Shared>) -> Rc<Shard> {
        Rc::new(Shard {
            id,
            shared,
            partitions: RefCell::new(PartitionMap::default()),
            registry: RefCell::new((0, Arc::new(Registry::default()))),
            pipes: RefCell::new(Vec::new()),
            connections: Cell::new(0),
            stop: Notify::new(),
            stopped: Cell::new(false),
            coordinator: RefCell::new(None),
            producer_ids: RefCell::new(None),
            controller_busy: Cell::new(false),
            controller_free: Notify::new(),
            partitions_busy: Cell::new(false),
            partitions_free: Notify::new(),
            offline_logged: Cell::new(None),
            moving: RefCell::new(std::collections::HashSet::new()),
            clock: Rc::new(SystemClock),
            cluster_view: RefCell::new(None),
            cluster_changed: Notify::new(),
        })
    }

    /// In a cluster, the metadata as this shard last received it (None alone, or before the
    /// first delivery).
    pub fn cluster_view(&self) -> Option<Arc<crate::cluster::node::ClusterView>> {
        self.cluster_view.borrow().clone()
    }

    /// Takes a view delivered through the inbox.
    pub(crate) fn set_cluster_view(&self, view: Arc<crate::cluster::node::ClusterView>) {
        *self.cluster_view.borrow_mut() = Some(view);
        self.cluster_changed.notify_all();
    }

    pub fn clock(&self) -> Rc<dyn Clock> {
        self.clock.clone()
    }

    /// Hands the controller its producer-id allocator.
    pub(crate) fn set_producer_ids(&self, ids: crate::producer_ids::ProducerIds) {
        *self.producer_ids.borrow_mut() = Some(ids);
    }

    pub(crate) fn set_coordinator(&self, coordinator: Rc<crate::group::Coordinator>) {
        *self.coordinator.borrow_mut() = Some(coordinator);
    }

    /// Takes the coordinator out, at stop (no borrow is then held across its close).
    pub(crate) fn take_coordinator(&self) -> Option<Rc<crate::group::Coordinator>> {
        self.coordinator.borrow_mut().take()
    }

    /// Every partition log this shard owns, with its topic and index (metrics); the
    /// coordinator's offsets logs are listed as `__consumer_offsets`.
    pub(crate) fn partition_logs(&self) -> Vec<(Rc<str>, i32, Rc<Partition>)> {
        let mut logs: Vec<(Rc<str>, i32, Rc<Partition>)> = self
            .partitions
            .borrow()
            .entries()
            .map(|(key, log)| (key.topic, key.partition, log.clone()))
            .collect();
        if let Some(coordinator) = self.coordinator.borrow().as_ref() {
            let name: Rc<str> = Rc::from(crate::group::offsets::CONSUMER_OFFSETS);
            for (index, log) in coordinator.logs() {
                logs.push((name.clone(), index as i32, log));
            }
        }
        logs
    }

    /// This shard's coordinator, if it is open (metrics may ask before it is, or after stop).
    pub(crate) fn coordinator_if_open(&self) -> Option<Rc<crate::group::Coordinator>> {
        self.coordinator.borrow().clone()
    }

    /// The error for a request naming a partition this shard does not hold: retriable while
    /// the partition is moving between shards, else UNKNOWN_TOPIC_OR_PARTITION.
    pub fn missing_partition_code(&self, topic: &str, partition: i32) -> i16 {
        if self
            .moving
            .borrow()
            .contains(&(topic.to_string(), partition))
        {
            crate::protocol::error_code::NOT_LEADER_OR_FOLLOWER
        } else {
            crate::protocol::error_code::UNKNOWN_TOPIC_OR_PARTITION
        }
    }

    /// Marks (or unmarks) a partition as moving to or from this shard.
    pub(crate) fn set_moving(&self, topic: &str, partition: i32, moving: bool) {
        let key = (topic.to_string(), partition);
        if moving {
            self.moving.borrow_mut().insert(key);
        } else {
            self.moving.borrow_mut().remove(&key);
        }
    }

    /// Takes one partition out of this shard and closes it (its in-flight appends finish and
    /// are flushed first). None if it is not here.
    pub(crate) async fn close_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Option<Result<(), ringtail_engine::StorageError>> {
        let _held = self.hold_partitions().await;
        let log = self.partitions.borrow_mut().remove(topic, partition)?;
        Some(log.close().await)
    }

    /// Takes every partition log out, at stop, to close them.
    pub(crate) fn take_partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow_mut().take_all()
    }

    /// The current registry (refreshed when the controller published a new one), with the
    /// internal `__consumer_offsets` topic added (it is served, never stored).
    pub fn registry(&self) -> Arc<Registry> {
        let version = self.shared.registry.version();
        let mut cached = self.registry.borrow_mut();
        if cached.0 != version {
            let mut view = (*self.shared.registry.snapshot()).clone();
            let internal = Topic::consumer_offsets(self.shared.config.shards);
            view.topics
                .insert(internal.name.clone(), Arc::new(internal));
            *cached = (version, Arc::new(view));
        }
        cached.1.clone()
    }

    /// A partition this shard owns; for `__consumer_offsets`, the coordinator's offsets log.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        if topic == crate::group::offsets::CONSUMER_OFFSETS {
            let partition = u32::try_from(partition).ok()?;
            return self.coordinator.borrow().as_ref()?.log(partition);
        }
        self.partitions.borrow().get(topic, partition).cloned()
    }

    /// Runs `work` on shard `target` and returns its result here. Local work runs directly.
    pub async fn on_shard<T, F>(self: &Rc<Self>, target: ShardId, work: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> LocalFuture<T> + Send + 'static,
    {
        if target == self.id {
            return Some(work(self.clone()).await);
        }
        self.send_work(target, work).await.await.ok()
    }

    /// Hands `work` to another shard and returns the receiver of its result. Once this returns,
    /// the job is in the target's inbox: jobs sent from one shard to another start in the order
    /// they were sent, and `work` itself (not the future it returns) runs as the job starts, so
    /// what it does synchronously (appends) keeps that order.
    pub async fn send_work<T, F>(&self, target: ShardId, work: F) -> sync::Receiver<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> LocalFuture<T> + Send + 'static,
    {
        let (tx, rx) = sync::oneshot();
        let job: Job = Box::new(move |shard: &Rc<Shard>| {
            let future = work(shard.clone());
            drop(rio::spawn(async move { tx.send(future.await) }));
        });
        self.shared.send(target, job).await;
        rx
    }

    /// A pipe for splicing, from this shard's pool.
    pub fn take_pipe(&self) -> std::io::Result<Rc<Pipe>> {
        match self.pipes.borrow_mut().pop() {
            Some(pipe) => Ok(pipe),
            None => Pipe::new(PIPE_BYTES).map(Rc::new),
        }
    }

    /// Returns a pipe to the pool; only pipes known to be empty may come back.
    pub fn return_pipe(&self, pipe: Rc<Pipe>) {
        if Rc::strong_count(&pipe) == 1 {
            self.pipes.borrow_mut().push(pipe);
        }
    }

    /// The log settings of a topic: broker defaults overridden by the topic's configs.
    pub fn log_config(&self, topic: &Topic) -> LogConfig {
        topic.configs.apply(&self.shared.config.topics.log)
    }

    /// Applies `topic`'s configs to the partitions of it this shard holds (after AlterConfigs):
    /// retention, segment and batch-size settings change while the logs run.
    pub fn reconfigure_partitions(&self, topic: &Topic) {
        let config = self.log_config(topic);
        for index in 0..topic.shards.len() as i32 {
            if let Some(partition) = self.partition(&topic.name, index) {
                if let Err(e) = partition.reconfigure(&config) {
                    // Validated before it was stored (TopicConfig::parse); kept as opened.
                    tracing::error!(topic = %topic.name, partition = index, "config not applied: {e}");
                }
            }
        }
    }

    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.shared
            .config
            .data_dir
            .join(format!("{topic}-{partition}"))
    }

    /// Opens (or, `creating`, creates) the partitions of `topic` that this shard owns. A
    /// directory is opened only if its `partition.metadata` names this topic's id; one from
    /// before these files existed is adopted at start (and gets one), never by a new topic. A
    /// directory that is not this topic's is moved aside, loudly, and never served.
    pub async fn open_partitions(
        self: &Rc<Self>,
        topic: &Topic,
        creating: bool,
    ) -> Result<(), StartError> {
        let config = self.log_config(topic);
        for (index, &owner) in topic.shards.iter().enumerate() {
            if owner != self.id {
                continue;
            }
            if topic
                .roles
                .as_ref()
                .is_some_and(|roles| roles.get(index).is_none_or(|r| !r.local))
            {
                continue; // in a cluster, another broker holds it
            }
            let index = index as i32;
            if self.partition(&topic.name, index).is_some() {
                continue;
            }
            let dir = self.partition_dir(&topic.name, index);
            let dir_error = |source| StartError::PartitionDir {
                path: dir.clone(),
                source,
            };
            let known = match crate::partition_dirs::read_metadata(&dir) {
                Ok(Some(id)) if id == topic.id => true,
                Ok(None) if !creating && dir.exists() => false, // written before the files
                Ok(None) if !dir.exists() => false,
                Ok(Some(_)) | Ok(None) => {
                    crate::partition_dirs::set_aside(&dir, "belongs to another topic id")
                        .map_err(dir_error)?;
                    false
                }
                Err(_) if creating => {
                    crate::partition_dirs::set_aside(&dir, "has a damaged partition.metadata")
                        .map_err(dir_error)?;
                    false
                }
                Err(source) => return Err(dir_error(source)),
            };
            let partition = Partition::open(&dir, config.clone())
                .await
                .map_err(|source| StartError::Partition {
                    topic: topic.name.clone(),
                    partition: index,
                    source,
                })?;
            if !known {
                crate::partition_dirs::write_metadata(&OsStorage, &dir, &topic.id)
                    .await
                    .map_err(dir_error)?;
            }
            self.partitions
                .borrow_mut()
                .insert(&topic.name, index, partition);
        }
        Ok(())
    }

    /// Closes and removes this shard's partitions of `topic`, deleting their directories.
    pub async fn drop_partitions(self: &Rc<Self>, topic: &str) {
        let _held = self.hold_partitions().await;
        let doomed = self.partitions.borrow_mut().remove_topic(topic);
        for (key, partition) in doomed {
            let _ = partition.close().await;
            let dir = self.partition_dir(&key.topic, key.partition);
            if let Err(e) = crate::partition_dirs::delete(&dir) {
                warn!("cannot remove {}: {e}", dir.display());
            }
        }
    }

    /// Waits until no reopen or deletion runs here, then holds the partitions until the guard
    /// drops.
    async fn hold_partitions(&self) -> PartitionsGuard<'_> {
        loop {
            let notified = self.partitions_free.notified();
            if !self.partitions_busy.get() {
                self.partitions_busy.set(true);
                return PartitionsGuard { shard: self };
            }
            notified.await;
        }
    }

    /// Reopens the partitions (and offsets logs) a storage failure took offline, now that the
    /// fault may have cleared: each is recovered from what is on disk and serves again
    /// ([`Partition::reopen`]). Those still failing stay offline until the next call; that is
    /// logged once a minute at most.
    pub(crate) async fn reopen_offline(&self) {
        let offline: Vec<_> = self
            .partitions
            .borrow()
            .entries()
            .filter(|(_, log)| log.poisoned().is_some())
            .map(|(key, log)| (key, log.clone()))
            .collect();
        let (mut still_offline, mut first_error) = (0, None);
        if !offline.is_empty() {
            let _held = self.hold_partitions().await;
            for (key, log) in offline {
                match log.reopen().await {
                    Ok(reopened) => {
                        let mut map = self.partitions.borrow_mut();
                        let current = map.get(&key.topic, key.partition);
                        if current.is_some_and(|current| Rc::ptr_eq(current, &log)) {
                            map.insert(&key.topic, key.partition, reopened);
                        }
                    }
                    Err(err) => {
                        still_offline += 1;
                        first_error.get_or_insert_with(|| {
                            format!("{}-{}: {err}", key.topic, key.partition)
                        });
                    }
                }
            }
        }
        let coordinator = self.coordinator.borrow().clone();
        if let Some(coordinator) = coordinator {
            if let Some((count, err)) = coordinator.reopen_offline().await {
                still_offline += count;
                first_error.get_or_insert_with(|| format!("offsets log: {err}"));
            }
        }
        let Some(first) = first_error else {
            return;
        };
        let now = std::time::Instant::now();
        let due = self
            .offline_logged
            .get()
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(60));
        if due {
            self.offline_logged.set(Some(now));
            warn!(
                shard = %self.id,
                "{still_offline} partition(s) still offline, retrying: {first}"
            );
        }
    }

    /// Waits for the controller to be free, then holds it until the guard drops.
    pub async fn controller(self: &Rc<Self>) -> ControllerGuard {
        assert_eq!(
            self.id,
            ShardId::CONTROLLER,
            "registry changes run on the controller shard"
        );
        loop {
            let notified = self.controller_free.notified();
            if !self.controller_busy.get() {
                self.controller_busy.set(true);
                return ControllerGuard {
                    shard: self.clone(),
                };
            }
            notified.await;
        }
    }

    /// The shard that coordinates `group` (the owner of its internal offsets partition).
    pub fn group_owner(&self, group: &str) -> ShardId {
        ShardId(crate::group::offsets::partition_of(group) as usize % self.shared.config.shards)
    }

    /// This shard's group coordinator (opened before the shard serves requests).
    pub fn coordinator(&self) -> Rc<crate::group::Coordinator> {
        self.coordinator
            .borrow()
            .clone()
            .expect("the coordinator opens before requests are served")
    }

    /// The shard's wall clock, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A new producer id (controller only).
    pub fn allocate_producer_id(&self) -> Result<i64, crate::producer_ids::AllocateError> {
        let mut ids = self.producer_ids.borrow_mut();
        let ids = ids
            .as_mut()
            .ok_or(crate::producer_ids::AllocateError::NotController)?;
        Ok(ids.allocate()?)
    }

    /// Applies retention to every local partition.
    pub(crate) fn enforce_retention(&self) {
        let now = self.now_ms();
        let partitions: Vec<Rc<Partition>> = self.partitions.borrow().logs().cloned().collect();
        for partition in partitions {
            if let Err(e) = partition.enforce_retention(now) {
                error!("retention failed in {}: {e}", partition.dir().display());
            }
        }
    }
}

struct PartitionsGuard<'a> {
    shard: &'a Shard,
}

impl Drop for PartitionsGuard<'_> {
    fn drop(&mut self) {
        self.shard.partitions_busy.set(false);
        self.shard.partitions_free.notify_all();
    }
}

pub struct ControllerGuard {
    shard: Rc<Shard>,
}

impl Drop for ControllerGuard {
    fn drop(&mut self) {
        self.shard.controller_busy.set(false);
        self.shard.controller_free.notify_all();
    }
}
