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
pub mod sync;

use partitions::PartitionMap;

use crate::clock::{Clock, SystemClock};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use ringtail_engine::io::{self as rio, Notify, Pipe, Runtime, RuntimeConfig};
use ringtail_engine::{LogConfig, Partition};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::error::StartError;
use crate::topics::{Registry, RegistryCell, Topic};

/// Work sent to a shard: runs on that shard's thread.
pub type Job = Box<dyn FnOnce(&Rc<Shard>) + Send>;

/// Jobs waiting in one shard's inbox before senders must wait (backpressure).
const INBOX_CAPACITY: usize = 4096;
/// How long a stopping shard waits for in-flight requests to finish.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Pipe size for splicing fetch responses.
const PIPE_BYTES: usize = 1 << 20;

/// A shard's mailbox, shared with every other shard.
/// A shard's number: its index in `Shared::handles` (shard threads in core order). Which shard
/// owns a partition, a group, the controller: never mixed with counts or partition numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub usize);

impl ShardId {
    /// The shard that runs the controller (topic registry, producer ids).
    pub const CONTROLLER: ShardId = ShardId(0);
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

pub struct ShardHandle {
    tx: crossbeam_channel::Sender<Job>,
    waker: Mutex<Option<Waker>>,
}

/// What all shards share: configuration, the topic registry, the inboxes.
pub struct Shared {
    pub config: Config,
    pub registry: RegistryCell,
    pub handles: Vec<ShardHandle>,
    pub stopping: AtomicBool,
    /// `max.connections` and `max.connections.per.ip`, over every shard.
    pub limits: crate::conn_limits::ConnectionLimits,
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
    /// Timestamps of appends (`segment.ms`), retention by age, and the coordinator's time.
    clock: Rc<dyn Clock>,
}

pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl Shard {
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
        crate::api::configs::effective_log_config(&self.shared.config, topic)
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
                crate::partition_dirs::write_metadata(&dir, &topic.id).map_err(dir_error)?;
            }
            self.partitions
                .borrow_mut()
                .insert(&topic.name, index, partition);
        }
        Ok(())
    }

    /// Closes and removes this shard's partitions of `topic`, deleting their directories.
    pub async fn drop_partitions(self: &Rc<Self>, topic: &str) {
        let doomed = self.partitions.borrow_mut().remove_topic(topic);
        for (key, partition) in doomed {
            let _ = partition.close().await;
            let dir = self.partition_dir(&key.topic, key.partition);
            if let Err(e) = crate::partition_dirs::delete(&dir) {
                warn!("cannot remove {}: {e}", dir.display());
            }
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
    pub fn allocate_producer_id(&self) -> Result<i64, String> {
        let mut ids = self.producer_ids.borrow_mut();
        let ids = ids.as_mut().ok_or("producer ids live on shard 0")?;
        ids.allocate()
            .map_err(|e| format!("cannot reserve producer ids: {e}"))
    }

    /// Applies retention to every local partition.
    fn enforce_retention(&self) {
        let now = self.now_ms();
        let partitions: Vec<Rc<Partition>> = self.partitions.borrow().logs().cloned().collect();
        for partition in partitions {
            if let Err(e) = partition.enforce_retention(now) {
                error!("retention failed in {}: {e}", partition.dir().display());
            }
        }
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

/// Starts the shards and serves until SIGTERM or SIGINT; returns after a clean stop, or with
/// every failure (the first shard to fail stops the others).
pub fn run(config: Config) -> Result<(), Vec<StartError>> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| {
        vec![StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        }]
    })?;
    let registry_on_disk = config.data_dir.join("topics.meta").exists();
    let registry = RegistryCell::load(&config.data_dir).map_err(|e| vec![e])?;
    crate::partition_dirs::sweep(&config.data_dir, &registry.snapshot(), registry_on_disk)
        .map_err(|source| {
            vec![StartError::PartitionDir {
                path: config.data_dir.clone(),
                source,
            }]
        })?;
    rio::block_termination_signals().map_err(|e| vec![StartError::Signals(e)])?;
    if config.stage_timing {
        ringtail_engine::timing::enable();
    }
    let mut listeners = Vec::new();
    for _ in 0..config.shards {
        let listener = rio::listen_reuseport(config.listen, 1024).map_err(|source| {
            vec![StartError::Listen {
                addr: config.listen,
                source,
            }]
        })?;
        listeners.push(listener);
    }
    let mut handles = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..config.shards {
        let (tx, rx) = crossbeam_channel::bounded(INBOX_CAPACITY);
        handles.push(ShardHandle {
            tx,
            waker: Mutex::new(None),
        });
        inboxes.push(rx);
    }
    let limits = crate::conn_limits::ConnectionLimits::new(
        config.max_connections,
        config.max_connections_per_ip,
        config.queued_max_request_bytes,
    );
    let shared = Arc::new(Shared {
        limits,
        config,
        registry,
        handles,
        stopping: AtomicBool::new(false),
    });
    info!(
        listen = %shared.config.listen,
        shards = shared.config.shards,
        fsync = %shared.config.fsync,
        data_dir = %shared.config.data_dir.display(),
        "ringtail starting"
    );
    let mut threads = Vec::new();
    for (id, (listener, inbox)) in listeners.into_iter().zip(inboxes).enumerate() {
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("shard-{id}"))
            .spawn(move || run_shard_thread(id, shared, listener, inbox))
            .map_err(|source| {
                vec![StartError::Thread {
                    name: format!("shard-{id}"),
                    source,
                }]
            })?;
        threads.push(thread);
    }
    let watcher_shared = shared.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(signal) = rio::wait_termination_signal() {
                info!(signal, "stopping: finishing in-flight requests");
                stop_all(&watcher_shared);
            }
        })
        .map_err(|source| {
            vec![StartError::Thread {
                name: "signals".into(),
                source,
            }]
        })?;
    let mut failures = Vec::new();
    for (id, thread) in threads.into_iter().enumerate() {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push(StartError::Panicked { shard: id }),
        }
    }
    if let Some(table) = ringtail_engine::timing::report() {
        // Asked for with --stage-timing: printed whatever the log level.
        eprintln!("produce stage timing (us, merged over shards):\n{table}");
    }
    if failures.is_empty() {
        info!("stopped cleanly");
        Ok(())
    } else {
        Err(failures)
    }
}

fn stop_all(shared: &Arc<Shared>) {
    if shared.stopping.swap(true, Ordering::AcqRel) {
        return;
    }
    for handle in &shared.handles {
        let job: Job = Box::new(|shard: &Rc<Shard>| {
            shard.stopped.set(true);
            shard.stop.notify_all();
        });
        // If the inbox is full, the shard still sees `stopping` within 200 ms.
        let _ = handle.tx.try_send(job);
        if let Some(waker) = handle.waker.lock().expect("inbox waker lock").take() {
            waker.wake();
        }
    }
}

/// A shard thread: the shard's whole life. When it fails (at start or later) or panics, the
/// reason is logged at once and every other shard is stopped, so the process exits 1 promptly
/// instead of running half alive until someone sends SIGTERM.
fn run_shard_thread(
    id: usize,
    shared: Arc<Shared>,
    listener: TcpListener,
    inbox: crossbeam_channel::Receiver<Job>,
) -> Result<(), StartError> {
    let run = std::panic::AssertUnwindSafe(|| shard_thread(id, shared.clone(), listener, inbox));
    let result = match std::panic::catch_unwind(run) {
        Ok(result) => result,
        Err(_) => Err(StartError::Panicked { shard: id }),
    };
    if let Err(err) = &result {
        error!(shard = id, "stopping the broker: {err}");
        stop_all(&shared);
    }
    result
}

fn shard_thread(
    id: usize,
    shared: Arc<Shared>,
    listener: TcpListener,
    inbox: crossbeam_channel::Receiver<Job>,
) -> Result<(), StartError> {
    if let Some(cores) = &shared.config.cores {
        rio::pin_current_thread(cores[id]).map_err(|source| StartError::Pin {
            shard: id,
            core: cores[id],
            source,
        })?;
    }
    let runtime = Runtime::new(RuntimeConfig::default())
        .map_err(|source| StartError::Runtime { shard: id, source })?;
    if let Some(cores) = &shared.config.cores {
        // The shard's io-wq workers (punted buffered writes, splices) run on its core too, next
        // to the bytes they copy (perf-reports/2026-11-22-iowq-affinity.md).
        runtime
            .pin_workers(cores[id])
            .map_err(|source| StartError::Pin {
                shard: id,
                core: cores[id],
                source,
            })?;
    }
    let shard = Rc::new(Shard {
        id: ShardId(id),
        shared: shared.clone(),
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
        clock: Rc::new(SystemClock),
    });
    if id == 0 {
        let ids = crate::producer_ids::ProducerIds::load(&shared.config.data_dir)?;
        *shard.producer_ids.borrow_mut() = Some(ids);
    }
    let result = runtime.block_on(shard_main(shard, listener, inbox));
    ringtail_engine::timing::flush();
    result
}

async fn shard_main(
    shard: Rc<Shard>,
    listener: TcpListener,
    inbox: crossbeam_channel::Receiver<Job>,
) -> Result<(), StartError> {
    let registry = shard.registry();
    for topic in registry.topics.values().filter(|t| !t.is_internal()) {
        shard.open_partitions(topic, false).await?;
    }
    let config = &shard.shared.config;
    let group_config = crate::group::GroupConfig {
        offsets_segment_bytes: 64 << 20,
        initial_rebalance_delay: Duration::from_millis(config.group_initial_rebalance_delay_ms),
        offsets_retention_ms: config.offsets_retention_minutes * 60_000,
        fsync: config.fsync,
    };
    let backing = crate::group::Backing {
        storage: Rc::new(ringtail_engine::storage::OsStorage),
        clock: shard.clock.clone(),
    };
    let coordinator = crate::group::Coordinator::open_on(
        backing,
        &config.data_dir,
        shard.id,
        config.shards,
        group_config,
    )
    .await?;
    let coordinator = Rc::new(coordinator);
    *shard.coordinator.borrow_mut() = Some(coordinator.clone());
    let inbox_task = rio::spawn(run_inbox(shard.clone(), inbox));
    let group_task = rio::spawn(crate::group::run_timers(coordinator, GROUP_TIMER_TICK));
    let retention_task = rio::spawn(run_retention(shard.clone()));
    let accept_task = rio::spawn(crate::conn::accept_loop(shard.clone(), Rc::new(listener)));
    info!(shard = %shard.id, "shard ready");
    while !shard.stopped.get() {
        let notified = shard.stop.notified();
        if shard.stopped.get() {
            break;
        }
        // The stop job normally wakes us; the flag is the fallback if this shard's inbox was
        // full when the stop was sent.
        if sync::timeout(Duration::from_millis(200), notified)
            .await
            .is_none()
            && shard.shared.stopping.load(Ordering::Acquire)
        {
            shard.stopped.set(true);
            shard.stop.notify_all();
        }
    }
    accept_task.await;
    // Let connections finish the requests they are serving.
    let _ = sync::timeout(DRAIN_LIMIT, async {
        while shard.connections.get() > 0 {
            rio::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Stopped, not detached: neither may run while the logs close, or after.
    retention_task.abort();
    group_task.abort();
    let partitions = shard.partitions.borrow_mut().take_all();
    // All at once: their flushes overlap (9,000 partitions closed one by one took 6 s).
    let closed = sync::join_all(partitions.iter().map(|p| p.close()).collect()).await;
    let mut failed = 0;
    for (partition, result) in partitions.iter().zip(closed) {
        if let Err(e) = result {
            error!("closing {} failed: {e}", partition.dir().display());
            failed += 1;
        }
    }
    // Take it out first: a borrow held across the await would collide with the group timers.
    let coordinator = shard.coordinator.borrow_mut().take();
    if let Some(coordinator) = coordinator {
        failed += coordinator.close().await;
    }
    inbox_task.abort();
    if failed > 0 {
        return Err(StartError::Close {
            shard: shard.id.0,
            failed,
        });
    }
    Ok(())
}

/// Runs jobs sent by other shards.
async fn run_inbox(shard: Rc<Shard>, inbox: crossbeam_channel::Receiver<Job>) {
    let handle = &shard.shared.handles[shard.id.0];
    std::future::poll_fn(|cx| loop {
        match inbox.try_recv() {
            Ok(job) => job(&shard),
            Err(crossbeam_channel::TryRecvError::Disconnected) => return Poll::Ready(()),
            Err(crossbeam_channel::TryRecvError::Empty) => {
                *handle.waker.lock().expect("inbox waker lock") = Some(cx.waker().clone());
                // A job queued before the waker was stored is seen by this second look.
                if inbox.is_empty() {
                    return Poll::Pending;
                }
            }
        }
    })
    .await
}

/// How often the group coordinator checks session timeouts and join deadlines.
const GROUP_TIMER_TICK: Duration = Duration::from_millis(100);

/// Retention at start (a broker restarted more often than the interval must still enforce
/// it), then every 30 s.
async fn run_retention(shard: Rc<Shard>) {
    loop {
        shard.enforce_retention();
        rio::sleep(Duration::from_secs(30)).await;
    }
}
