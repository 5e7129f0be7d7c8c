//! Start-up and shutdown of the broker: the shard threads (pinning, runtimes), each shard's
//! life (opening its partitions and group coordinator, its background tasks, the accept loop,
//! the drain and close at stop), and the signal watcher.
//!
//! `run` is called once from `main`; everything else runs on the shard threads it starts. A
//! shard that fails or panics stops every other shard, so the process exits promptly.

use std::net::TcpListener;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use ringtail_engine::io::{self as rio, accept, Runtime, RuntimeConfig};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::conn_limits::{ConnectionLimits, RateLimitedLog};
use crate::error::StartError;
use crate::shard::{Job, Shard, ShardHandle, ShardId, Shared};
use crate::sync::{self, select, Either};
use crate::topics::RegistryCell;

/// Jobs waiting in one shard's inbox before senders must wait (backpressure).
const INBOX_CAPACITY: usize = 4096;
/// How long a stopping shard waits for in-flight requests to finish.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Starts the shards and serves until SIGTERM or SIGINT; returns after a clean stop, or with
/// every failure (the first shard to fail stops the others).
pub fn run(config: Config) -> Result<(), Vec<StartError>> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| {
        vec![StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        }]
    })?;
    let registry = if config.cluster.is_some() {
        // The metadata log is the record: topics arrive from it once the quorum is up. (A
        // cluster member does not sweep directories at start: its topics are not known yet.)
        RegistryCell::unstored(&config.data_dir)
    } else {
        let registry_on_disk = config.data_dir.join("topics.meta").exists();
        let registry = RegistryCell::load(&config.data_dir).map_err(|e| vec![e.into()])?;
        crate::partition_dirs::sweep(&config.data_dir, &registry.snapshot(), registry_on_disk)
            .map_err(|source| {
                vec![StartError::PartitionDir {
                    path: config.data_dir.clone(),
                    source,
                }]
            })?;
        registry
    };
    rio::block_termination_signals().map_err(|e| vec![StartError::Signals(e)])?;
    match rio::raise_descriptor_limit() {
        Ok(limit) => info!(
            limit,
            reserve = descriptor_reserve(limit, config.descriptor_reserve),
            "descriptor limit (the reserve is kept for partitions: connections never take it)"
        ),
        Err(e) => warn!("cannot read or raise the descriptor limit: {e}"),
    }
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
        handles.push(Arc::new(ShardHandle {
            tx,
            waker: Mutex::new(None),
        }));
        inboxes.push(rx);
    }
    let limits = Arc::new(ConnectionLimits::new(
        config.max_connections,
        config.max_connections_per_ip,
        config.queued_max_request_bytes,
    ));
    let cluster = match &config.cluster {
        Some(settings) => Some(
            crate::cluster::node::ClusterNode::start(&config, settings)
                .map_err(|e| vec![StartError::from(e)])?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared {
        cluster,
        limits,
        config,
        registry,
        handles,
        stopping: AtomicBool::new(false),
    });
    if let Some(cluster) = &shared.cluster {
        cluster.attach(shared.handles.clone());
    }
    if let Some(addr) = shared.config.metrics_listen {
        crate::metrics::start(addr, shared.clone())
            .map_err(|source| vec![StartError::MetricsListen { addr, source }])?;
    }
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
    if let Some(cores) = shared
        .config
        .cores
        .as_ref()
        .filter(|_| shared.config.pin_io_workers)
    {
        // The shard's io-wq workers (punted buffered writes, splices) run on its core too, next
        // to the bytes they copy (perf-reports/2026-11-22-iowq-affinity.md). Left alone
        // (--pin-io-workers false) they follow the kernel's default: before Linux 6.2 any CPU;
        // since 6.2 the kernel keeps a thread's user-requested affinity in the workers it
        // forks, so a pinned shard's workers stay on its core either way.
        runtime
            .pin_workers(&[cores[id]])
            .map_err(|source| StartError::Pin {
                shard: id,
                core: cores[id],
                source,
            })?;
    }
    let shard = Shard::new(ShardId(id), shared.clone());
    if shard.id == ShardId::CONTROLLER {
        let ids = crate::producer_ids::ProducerIds::load(&shared.config.data_dir)?;
        shard.set_producer_ids(ids);
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
        clock: shard.clock(),
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
    shard.set_coordinator(coordinator.clone());
    let inbox_task = rio::spawn(run_inbox(shard.clone(), inbox));
    let group_task = rio::spawn(crate::group::run_timers(coordinator, GROUP_TIMER_TICK));
    let retention_task = rio::spawn(run_retention(shard.clone()));
    let reopen_task = rio::spawn(run_reopen_offline(shard.clone()));
    // In a cluster, the controller shard follows the metadata image (topics, leaders).
    let sync_task = (shard.id == ShardId::CONTROLLER && shard.shared.cluster.is_some())
        .then(|| rio::spawn(crate::cluster::topics::run_sync(shard.clone())));
    // Alone with several shards, the controller shard balances partitions between them.
    let balance_task = (shard.id == ShardId::CONTROLLER
        && shard.shared.cluster.is_none()
        && shard.shared.config.balance_cores
        && shard.shared.config.shards > 1)
        .then(|| rio::spawn(crate::balance::run(shard.clone())));
    let accept_task = rio::spawn(accept_loop(shard.clone(), Rc::new(listener)));
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
    if let Some(task) = balance_task {
        task.abort();
    }
    retention_task.abort();
    reopen_task.abort();
    if let Some(task) = sync_task {
        task.abort();
    }
    group_task.abort();
    let partitions = shard.take_partitions();
    // All at once: their flushes overlap (9,000 partitions closed one by one took 6 s).
    let closed = sync::join_all(partitions.iter().map(|p| p.close()).collect()).await;
    let mut failed = 0;
    for (partition, result) in partitions.iter().zip(closed) {
        if let Err(e) = result {
            error!("closing {} failed: {e}", partition.dir().display());
            failed += 1;
        }
    }
    if let Some(coordinator) = shard.take_coordinator() {
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
            Ok(job) => {
                crate::metrics::cross_shard_received();
                job(&shard)
            }
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
/// it), then every `log.retention.check.interval.ms`.
async fn run_retention(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.shared.config.log_retention_check_interval_ms);
    loop {
        shard.enforce_retention();
        rio::sleep(every).await;
    }
}

/// Reopens offline partitions every `offline-partition-retry-ms`.
async fn run_reopen_offline(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.shared.config.offline_partition_retry_ms);
    loop {
        rio::sleep(every).await;
        shard.reopen_offline().await;
    }
}

/// Accepts connections until the shard stops; each is served by its own task (`conn::serve`).
async fn accept_loop(shard: Rc<Shard>, listener: Rc<TcpListener>) {
    loop {
        let stop = shard.stop.notified();
        if shard.stopped.get() {
            return;
        }
        match select(accept(listener.clone()), stop).await {
            Either::Left(Ok(stream)) => {
                if let Some(reserve) = in_descriptor_reserve(&stream, &shard) {
                    drop(stream);
                    if let Some(held_back) = RESERVE_LOG.admit() {
                        warn!(
                            held_back,
                            "connection refused: the last {reserve} descriptors are kept for \
                             partitions (raise the descriptor limit, ulimit -n, for more \
                             connections)"
                        );
                    }
                    continue;
                }
                let ip = match stream.peer_addr() {
                    Ok(addr) => addr.ip(),
                    Err(_) => continue, // already gone
                };
                match ConnectionLimits::admit(&shard.shared.limits, ip) {
                    Ok(permit) => {
                        let _ = stream.set_nodelay(true);
                        drop(rio::spawn(crate::conn::serve(
                            shard.clone(),
                            Rc::new(stream),
                            permit,
                        )));
                    }
                    Err(limit) => {
                        if let Some(held_back) = REFUSED_LOG.admit() {
                            warn!(%ip, held_back, "connection refused: over {limit}");
                        }
                    }
                }
            }
            Either::Left(Err(e)) => {
                if let Some(held_back) = ACCEPT_FAILED_LOG.admit() {
                    warn!(shard = %shard.id, held_back, "accept failed: {e}");
                }
                // Out of descriptors or memory: back off rather than spin.
                rio::sleep(Duration::from_millis(10)).await;
            }
            Either::Right(()) => return,
        }
    }
}

/// Accept failures and refusals under a flood: logged once per 10 s, with the count held back.
static ACCEPT_FAILED_LOG: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
static REFUSED_LOG: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
static RESERVE_LOG: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));

/// The descriptors kept for partitions under a soft limit of `limit`: `descriptor-reserve`,
/// but never more than a quarter of the limit.
fn descriptor_reserve(limit: u64, configured: u64) -> u64 {
    configured.min(limit / 4)
}

/// Whether an accepted connection landed in the descriptor reserve (returned: its size).
/// The kernel hands out the lowest free descriptor number, so a connection numbered at or
/// above `limit - reserve` means every number below is taken: refusing it keeps the top
/// `reserve` numbers for segment files, index files and snapshots, and connections alone can
/// never make a segment roll fail with EMFILE. One getrlimit per accept, so a limit changed
/// while running (prlimit) counts.
fn in_descriptor_reserve(stream: &std::net::TcpStream, shard: &Shard) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let (limit, _) = rio::descriptor_limit().ok()?;
    let reserve = descriptor_reserve(limit, shard.shared.config.descriptor_reserve);
    let fd = u64::try_from(stream.as_raw_fd()).ok()?;
    (reserve > 0 && fd >= limit - reserve).then_some(reserve)
}
