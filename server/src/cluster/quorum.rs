//! The controller quorum: an openraft node on a thread of its own (a current-thread tokio
//! runtime), its RPCs over TCP on the controller listener, and a handle the rest of the broker
//! uses to propose records and read the image.
//!
//! Wire format (controller listener, voter to voter and broker to controller): each request and
//! each reply is one frame, `[u32 length, big-endian][JSON]`; a connection carries one request
//! at a time. JSON keeps the control plane debuggable; metadata traffic is small.
//!
//! A proposal sent to a voter that does not lead is forwarded to the leader openraft names; a
//! proposal answers once its record is committed and applied, with whether the image took it.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::metadata::{MetadataImage, MetadataRecord, NodeId};
use super::raft_store::{LogStore, StateMachine, TypeConfig};

/// The largest frame accepted (snapshots travel whole).
const FRAME_MAX: u32 = 256 << 20;

#[derive(Serialize, Deserialize)]
enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A record to commit, from a broker or a voter that does not lead.
    Propose(MetadataRecord),
    /// A broker is alive, as of its registration `epoch` (Kafka's BrokerHeartbeat).
    Heartbeat {
        node: NodeId,
        epoch: u64,
    },
    /// A broker that is not a voter asks to follow the metadata log as a learner, replicated
    /// to at `addr`.
    Join {
        node: NodeId,
        addr: String,
    },
}

#[derive(Serialize, Deserialize)]
enum Reply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Propose(Result<(), ProposeError>),
    /// Whether the heartbeat reached the leader.
    Heartbeat(Result<(), ProposeError>),
    Join(Result<(), ProposeError>),
}

/// Why a proposal did not change the metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// Committed, but it no longer fitted the image (a race with another change).
    #[error("the record was committed but changed nothing: {0}")]
    Ignored(String),
    /// No leader is known, or it could not be reached: retry after a moment (Kafka:
    /// NOT_CONTROLLER / REQUEST_TIMED_OUT).
    #[error("no reachable controller leader: {0}")]
    NoLeader(String),
    #[error("the controller quorum stopped")]
    Stopped,
}

async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> io::Result<()> {
    let payload = serde_json::to_vec(value).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len()).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&payload);
    stream.write_all(&frame).await
}

async fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> io::Result<T> {
    let len = stream.read_u32().await?;
    if len > FRAME_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload).await?;
    serde_json::from_slice(&payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One request on a fresh or kept connection to `addr`, bounded by `ttl`.
async fn call(
    conn: &mut Option<TcpStream>,
    addr: &str,
    request: &Request,
    ttl: Duration,
) -> io::Result<Reply> {
    let exchange = async {
        if conn.is_none() {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            *conn = Some(stream);
        }
        let stream = conn.as_mut().expect("connected above");
        write_frame(stream, request).await?;
        read_frame::<Reply>(stream).await
    };
    let result = match tokio::time::timeout(ttl, exchange).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "controller RPC timed out",
        )),
    };
    if result.is_err() {
        *conn = None; // a broken or timed-out exchange leaves the stream unusable
    }
    result
}

/// Opens connections to other voters, one per target.
pub struct Network;

pub struct Connection {
    /// The voter or learner it reaches, named in the errors it reports.
    target: NodeId,
    addr: String,
    conn: Option<TcpStream>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            target,
            addr: node.addr.clone(),
            conn: None,
        }
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

fn unreachable<E: std::error::Error>(e: io::Error) -> RPCError<NodeId, BasicNode, E> {
    match e.kind() {
        io::ErrorKind::InvalidData => RPCError::Network(NetworkError::new(&e)),
        _ => RPCError::Unreachable(Unreachable::new(&e)),
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    let e = io::Error::new(io::ErrorKind::InvalidData, "reply of the wrong kind");
    RPCError::Network(NetworkError::new(&e))
}

impl Connection {
    async fn exchange<E: std::error::Error>(
        &mut self,
        request: Request,
        option: &RPCOption,
    ) -> Result<Reply, RPCError<NodeId, BasicNode, E>> {
        call(&mut self.conn, &self.addr, &request, option.hard_ttl())
            .await
            .map_err(unreachable)
    }

    /// An error the target answered with, as openraft wants it reported.
    #[allow(clippy::result_large_err)] // openraft's RaftNetwork fixes this error type
    fn remote<T, E: std::error::Error>(
        &self,
        reply: Result<T, RaftError<NodeId, E>>,
    ) -> RpcResult<T, E> {
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.exchange(Request::AppendEntries(rpc), &option).await? {
            Reply::AppendEntries(reply) => self.remote(reply),
            _ => Err(unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self
            .exchange(Request::InstallSnapshot(rpc), &option)
            .await?
        {
            Reply::InstallSnapshot(reply) => self.remote(reply),
            _ => Err(unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.exchange(Request::Vote(rpc), &option).await? {
            Reply::Vote(reply) => self.remote(reply),
            _ => Err(unexpected()),
        }
    }
}

/// The leader a connection goes to, and the connection (None until made, or after a failure).
type LeaderConnection = (NodeId, Option<TcpStream>);

/// A running voter.
#[derive(Clone)]
pub struct Voter {
    raft: Raft<TypeConfig>,
    state_machine: StateMachine,
    voters: Arc<BTreeMap<NodeId, String>>,
    /// The connection to the leader for forwarded proposals and heartbeats.
    forward: Arc<tokio::sync::Mutex<Option<LeaderConnection>>>,
    /// When each broker last heartbeated, with the epoch it gave: kept by the leader only (it
    /// is not replicated: a new leader starts every broker afresh).
    heartbeats: Arc<std::sync::Mutex<BTreeMap<NodeId, (u64, tokio::time::Instant)>>>,
}

/// Timing of the quorum: a leader heartbeats every 250 ms; a follower that hears nothing for
/// 1-2 s starts an election, so a dead leader is replaced within a few seconds.
fn raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "ringtail".into(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        ..Default::default()
    }
}

impl Voter {
    /// Starts node `node` of the quorum of `voters` (id to controller address) on the current
    /// tokio runtime, with its storage in `dir`, serving RPCs on `listener`. A voter with an
    /// empty log proposes the initial membership (every voter does; openraft keeps the first).
    /// A node not among the voters starts as a learner-to-be: it follows the log once a voter
    /// adds it (`join`).
    pub async fn start(
        node: NodeId,
        voters: BTreeMap<NodeId, String>,
        dir: &Path,
        listener: TcpListener,
        on_apply: Arc<dyn Fn(&MetadataImage) + Send + Sync>,
    ) -> io::Result<Voter> {
        let log = LogStore::open(dir)?;
        let state_machine = StateMachine::open(dir, on_apply)?;
        let config = raft_config().validate().map_err(io::Error::other)?;
        let raft = Raft::new(node, Arc::new(config), Network, log, state_machine.clone())
            .await
            .map_err(io::Error::other)?;
        let members: BTreeMap<NodeId, BasicNode> = voters
            .iter()
            .map(|(&id, addr)| (id, BasicNode::new(addr)))
            .collect();
        if voters.contains_key(&node) {
            match raft.initialize(members).await {
                Ok(()) => {}
                // Already initialised (a restart, or another voter's membership came first).
                Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let voter = Voter {
            raft,
            state_machine,
            voters: Arc::new(voters),
            forward: Arc::default(),
            heartbeats: Arc::default(),
        };
        tokio::spawn(serve(listener, voter.clone()));
        Ok(voter)
    }

    /// The image as of the last applied record.
    pub fn image(&self) -> MetadataImage {
        self.state_machine.image()
    }

    /// openraft's metrics, to watch for leadership changes.
    pub fn metrics(
        &self,
    ) -> tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    /// The voter this one believes leads, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Commits `record` (forwarding it to the leader when this voter does not lead) and waits
    /// until it is applied here too.
    pub async fn propose(&self, record: MetadataRecord) -> Result<(), ProposeError> {
        match self.raft.client_write(record.clone()).await {
            Ok(written) => {
                self.wait_applied(written.log_id.index).await;
                written.data.map_err(ProposeError::Ignored)
            }
            Err(e) => {
                let Some(forward) = e.forward_to_leader::<BasicNode>() else {
                    return Err(ProposeError::NoLeader(e.to_string()));
                };
                let Some(leader) = forward.leader_id else {
                    return Err(ProposeError::NoLeader("no leader elected".into()));
                };
                self.forward_to(leader, record).await
            }
        }
    }

    /// One request to the leader, on the kept connection.
    async fn to_leader(&self, leader: NodeId, request: Request) -> Result<Reply, ProposeError> {
        let Some(addr) = self.voters.get(&leader).cloned() else {
            return Err(ProposeError::NoLeader(format!(
                "leader {leader} is not a voter"
            )));
        };
        let mut forward = self.forward.lock().await;
        if forward.as_ref().is_none_or(|(id, _)| *id != leader) {
            *forward = Some((leader, None));
        }
        let conn = &mut forward.as_mut().expect("set above").1;
        call(conn, &addr, &request, Duration::from_secs(10))
            .await
            .map_err(|e| ProposeError::NoLeader(format!("leader {leader} at {addr}: {e}")))
    }

    /// Tells the leader that broker `node` (registered with `epoch`) is alive.
    pub async fn heartbeat(&self, node: NodeId, epoch: u64) -> Result<(), ProposeError> {
        let Some(leader) = self.leader() else {
            return Err(ProposeError::NoLeader("no leader elected".into()));
        };
        if leader == self.raft_id() {
            self.record_heartbeat(node, epoch);
            return Ok(());
        }
        match self
            .to_leader(leader, Request::Heartbeat { node, epoch })
            .await?
        {
            Reply::Heartbeat(result) => result,
            _ => Err(ProposeError::NoLeader("reply of the wrong kind".into())),
        }
    }

    /// Asks the quorum to add this broker-only node as a learner replicated to at `addr`:
    /// tries the leader it knows, else each voter (a voter that does not lead passes it on).
    pub async fn join(&self, node: NodeId, addr: &str) -> Result<(), ProposeError> {
        let mut targets: Vec<NodeId> = self.leader().into_iter().collect();
        targets.extend(self.voters.keys().copied());
        let mut last = ProposeError::NoLeader("no voter reachable".into());
        for target in targets {
            let request = Request::Join {
                node,
                addr: addr.to_string(),
            };
            match self.to_leader(target, request).await {
                Ok(Reply::Join(Ok(()))) => return Ok(()),
                Ok(Reply::Join(Err(e))) | Err(e) => last = e,
                Ok(_) => last = ProposeError::NoLeader("reply of the wrong kind".into()),
            }
        }
        Err(last)
    }

    /// On a voter: adds `node` as a learner if this voter leads, else passes the request on.
    async fn add_learner(&self, node: NodeId, addr: String) -> Result<(), ProposeError> {
        let Some(leader) = self.leader() else {
            return Err(ProposeError::NoLeader("no leader elected".into()));
        };
        if leader != self.raft_id() {
            return match self.to_leader(leader, Request::Join { node, addr }).await? {
                Reply::Join(result) => result,
                _ => Err(ProposeError::NoLeader("reply of the wrong kind".into())),
            };
        }
        let known = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .nodes()
            .any(|(id, n)| *id == node && n.addr == addr);
        if known {
            return Ok(()); // a restart: already a learner at this address
        }
        self.raft
            .add_learner(node, BasicNode::new(addr), false)
            .await
            .map(|_| ())
            .map_err(|e| ProposeError::NoLeader(e.to_string()))
    }

    fn raft_id(&self) -> NodeId {
        self.raft.metrics().borrow().id
    }

    fn record_heartbeat(&self, node: NodeId, epoch: u64) {
        let mut heartbeats = self.heartbeats.lock().expect("heartbeats lock");
        heartbeats.insert(node, (epoch, tokio::time::Instant::now()));
    }

    /// On the leader, every `every`: fences registered brokers silent for `session_timeout`
    /// and unfences fenced ones heartbeating with their current epoch (Kafka's rules). A voter
    /// that has just become leader first counts every broker as heard from now.
    pub async fn run_liveness(self, every: Duration, session_timeout: Duration) {
        let mut was_leader = false;
        loop {
            tokio::time::sleep(every).await;
            let leading = self.leader() == Some(self.raft_id());
            if !leading {
                was_leader = false;
                continue;
            }
            let image = self.image();
            let now = tokio::time::Instant::now();
            if !was_leader {
                was_leader = true;
                let mut heartbeats = self.heartbeats.lock().expect("heartbeats lock");
                for broker in image.brokers.values() {
                    let seen = heartbeats.entry(broker.node).or_insert((broker.epoch, now));
                    seen.1 = now;
                }
                continue;
            }
            let mut changes = Vec::new();
            {
                let heartbeats = self.heartbeats.lock().expect("heartbeats lock");
                for broker in image.brokers.values() {
                    let alive = heartbeats.get(&broker.node).is_some_and(|(epoch, at)| {
                        *epoch == broker.epoch && now.duration_since(*at) < session_timeout
                    });
                    let (node, epoch) = (broker.node, broker.epoch);
                    if broker.fenced && alive {
                        changes.push(MetadataRecord::UnfenceBroker { node, epoch });
                    } else if !broker.fenced && !alive {
                        tracing::warn!(
                            broker = node,
                            "no heartbeat within broker.session.timeout.ms: fenced"
                        );
                        changes.push(MetadataRecord::FenceBroker { node, epoch });
                    }
                }
            }
            for record in changes {
                if let Err(e) = self.propose(record).await {
                    tracing::debug!("liveness change not made: {e}");
                }
            }
        }
    }

    async fn forward_to(&self, leader: NodeId, record: MetadataRecord) -> Result<(), ProposeError> {
        let reply = self.to_leader(leader, Request::Propose(record)).await?;
        match reply {
            Reply::Propose(result) => {
                // Applied on the leader; wait until this voter has it too.
                let committed = self.raft.metrics().borrow().last_log_index.unwrap_or(0);
                self.wait_applied(committed).await;
                result
            }
            _ => Err(ProposeError::NoLeader("reply of the wrong kind".into())),
        }
    }

    /// Waits (bounded) until the state machine applied `index`.
    async fn wait_applied(&self, index: u64) {
        let mut metrics = self.raft.metrics();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if metrics
                    .borrow()
                    .last_applied
                    .is_some_and(|l| l.index >= index)
                {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Stops the voter (its listener stays until the runtime stops).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }

    /// The voter ids, for tests and Metadata.
    pub fn voter_ids(&self) -> Vec<NodeId> {
        self.voters.keys().copied().collect()
    }
}

/// Serves RPCs on the controller listener until the runtime stops.
async fn serve(listener: TcpListener, voter: Voter) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let voter = voter.clone();
        tokio::spawn(async move {
            while let Ok(request) = read_frame::<Request>(&mut stream).await {
                let reply = match request {
                    Request::AppendEntries(rpc) => {
                        Reply::AppendEntries(voter.raft.append_entries(rpc).await)
                    }
                    Request::Vote(rpc) => Reply::Vote(voter.raft.vote(rpc).await),
                    Request::InstallSnapshot(rpc) => {
                        Reply::InstallSnapshot(voter.raft.install_snapshot(rpc).await)
                    }
                    Request::Propose(record) => {
                        Reply::Propose(match voter.raft.client_write(record).await {
                            Ok(written) => written.data.map_err(ProposeError::Ignored),
                            Err(e) => Err(ProposeError::NoLeader(e.to_string())),
                        })
                    }
                    Request::Join { node, addr } => {
                        Reply::Join(voter.add_learner(node, addr).await)
                    }
                    Request::Heartbeat { node, epoch } => {
                        Reply::Heartbeat(if voter.leader() == Some(voter.raft_id()) {
                            voter.record_heartbeat(node, epoch);
                            Ok(())
                        } else {
                            Err(ProposeError::NoLeader("not the leader".into()))
                        })
                    }
                };
                if write_frame(&mut stream, &reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Binds the controller listener (blocking, at start, so a port in use stops the start).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A voter on its own thread with its own current-thread runtime: the control plane's home in
/// the broker. Dropping it stops the voter and the thread.
pub struct VoterThread {
    voter: Voter,
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VoterThread {
    pub fn spawn(
        node: NodeId,
        voters: BTreeMap<NodeId, String>,
        dir: &Path,
        listener: std::net::TcpListener,
        on_apply: Arc<dyn Fn(&MetadataImage) + Send + Sync>,
    ) -> io::Result<VoterThread> {
        let dir = dir.to_path_buf();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("controller-{node}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = async {
                        let listener = TcpListener::from_std(listener)?;
                        Voter::start(node, voters, &dir, listener, on_apply).await
                    };
                    match started.await {
                        Ok(voter) => {
                            let handle = tokio::runtime::Handle::current();
                            let _ = ready_tx.send(Ok((voter.clone(), handle)));
                            let _ = stop_rx.await;
                            voter.shutdown().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })?;
        let (voter, runtime) = ready_rx
            .recv()
            .map_err(|_| io::Error::other("the controller thread died at start"))??;
        Ok(VoterThread {
            voter,
            runtime,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn voter(&self) -> &Voter {
        &self.voter
    }

    /// The voter's runtime: where its background tasks run.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Proposes `record` from any thread or executor: it runs on the voter's runtime, and the
    /// answer comes back through a oneshot (a future that needs no tokio context to await).
    pub fn propose(
        &self,
        record: MetadataRecord,
    ) -> tokio::sync::oneshot::Receiver<Result<(), ProposeError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let voter = self.voter.clone();
        self.runtime.spawn(async move {
            let _ = tx.send(voter.propose(record).await);
        });
        rx
    }
}

impl Drop for VoterThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
