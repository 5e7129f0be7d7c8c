//! Three voters in one process on loopback, each on its own thread and runtime as in the
//! broker: they elect a leader, commit records proposed through any of them, elect a new
//! leader when the old one stops, and a restarted voter catches up from its own data.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

fn register(node: NodeId, epoch: u64) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        node,
        epoch,
        host: "127.0.0.1".into(),
        port: 9092,
        rack: None,
    }
}

struct Cluster {
    dirs: BTreeMap<NodeId, PathBuf>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    voters: BTreeMap<NodeId, VoterThread>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn start(n: u64) -> Cluster {
        let tmp = tempfile::tempdir().expect("dir");
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
            listeners.insert(id, listener);
        }
        let addrs: BTreeMap<NodeId, SocketAddr> = listeners
            .iter()
            .map(|(&id, l)| (id, l.local_addr().expect("addr")))
            .collect();
        let dirs: BTreeMap<NodeId, PathBuf> = (1..=n)
            .map(|id| (id, tmp.path().join(format!("node-{id}"))))
            .collect();
        let mut cluster = Cluster {
            dirs,
            addrs,
            voters: BTreeMap::new(),
            _tmp: tmp,
        };
        for (id, listener) in listeners {
            cluster.spawn(id, listener);
        }
        cluster
    }

    fn spawn(&mut self, id: NodeId, listener: std::net::TcpListener) {
        let voters = self
            .addrs
            .iter()
            .map(|(&id, addr)| (id, addr.to_string()))
            .collect();
        let voter = VoterThread::spawn(
            id,
            voters,
            &self.dirs[&id],
            listener,
            Arc::new(|_: &MetadataImage| {}),
        )
        .expect("start voter");
        self.voters.insert(id, voter);
    }

    /// The leader all running voters agree on, within `limit`.
    fn leader(&self, limit: Duration) -> NodeId {
        let deadline = Instant::now() + limit;
        loop {
            let seen: Vec<Option<NodeId>> =
                self.voters.values().map(|v| v.voter().leader()).collect();
            if let Some(Some(leader)) = seen.first() {
                if seen.iter().all(|s| *s == Some(*leader)) && self.voters.contains_key(leader) {
                    return *leader;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn propose_via(&self, id: NodeId, record: MetadataRecord) -> Result<(), ProposeError> {
        let rx = self.voters[&id].propose(record);
        rx.blocking_recv().unwrap_or(Err(ProposeError::Stopped))
    }

    /// Waits until every running voter's image has `brokers` brokers; returns them all.
    fn converge(&self, brokers: usize) -> Vec<MetadataImage> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let images: Vec<MetadataImage> =
                self.voters.values().map(|v| v.voter().image()).collect();
            if images.iter().all(|i| i.brokers.len() == brokers) {
                return images;
            }
            assert!(
                Instant::now() < deadline,
                "images did not converge to {brokers} brokers"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn three_voters_elect_commit_fail_over_and_catch_up() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader(Duration::from_secs(10));
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    cluster
        .propose_via(follower, register(7, 1))
        .expect("forwarded to the leader");
    cluster
        .propose_via(leader, register(8, 2))
        .expect("at the leader");
    assert_eq!(
        cluster.propose_via(follower, register(8, 1)),
        Err(ProposeError::Ignored(
            "broker 8 is registered with a later epoch 2 than 1".into()
        )),
        "committed but stale: changes nothing, and says so"
    );
    let images = cluster.converge(2);
    assert!(
        images.windows(2).all(|w| w[0] == w[1]),
        "every voter has the same image"
    );

    // The leader stops: the other two elect one of themselves.
    let stopped_at = Instant::now();
    drop(cluster.voters.remove(&leader));
    let new_leader = cluster.leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    eprintln!("new leader after {:?}", stopped_at.elapsed());
    let survivor = *cluster
        .voters
        .keys()
        .find(|&&id| id != new_leader)
        .expect("survivor");
    cluster
        .propose_via(survivor, register(9, 3))
        .expect("commits with two of three");
    cluster.converge(3);

    // The old leader restarts from its own directory, on its old address, and catches up.
    let listener = bind(cluster.addrs[&leader]).expect("rebind");
    cluster.spawn(leader, listener);
    let images = cluster.converge(3);
    assert!(images.windows(2).all(|w| w[0] == w[1]));
}
