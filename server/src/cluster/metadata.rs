//! The cluster's metadata as a replicated state machine: the records the controller quorum
//! commits to its Raft log (modelled on KRaft's metadata records), and the image every node
//! builds by applying them in log order.
//!
//! Applying is deterministic and total: every node applies every committed record, in the same
//! order, to the same result. The active controller validates a change before it proposes it
//! (`propose_*`), so a record that does not fit the image (an unknown topic, a stale broker
//! epoch) is a bug or a race with a record committed just before it; such a record changes
//! nothing, on every node alike, and `apply` says why.
//!
//! Plain data, no I/O and no clock: tested here without processes or a network.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::topics::TopicId;

/// A node of the cluster (Kafka's `node.id`): a broker, a controller voter, or both.
pub type NodeId = u64;

/// One committed change to the metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A broker (re)started and registered. `epoch` is its registration epoch (the Raft log
    /// index of this record, as KRaft uses the record's offset): a restarted broker gets a
    /// higher one, and requests carrying an older one are fenced. A new registration starts
    /// fenced until the broker has caught up with the metadata log (`UnfenceBroker`).
    RegisterBroker {
        node: NodeId,
        epoch: u64,
        /// The advertised client listener: what Metadata tells clients.
        host: String,
        port: u16,
        rack: Option<String>,
    },
    /// The broker missed heartbeats for `broker.session.timeout.ms` (or shut down): it leads
    /// nothing and is left out of Metadata. Partitions it led move to another in-sync replica.
    FenceBroker { node: NodeId, epoch: u64 },
    /// The broker caught up and heartbeats: it may lead partitions and is listed in Metadata.
    UnfenceBroker { node: NodeId, epoch: u64 },
    /// The broker left the cluster for good (decommissioned).
    UnregisterBroker { node: NodeId, epoch: u64 },
    /// A topic and all its partitions, created at once.
    CreateTopic {
        name: String,
        id: TopicId,
        /// Per-topic overrides under Kafka's names.
        configs: BTreeMap<String, String>,
        partitions: Vec<PartitionRecord>,
    },
    /// A topic is deleted: its partitions' replicas remove their logs.
    DeleteTopic { id: TopicId },
    /// Sets (`Some`) or removes (`None`) one per-topic config override.
    SetTopicConfig {
        id: TopicId,
        key: String,
        value: Option<String>,
    },
    /// Replaces every per-topic config override at once (AlterConfigs and
    /// IncrementalAlterConfigs; the proposer validated them).
    ReplaceTopicConfigs {
        id: TopicId,
        configs: BTreeMap<String, String>,
    },
    /// A change of one partition's leadership or replica set (KRaft's PartitionChangeRecord).
    /// Fields left `None` keep their value. A new leader (or leaving it leaderless) bumps the
    /// leader epoch; every change bumps the partition epoch, which the leader checks when it
    /// asks to shrink or grow the in-sync set (a stale request is refused).
    PartitionChange {
        id: TopicId,
        partition: u32,
        leader: Option<Option<NodeId>>,
        isr: Option<Vec<NodeId>>,
        replicas: Option<Vec<NodeId>>,
    },
    /// Producer ids `first..first + count` go to `node` (KRaft's ProducerIdsRecord): it hands
    /// them to idempotent and transactional producers; none is ever handed out twice.
    AllocateProducerIds {
        node: NodeId,
        first: i64,
        count: i64,
    },
    /// An ACL binding is added (idempotent: adding one that exists changes nothing).
    AddAcl(AclBinding),
    /// An ACL binding is removed.
    RemoveAcl(AclBinding),
    /// A SCRAM credential is set for a user and mechanism (salted; never the password).
    SetScramCredential(ScramCredential),
    /// A user's credential for one mechanism is removed.
    RemoveScramCredential { user: String, mechanism: String },
}

/// One partition as created: its replicas, in preference order (the first is the preferred
/// leader), and who leads it and is in sync at creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub leader: Option<NodeId>,
    /// 0 at creation; a snapshot carries the epochs reached.
    #[serde(default)]
    pub leader_epoch: i32,
    #[serde(default)]
    pub partition_epoch: i32,
}

impl PartitionRecord {
    /// A new partition on `replicas`: the first leads, all are in sync, epochs at 0.
    pub fn new(replicas: Vec<NodeId>) -> PartitionRecord {
        PartitionRecord {
            leader: replicas.first().copied(),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }
}

/// Kafka's ACL binding: a resource pattern and an access control entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// Kafka's resource type code (2 topic, 3 group, 4 cluster, 5 transactional id, ...).
    pub resource_type: i8,
    pub resource_name: String,
    /// 3 literal, 4 prefixed.
    pub pattern_type: i8,
    /// `User:alice`, or `User:*`.
    pub principal: String,
    /// `*` for any host.
    pub host: String,
    /// Kafka's operation code (2 all, 3 read, 4 write, 5 create, ...).
    pub operation: i8,
    /// 2 deny, 3 allow.
    pub permission: i8,
}

/// A SCRAM credential as Kafka stores it (RFC 5802): never the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub user: String,
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

/// A registered broker, as of the last record about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerImage {
    pub node: NodeId,
    pub epoch: u64,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub fenced: bool,
}

/// One partition's replication state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionImage {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub leader: Option<NodeId>,
    /// Bumped at every change of leader: stamped on the batches the leader appends, and
    /// checked by followers and clients (KIP-101, KIP-320).
    pub leader_epoch: i32,
    /// Bumped at every change of the partition's state.
    pub partition_epoch: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: TopicId,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionImage>,
}

/// Everything the metadata log says, as of one applied index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataImage {
    pub brokers: BTreeMap<NodeId, BrokerImage>,
    /// By topic id; names are unique among live topics.
    pub topics: BTreeMap<TopicId, TopicImage>,
    names: BTreeMap<String, TopicId>,
    /// The next producer id no node has been given.
    pub next_producer_id: i64,
    pub acls: BTreeSet<AclBinding>,
    /// By (user, mechanism).
    pub scram: BTreeMap<(String, String), ScramCredential>,
}

/// Why a committed record changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("broker {0} is not registered")]
    UnknownBroker(NodeId),
    #[error("broker {node} has registration epoch {current}, not {given}")]
    StaleBrokerEpoch {
        node: NodeId,
        current: u64,
        given: u64,
    },
    #[error("broker {node} is registered with a later epoch {current} than {given}")]
    OlderRegistration {
        node: NodeId,
        current: u64,
        given: u64,
    },
    #[error("a topic named {0:?} exists")]
    TopicNameTaken(String),
    #[error("a topic with this id exists")]
    TopicIdTaken,
    #[error("no topic with this id")]
    UnknownTopic,
    #[error("the topic has no partition {0}")]
    UnknownPartition(u32),
    #[error("a partition has no replicas, or names one twice")]
    BadReplicas,
    #[error("the leader or an in-sync replica is not a replica of the partition")]
    NotAReplica,
    #[error("producer ids {first}.. were asked for, but {next} is the next free one")]
    ProducerIdsOverlap { first: i64, next: i64 },
}

fn valid_replicas(replicas: &[NodeId]) -> bool {
    let distinct: BTreeSet<_> = replicas.iter().collect();
    !replicas.is_empty() && distinct.len() == replicas.len()
}

fn within(members: &[NodeId], replicas: &[NodeId]) -> bool {
    members.iter().all(|m| replicas.contains(m))
}

impl MetadataImage {
    /// The live topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(self.names.get(name)?)
    }

    /// Brokers that may lead partitions and are listed in Metadata.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The records that rebuild this image when applied to an empty one, in order: what a
    /// snapshot of the metadata log holds (as KRaft's snapshots hold records).
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        use MetadataRecord as R;
        let mut records = Vec::new();
        for b in self.brokers.values() {
            records.push(R::RegisterBroker {
                node: b.node,
                epoch: b.epoch,
                host: b.host.clone(),
                port: b.port,
                rack: b.rack.clone(),
            });
            if !b.fenced {
                // Before any topic exists, so it elects nothing.
                records.push(R::UnfenceBroker {
                    node: b.node,
                    epoch: b.epoch,
                });
            }
        }
        for t in self.topics.values() {
            records.push(R::CreateTopic {
                name: t.name.clone(),
                id: t.id,
                configs: t.configs.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| PartitionRecord {
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                    })
                    .collect(),
            });
        }
        if self.next_producer_id > 0 {
            records.push(R::AllocateProducerIds {
                node: 0,
                first: 0,
                count: self.next_producer_id,
            });
        }
        records.extend(self.acls.iter().cloned().map(R::AddAcl));
        records.extend(self.scram.values().cloned().map(R::SetScramCredential));
        records
    }

    /// Applies one committed record. On `Err` nothing changed.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), Ignored> {
        use MetadataRecord as R;
        match record {
            R::RegisterBroker {
                node,
                epoch,
                host,
                port,
                rack,
            } => {
                if let Some(current) = self.brokers.get(node) {
                    if current.epoch >= *epoch {
                        return Err(Ignored::OlderRegistration {
                            node: *node,
                            current: current.epoch,
                            given: *epoch,
                        });
                    }
                }
                self.brokers.insert(
                    *node,
                    BrokerImage {
                        node: *node,
                        epoch: *epoch,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: true,
                    },
                );
                Ok(())
            }
            R::FenceBroker { node, epoch } => {
                self.broker_at(*node, *epoch)?;
                self.brokers.get_mut(node).expect("checked").fenced = true;
                self.move_leadership_off(*node);
                Ok(())
            }
            R::UnfenceBroker { node, epoch } => {
                self.broker_at(*node, *epoch)?;
                self.brokers.get_mut(node).expect("checked").fenced = false;
                self.elect_leaderless();
                Ok(())
            }
            R::UnregisterBroker { node, epoch } => {
                self.broker_at(*node, *epoch)?;
                self.brokers.remove(node);
                self.move_leadership_off(*node);
                Ok(())
            }
            R::CreateTopic {
                name,
                id,
                configs,
                partitions,
            } => {
                if self.names.contains_key(name) {
                    return Err(Ignored::TopicNameTaken(name.clone()));
                }
                if self.topics.contains_key(id) {
                    return Err(Ignored::TopicIdTaken);
                }
                for p in partitions {
                    if !valid_replicas(&p.replicas) {
                        return Err(Ignored::BadReplicas);
                    }
                    let leader_ok = p.leader.is_none_or(|l| p.isr.contains(&l));
                    if !within(&p.isr, &p.replicas) || !leader_ok {
                        return Err(Ignored::NotAReplica);
                    }
                }
                let partitions = partitions
                    .iter()
                    .map(|p| PartitionImage {
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                    })
                    .collect();
                self.names.insert(name.clone(), *id);
                self.topics.insert(
                    *id,
                    TopicImage {
                        name: name.clone(),
                        id: *id,
                        configs: configs.clone(),
                        partitions,
                    },
                );
                Ok(())
            }
            R::DeleteTopic { id } => {
                let topic = self.topics.remove(id).ok_or(Ignored::UnknownTopic)?;
                self.names.remove(&topic.name);
                Ok(())
            }
            R::SetTopicConfig { id, key, value } => {
                let topic = self.topics.get_mut(id).ok_or(Ignored::UnknownTopic)?;
                match value {
                    Some(value) => topic.configs.insert(key.clone(), value.clone()),
                    None => topic.configs.remove(key),
                };
                Ok(())
            }
            R::ReplaceTopicConfigs { id, configs } => {
                let topic = self.topics.get_mut(id).ok_or(Ignored::UnknownTopic)?;
                topic.configs = configs.clone();
                Ok(())
            }
            R::PartitionChange {
                id,
                partition,
                leader,
                isr,
                replicas,
            } => {
                let topic = self.topics.get(id).ok_or(Ignored::UnknownTopic)?;
                let current = topic
                    .partitions
                    .get(*partition as usize)
                    .ok_or(Ignored::UnknownPartition(*partition))?;
                let replicas = replicas.clone().unwrap_or_else(|| current.replicas.clone());
                let isr = isr.clone().unwrap_or_else(|| current.isr.clone());
                let new_leader = leader.unwrap_or(current.leader);
                if !valid_replicas(&replicas) {
                    return Err(Ignored::BadReplicas);
                }
                if !within(&isr, &replicas) || new_leader.is_some_and(|l| !isr.contains(&l)) {
                    return Err(Ignored::NotAReplica);
                }
                let changed_leader = new_leader != current.leader;
                let part =
                    &mut self.topics.get_mut(id).expect("checked").partitions[*partition as usize];
                part.replicas = replicas;
                part.isr = isr;
                part.leader = new_leader;
                if changed_leader {
                    part.leader_epoch += 1;
                }
                part.partition_epoch += 1;
                Ok(())
            }
            R::AllocateProducerIds { first, count, .. } => {
                if *first < self.next_producer_id || *count < 1 {
                    return Err(Ignored::ProducerIdsOverlap {
                        first: *first,
                        next: self.next_producer_id,
                    });
                }
                self.next_producer_id = first + count;
                Ok(())
            }
            R::AddAcl(binding) => {
                self.acls.insert(binding.clone());
                Ok(())
            }
            R::RemoveAcl(binding) => {
                self.acls.remove(binding);
                Ok(())
            }
            R::SetScramCredential(credential) => {
                let key = (credential.user.clone(), credential.mechanism.clone());
                self.scram.insert(key, credential.clone());
                Ok(())
            }
            R::RemoveScramCredential { user, mechanism } => {
                self.scram.remove(&(user.clone(), mechanism.clone()));
                Ok(())
            }
        }
    }

    fn broker_at(&self, node: NodeId, epoch: u64) -> Result<&BrokerImage, Ignored> {
        let broker = self
            .brokers
            .get(&node)
            .ok_or(Ignored::UnknownBroker(node))?;
        if broker.epoch != epoch {
            return Err(Ignored::StaleBrokerEpoch {
                node,
                current: broker.epoch,
                given: epoch,
            });
        }
        Ok(broker)
    }

    /// A fenced or departed broker leads nothing and is out of every in-sync set: each
    /// partition it led goes to the first other in-sync replica that is live, or is left
    /// leaderless (offline) when there is none. Part of applying the fencing record, so every
    /// node computes the same result.
    fn move_leadership_off(&mut self, node: NodeId) {
        let live: BTreeSet<NodeId> = self.live_brokers().map(|b| b.node).collect();
        for topic in self.topics.values_mut() {
            for part in &mut topic.partitions {
                let led = part.leader == Some(node);
                if !part.isr.contains(&node) && !led {
                    continue;
                }
                // The last in-sync replica stays in the set (Kafka's ELR rule): it holds every
                // acknowledged write, so only it may lead again without losing any.
                if part.isr.len() > 1 {
                    part.isr.retain(|r| *r != node);
                }
                if led {
                    part.leader = part.isr.iter().copied().find(|r| live.contains(r));
                    part.leader_epoch += 1;
                }
                part.partition_epoch += 1;
            }
        }
    }

    /// Partitions left leaderless get a leader when an in-sync replica becomes live again.
    fn elect_leaderless(&mut self) {
        let live: BTreeSet<NodeId> = self.live_brokers().map(|b| b.node).collect();
        for topic in self.topics.values_mut() {
            for part in &mut topic.partitions {
                if part.leader.is_some() {
                    continue;
                }
                if let Some(leader) = part.isr.iter().copied().find(|r| live.contains(r)) {
                    part.leader = Some(leader);
                    part.leader_epoch += 1;
                    part.partition_epoch += 1;
                }
            }
        }
    }
}

/// Why the controller refuses to propose a topic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    /// Kafka: INVALID_REPLICATION_FACTOR.
    #[error("replication factor {wanted} is larger than the {live} live brokers")]
    NotEnoughBrokers { wanted: usize, live: usize },
    /// Kafka: INVALID_REPLICATION_FACTOR.
    #[error("replication factor must be at least 1")]
    ZeroReplicationFactor,
}

/// Chooses replicas for `partitions` new partitions over the live brokers, balanced: each
/// replica goes to the live broker holding the fewest replicas so far (counting the image's
/// topics), and each partition's first replica (its preferred leader) to the one among its
/// replicas leading the fewest, ties broken by node id, so a topic of N * brokers partitions
/// spreads N replicas and N leaders on each broker.
pub fn assign_replicas(
    image: &MetadataImage,
    partitions: usize,
    replication_factor: usize,
) -> Result<Vec<Vec<NodeId>>, AssignError> {
    let live: Vec<NodeId> = image.live_brokers().map(|b| b.node).collect();
    if replication_factor == 0 {
        return Err(AssignError::ZeroReplicationFactor);
    }
    if replication_factor > live.len() {
        return Err(AssignError::NotEnoughBrokers {
            wanted: replication_factor,
            live: live.len(),
        });
    }
    let mut replicas_on: BTreeMap<NodeId, usize> = live.iter().map(|&n| (n, 0)).collect();
    let mut leaders_on = replicas_on.clone();
    for part in image.topics.values().flat_map(|t| &t.partitions) {
        for r in &part.replicas {
            if let Some(count) = replicas_on.get_mut(r) {
                *count += 1;
            }
        }
        if let Some(count) = part.replicas.first().and_then(|l| leaders_on.get_mut(l)) {
            *count += 1;
        }
    }
    let mut assignment = Vec::with_capacity(partitions);
    for _ in 0..partitions {
        let mut chosen: Vec<NodeId> = Vec::with_capacity(replication_factor);
        for _ in 0..replication_factor {
            let next = live
                .iter()
                .copied()
                .filter(|n| !chosen.contains(n))
                .min_by_key(|n| (replicas_on[n], leaders_on[n], *n))
                .expect("replication factor <= live brokers");
            chosen.push(next);
        }
        let leader_at = (0..chosen.len())
            .min_by_key(|&i| (leaders_on[&chosen[i]], chosen[i]))
            .expect("at least one replica");
        chosen.swap(0, leader_at);
        for n in &chosen {
            *replicas_on.get_mut(n).expect("live") += 1;
        }
        *leaders_on.get_mut(&chosen[0]).expect("live") += 1;
        assignment.push(chosen);
    }
    Ok(assignment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MetadataRecord as R;

    fn register(image: &mut MetadataImage, node: NodeId, epoch: u64) {
        image
            .apply(&R::RegisterBroker {
                node,
                epoch,
                host: "127.0.0.1".into(),
                port: 9090 + node as u16,
                rack: None,
            })
            .expect("register");
        image
            .apply(&R::UnfenceBroker { node, epoch })
            .expect("unfence");
    }

    fn three_brokers() -> MetadataImage {
        let mut image = MetadataImage::default();
        for node in 1..=3 {
            register(&mut image, node, node * 10);
        }
        image
    }

    fn create(image: &mut MetadataImage, name: &str, id: u8, parts: usize, rf: usize) {
        let assignment = assign_replicas(image, parts, rf).expect("assign");
        let partitions = assignment.into_iter().map(PartitionRecord::new).collect();
        image
            .apply(&R::CreateTopic {
                name: name.into(),
                id: [id; 16],
                configs: BTreeMap::new(),
                partitions,
            })
            .expect("create");
    }

    #[test]
    fn twelve_partitions_spread_four_replicas_and_four_leaders_on_each_of_three_brokers() {
        for rf in [1, 3] {
            let mut image = three_brokers();
            create(&mut image, "t", 1, 12, rf);
            let topic = image.topic("t").expect("created");
            for node in 1..=3 {
                let leaders = topic
                    .partitions
                    .iter()
                    .filter(|p| p.leader == Some(node))
                    .count();
                let replicas = topic
                    .partitions
                    .iter()
                    .filter(|p| p.replicas.contains(&node))
                    .count();
                assert_eq!((leaders, replicas), (4, 4 * rf), "rf {rf}, broker {node}");
            }
        }
    }

    #[test]
    fn later_topics_fill_the_least_loaded_brokers_first() {
        let mut image = three_brokers();
        create(&mut image, "a", 1, 1, 1);
        create(&mut image, "b", 2, 1, 1);
        register(&mut image, 4, 40);
        create(&mut image, "c", 3, 2, 1);
        let leaders: Vec<_> = ["a", "b", "c"]
            .iter()
            .flat_map(|t| image.topic(t).expect("topic").partitions.clone())
            .map(|p| p.leader.expect("led"))
            .collect();
        assert_eq!(leaders, vec![1, 2, 3, 4]);
    }

    #[test]
    fn too_few_live_brokers_is_refused_and_fenced_ones_do_not_count() {
        let mut image = three_brokers();
        image
            .apply(&R::FenceBroker { node: 2, epoch: 20 })
            .expect("fence");
        assert_eq!(
            assign_replicas(&image, 1, 3),
            Err(AssignError::NotEnoughBrokers { wanted: 3, live: 2 })
        );
        assert_eq!(
            assign_replicas(&image, 1, 0),
            Err(AssignError::ZeroReplicationFactor)
        );
        let spread = assign_replicas(&image, 4, 1).expect("assign");
        assert!(
            spread.iter().all(|r| r[0] != 2),
            "nothing on a fenced broker"
        );
    }

    #[test]
    fn fencing_moves_leadership_to_a_live_in_sync_replica_and_bumps_the_leader_epoch() {
        let mut image = three_brokers();
        create(&mut image, "t", 1, 3, 3);
        let led_by_1: Vec<usize> = image
            .topic("t")
            .expect("t")
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.leader == Some(1))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(led_by_1.len(), 1);
        image
            .apply(&R::FenceBroker { node: 1, epoch: 10 })
            .expect("fence");
        let topic = image.topic("t").expect("t");
        for (i, part) in topic.partitions.iter().enumerate() {
            assert_ne!(part.leader, Some(1));
            assert!(part.leader.is_some(), "another in-sync replica leads");
            assert!(!part.isr.contains(&1), "out of every in-sync set");
            let moved = led_by_1.contains(&i);
            assert_eq!(part.leader_epoch, i32::from(moved), "partition {i}");
        }
    }

    #[test]
    fn a_partition_whose_only_replica_is_fenced_goes_offline_and_returns_with_it() {
        let mut image = three_brokers();
        create(&mut image, "t", 1, 3, 1);
        let on_2 = image
            .topic("t")
            .expect("t")
            .partitions
            .iter()
            .position(|p| p.replicas == [2])
            .expect("one partition on broker 2");
        image
            .apply(&R::FenceBroker { node: 2, epoch: 20 })
            .expect("fence");
        let part = &image.topic("t").expect("t").partitions[on_2];
        assert_eq!(
            part.leader, None,
            "offline: no other replica holds its data"
        );
        assert_eq!(
            part.isr,
            vec![2],
            "the last in-sync replica stays in the set"
        );
        // It restarts: a new registration (later epoch), then caught up.
        image
            .apply(&R::RegisterBroker {
                node: 2,
                epoch: 50,
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
            })
            .expect("re-register");
        assert_eq!(
            image.apply(&R::UnfenceBroker { node: 2, epoch: 20 }),
            Err(Ignored::StaleBrokerEpoch {
                node: 2,
                current: 50,
                given: 20
            }),
            "a record for the old incarnation changes nothing"
        );
        image
            .apply(&R::UnfenceBroker { node: 2, epoch: 50 })
            .expect("unfence");
        let part = &image.topic("t").expect("t").partitions[on_2];
        assert_eq!(part.leader, Some(2));
        assert_eq!(part.leader_epoch, 2, "one bump to offline, one back");
    }

    #[test]
    fn records_that_do_not_fit_change_nothing() {
        let mut image = three_brokers();
        create(&mut image, "t", 1, 2, 2);
        let before = image.clone();
        let bad = [
            R::FenceBroker { node: 9, epoch: 1 },
            R::RegisterBroker {
                node: 1,
                epoch: 5,
                host: "h".into(),
                port: 1,
                rack: None,
            },
            R::CreateTopic {
                name: "t".into(),
                id: [7; 16],
                configs: BTreeMap::new(),
                partitions: vec![],
            },
            R::CreateTopic {
                name: "u".into(),
                id: [7; 16],
                configs: BTreeMap::new(),
                partitions: vec![PartitionRecord {
                    replicas: vec![1, 1],
                    isr: vec![1],
                    leader: Some(1),
                    leader_epoch: 0,
                    partition_epoch: 0,
                }],
            },
            R::DeleteTopic { id: [9; 16] },
            R::PartitionChange {
                id: [1; 16],
                partition: 5,
                leader: None,
                isr: None,
                replicas: None,
            },
            R::PartitionChange {
                id: [1; 16],
                partition: 0,
                leader: Some(Some(3)),
                isr: Some(vec![1]),
                replicas: None,
            },
            R::AllocateProducerIds {
                node: 1,
                first: -5,
                count: 10,
            },
        ];
        for record in &bad {
            assert!(image.apply(record).is_err(), "{record:?} applied");
            assert_eq!(image, before, "{record:?} changed the image");
        }
    }

    #[test]
    fn partition_changes_bump_epochs_and_deletion_frees_the_name() {
        let mut image = three_brokers();
        create(&mut image, "t", 1, 1, 3);
        let replicas = image.topic("t").expect("t").partitions[0].replicas.clone();
        let shrink = R::PartitionChange {
            id: [1; 16],
            partition: 0,
            leader: None,
            isr: Some(vec![replicas[0]]),
            replicas: None,
        };
        image.apply(&shrink).expect("shrink the in-sync set");
        let part = &image.topic("t").expect("t").partitions[0];
        assert_eq!((part.leader_epoch, part.partition_epoch), (0, 1));
        image
            .apply(&R::PartitionChange {
                id: [1; 16],
                partition: 0,
                leader: Some(Some(replicas[1])),
                isr: Some(replicas.clone()),
                replicas: None,
            })
            .expect("new leader");
        let part = &image.topic("t").expect("t").partitions[0];
        assert_eq!((part.leader_epoch, part.partition_epoch), (1, 2));
        image
            .apply(&R::DeleteTopic { id: [1; 16] })
            .expect("delete");
        assert!(image.topic("t").is_none());
        create(&mut image, "t", 2, 1, 1);
        assert_eq!(image.topic("t").expect("again").id, [2; 16]);
    }

    #[test]
    fn producer_id_blocks_never_overlap_and_acls_and_credentials_are_sets() {
        let mut image = MetadataImage::default();
        let block = |node, first| R::AllocateProducerIds {
            node,
            first,
            count: 1000,
        };
        image.apply(&block(1, 0)).expect("first block");
        assert!(image.apply(&block(2, 500)).is_err(), "overlaps");
        image.apply(&block(2, 1000)).expect("next block");
        assert_eq!(image.next_producer_id, 2000);
        let acl = AclBinding {
            resource_type: 2,
            resource_name: "t".into(),
            pattern_type: 3,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: 3,
            permission: 3,
        };
        image.apply(&R::AddAcl(acl.clone())).expect("add");
        image.apply(&R::AddAcl(acl.clone())).expect("again: no-op");
        assert_eq!(image.acls.len(), 1);
        image.apply(&R::RemoveAcl(acl)).expect("remove");
        assert!(image.acls.is_empty());
        let credential = ScramCredential {
            user: "alice".into(),
            mechanism: "SCRAM-SHA-256".into(),
            salt: vec![1; 16],
            stored_key: vec![2; 32],
            server_key: vec![3; 32],
            iterations: 4096,
        };
        image
            .apply(&R::SetScramCredential(credential))
            .expect("set");
        assert_eq!(image.scram.len(), 1);
        image
            .apply(&R::RemoveScramCredential {
                user: "alice".into(),
                mechanism: "SCRAM-SHA-256".into(),
            })
            .expect("remove");
        assert!(image.scram.is_empty());
    }

    /// Every node applies the same records in the same order: the images agree, whatever the
    /// mix of valid and stale records.
    #[test]
    fn replaying_the_same_records_gives_the_same_image() {
        let mut records = Vec::new();
        for node in 1..=3u64 {
            records.push(R::RegisterBroker {
                node,
                epoch: node,
                host: "h".into(),
                port: 1,
                rack: None,
            });
            records.push(R::UnfenceBroker { node, epoch: node });
        }
        let mut image = MetadataImage::default();
        for r in &records {
            image.apply(r).expect("apply");
        }
        let assignment = assign_replicas(&image, 6, 2).expect("assign");
        records.push(R::CreateTopic {
            name: "t".into(),
            id: [1; 16],
            configs: BTreeMap::new(),
            partitions: assignment.into_iter().map(PartitionRecord::new).collect(),
        });
        records.push(R::FenceBroker { node: 2, epoch: 2 });
        records.push(R::FenceBroker { node: 2, epoch: 1 }); // stale: ignored everywhere
        records.push(R::UnfenceBroker { node: 2, epoch: 2 });
        let replay = |records: &[MetadataRecord]| {
            let mut image = MetadataImage::default();
            for r in records {
                let _ = image.apply(r);
            }
            image
        };
        assert_eq!(replay(&records), replay(&records));
        let image = replay(&records);
        let topic = image.topic("t").expect("t");
        assert!(topic.partitions.iter().all(|p| p.leader.is_some()));
        // A snapshot (the image as records) rebuilds the same image, epochs included.
        assert_eq!(replay(&image.to_records()), image);
    }
}
