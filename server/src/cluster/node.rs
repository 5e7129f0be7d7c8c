//! A node's part in the cluster: its controller voter (combined mode) or, for a broker that
//! is not a voter, a learner of the metadata log; its registration as a broker, its
//! heartbeats, and the metadata image the request handlers read.
//!
//! Everything here runs on the controller thread (`VoterThread`). Shards read the image
//! through [`ClusterNode::image`], a clone of an `Arc` under a mutex held for no longer than
//! the clone (metadata requests only, never a produce or fetch).

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::metadata::{MetadataImage, MetadataRecord, NodeId};
use super::quorum::{bind, ProposeError, VoterThread};
use crate::config::{ClusterConfig, Config};

/// Where a node keeps its registration epoch (one more at every start).
const EPOCH_FILE: &str = "broker-epoch";

/// What a shard knows of the cluster, delivered to its inbox whenever the image or the
/// active controller changes: shards never wait on the control plane.
#[derive(Debug)]
pub struct ClusterView {
    pub image: Arc<MetadataImage>,
    /// The active controller, if one is known.
    pub controller: Option<NodeId>,
    /// The voters' ids, in order.
    pub voters: Vec<NodeId>,
}

pub struct ClusterNode {
    pub node_id: NodeId,
    image: Arc<Mutex<Arc<MetadataImage>>>,
    /// Signalled after each apply: the publisher delivers the new image to the shards.
    applied: Arc<tokio::sync::Notify>,
    voter: VoterThread,
    /// The block of producer ids this node hands out: (next, end), from the quorum.
    producer_ids: Mutex<(i64, i64)>,
}

/// Producer ids a node takes from the quorum at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Why the cluster part could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    #[error("cannot listen for the controller quorum on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("cannot store the broker epoch in {path}: {source}")]
    Epoch {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("cannot start the controller quorum: {0}")]
    Quorum(io::Error),
}

/// Reads, bumps and durably stores this node's registration epoch: above every earlier one of
/// this data directory, and above the wall clock in milliseconds, so that a node whose data
/// directory was replaced still registers above its old incarnation.
fn next_epoch(data_dir: &Path) -> io::Result<u64> {
    let path = data_dir.join(EPOCH_FILE);
    let stored = match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is damaged", path.display()),
            )
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let epoch = (stored + 1).max(now_ms);
    let tmp = path.with_extension("tmp");
    {
        let mut file = fs::File::create(&tmp)?;
        writeln!(file, "{epoch}")?;
        file.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    fs::File::open(data_dir)?.sync_all()?;
    Ok(epoch)
}

impl ClusterNode {
    /// Starts the voter, then (in the background) registers this broker and heartbeats.
    pub fn start(
        config: &Config,
        cluster: &ClusterConfig,
    ) -> Result<ClusterNode, ClusterStartError> {
        let node_id = cluster.node_id;
        let addr = cluster
            .controller_listen
            .expect("the configuration gives every member a controller listener");
        let is_voter = cluster.voters.contains_key(&node_id);
        let listener = bind(addr).map_err(|source| ClusterStartError::Listen { addr, source })?;
        let epoch = next_epoch(&config.data_dir).map_err(|source| ClusterStartError::Epoch {
            path: config.data_dir.join(EPOCH_FILE),
            source,
        })?;
        let image: Arc<Mutex<Arc<MetadataImage>>> = Arc::default();
        let applied = Arc::new(tokio::sync::Notify::new());
        let (published, signal) = (image.clone(), applied.clone());
        let on_apply = Arc::new(move |new: &MetadataImage| {
            *published.lock().expect("image lock") = Arc::new(new.clone());
            signal.notify_one(); // kept as a permit if the publisher is busy
        });
        let dir = config.data_dir.join(super::raft_store::DIR);
        let voter = VoterThread::spawn(node_id, cluster.voters.clone(), &dir, listener, on_apply)
            .map_err(ClusterStartError::Quorum)?;
        let every = Duration::from_millis(cluster.heartbeat_interval_ms);
        let session = Duration::from_millis(cluster.session_timeout_ms);
        let registration = MetadataRecord::RegisterBroker {
            node: node_id,
            epoch,
            host: config.advertised_host.clone(),
            port: config.advertised_port as u16,
            rack: None,
        };
        let v = voter.voter().clone();
        let join_addr = addr.to_string();
        voter.runtime().spawn(async move {
            if !is_voter {
                join(&v, node_id, &join_addr).await;
            }
            register(&v, registration).await;
            loop {
                if let Err(e) = v.heartbeat(node_id, epoch).await {
                    tracing::debug!("heartbeat not delivered: {e}");
                }
                tokio::time::sleep(every).await;
            }
        });
        // Fencing checks run a few times per heartbeat interval.
        let v = voter.voter().clone();
        voter.runtime().spawn(v.run_liveness(every / 4, session));
        let role = if is_voter { "voter" } else { "learner" };
        tracing::info!(node = node_id, epoch, %addr, role, "controller quorum member started");
        Ok(ClusterNode {
            node_id,
            image,
            applied,
            voter,
            producer_ids: Mutex::new((0, 0)),
        })
    }

    /// Starts delivering [`ClusterView`]s to every shard's inbox: at once, then after every
    /// apply and every change of the active controller (and once a second regardless). Runs on
    /// the controller thread until the broker stops.
    pub fn attach(&self, shards: Vec<Arc<crate::shard::ShardHandle>>) {
        let image = self.image.clone();
        let applied = self.applied.clone();
        let voter = self.voter.voter().clone();
        let voters = voter.voter_ids();
        self.voter.runtime().spawn(async move {
            let mut metrics = voter.metrics();
            let mut last: Option<(Arc<MetadataImage>, Option<NodeId>)> = None;
            loop {
                let current = image.lock().expect("image lock").clone();
                let controller = voter.leader();
                let fresh = last
                    .as_ref()
                    .is_none_or(|(i, c)| !Arc::ptr_eq(i, &current) || *c != controller);
                if fresh {
                    let view = Arc::new(ClusterView {
                        image: current.clone(),
                        controller,
                        voters: voters.clone(),
                    });
                    if !deliver(&shards, &view).await {
                        return; // the broker stopped
                    }
                    last = Some((current, controller));
                }
                tokio::select! {
                    _ = applied.notified() => {}
                    _ = metrics.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    /// The metadata image as of the last record applied here.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.lock().expect("image lock").clone()
    }

    /// Commits `record` through the quorum; answers once it is applied on this node.
    pub async fn propose(&self, record: MetadataRecord) -> Result<(), ProposeError> {
        self.voter
            .propose(record)
            .await
            .unwrap_or(Err(ProposeError::Stopped))
    }

    /// A producer id unique in the cluster: from this node's block, taken from the quorum
    /// (`AllocateProducerIds`) when it runs out. The state machine refuses a block that overlaps
    /// one already given, so two nodes racing for the same block cannot both have it.
    pub async fn producer_id(&self) -> Result<i64, ProposeError> {
        loop {
            {
                let mut block = self.producer_ids.lock().expect("producer ids lock");
                if block.0 < block.1 {
                    block.0 += 1;
                    return Ok(block.0 - 1);
                }
            }
            let first = self.image().next_producer_id;
            let record = MetadataRecord::AllocateProducerIds {
                node: self.node_id,
                first,
                count: PRODUCER_ID_BLOCK,
            };
            match self.propose(record).await {
                Ok(()) => {
                    *self.producer_ids.lock().expect("producer ids lock") =
                        (first, first + PRODUCER_ID_BLOCK);
                }
                Err(ProposeError::Ignored(_)) => continue, // another node took it: the next
                Err(e) => return Err(e),
            }
        }
    }
}

/// Posts `view` to every shard's inbox (waiting while one is full). False once the shards
/// have stopped.
async fn deliver(shards: &[Arc<crate::shard::ShardHandle>], view: &Arc<ClusterView>) -> bool {
    for handle in shards {
        let view = view.clone();
        let mut job: crate::shard::Job = Box::new(move |shard| shard.set_cluster_view(view));
        loop {
            match handle.try_post(job) {
                Ok(true) => break,
                Ok(false) => return false,
                Err(back) => {
                    job = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    true
}

/// A broker-only node: asks until the quorum adds it as a learner of the metadata log.
async fn join(voter: &super::quorum::Voter, node: NodeId, addr: &str) {
    let mut delay = Duration::from_millis(100);
    loop {
        match voter.join(node, addr).await {
            Ok(()) => {
                tracing::info!(node, addr, "following the metadata log as a learner");
                return;
            }
            Err(e) => {
                tracing::debug!("not yet a learner: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Registers until the quorum takes it (it may have no leader yet at start).
async fn register(voter: &super::quorum::Voter, record: MetadataRecord) {
    let mut delay = Duration::from_millis(100);
    loop {
        match voter.propose(record.clone()).await {
            Ok(()) => {
                tracing::info!("registered with the controller quorum");
                return;
            }
            Err(ProposeError::Ignored(why)) => {
                tracing::error!("registration refused: {why}");
                return;
            }
            Err(e) => {
                tracing::debug!("registration not yet taken: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}
