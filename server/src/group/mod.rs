//! The group coordinator: Kafka's classic consumer-group protocol and committed offsets.
//!
//! Each shard runs one [`Coordinator`] for the internal offsets partitions it owns
//! (`offsets::partition_of(group) % shards == shard`), and with them the state of their groups.
//! Requests for a group travel to that shard like partition requests do. Everything here runs
//! on that one thread; join and sync requests that must wait for the rest of the group hold a
//! oneshot that the state machine completes.
//!
//! States (Kafka's): Empty -> PreparingRebalance -> CompletingRebalance -> Stable, back to
//! PreparingRebalance whenever a member joins, leaves, changes its subscription or misses its
//! session timeout; Dead once deleted. Generations start at 1. The broker relays the protocol
//! bytes; the leader chosen for each generation computes the assignment.

pub mod offsets;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringtail_engine::format::batch::{build_keyed_batch, keyed_records};
use ringtail_engine::storage::{OsStorage, Storage};
use ringtail_engine::{FsyncPolicy, LogConfig, Partition};

use crate::clock::{Clock, SystemClock};
use crate::ids::ShardId;
use ringtail_engine::io::Notify;

use crate::protocol::error_code;
use crate::sync::{oneshot, Receiver, Sender};
use offsets::{Committed, Key};

// The group coordinator's error codes, defined with every other Kafka code in one place.
pub use crate::protocol::error_code::{
    FENCED_INSTANCE_ID, GROUP_ID_NOT_FOUND, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL,
    INVALID_GROUP_ID, INVALID_SESSION_TIMEOUT, MEMBER_ID_REQUIRED, NON_EMPTY_GROUP,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};

/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
const SESSION_TIMEOUT_MS: std::ops::RangeInclusive<i32> = 6_000..=1_800_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// What a member gets back from JoinGroup.
#[derive(Clone, Debug, Default)]
pub struct JoinResult {
    pub error_code: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: (member id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    fn error(code: i16, member_id: &str) -> JoinResult {
        JoinResult {
            error_code: code,
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinResult::default()
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SyncResult {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

pub struct JoinRequest {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member must first ask for a member id (KIP-394).
    pub require_known_member_id: bool,
}

pub struct SyncRequest {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    heartbeat_deadline: Instant,
    /// Joined in the current rebalance (PreparingRebalance only).
    joined: bool,
    join_waiter: Option<Sender<JoinResult>>,
    sync_waiter: Option<Sender<SyncResult>>,
}

impl Member {
    /// The subscription metadata this member sent for `protocol` (empty if none).
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }
}

/// A group as metrics report it ([`Coordinator::metrics`]).
#[derive(Clone, Debug)]
pub struct GroupFigures {
    pub id: String,
    pub state: &'static str,
    pub members: usize,
    /// (topic, partition, committed offset).
    pub offsets: Vec<(String, i32, i64)>,
}

pub struct Group {
    pub id: String,
    pub state: State,
    pub generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// In join order.
    members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending_ids: Vec<String>,
    offsets: BTreeMap<(String, i32), Committed>,
    rebalance_deadline: Option<Instant>,
    /// When the group last changed or committed, for expiring empty groups.
    last_activity_ms: i64,
}

impl Group {
    fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending_ids: Vec::new(),
            offsets: BTreeMap::new(),
            rebalance_deadline: None,
            last_activity_ms: now_ms,
        }
    }

    fn member(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    /// (id, instance id, metadata for the chosen protocol) of every member: what the leader gets.
    fn member_list(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect()
    }

    /// A static member's old id, replaced since by a restart of the same instance (KIP-345).
    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        let Some(instance) = instance_id else {
            return false;
        };
        self.members
            .iter()
            .any(|m| m.instance_id.as_deref() == Some(instance) && m.id != member_id)
    }

    fn has_member(&self, id: &str) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    /// The protocol every member supports, in the first member's order of preference.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .cloned()
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocols.is_empty();
        }
        if self
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != protocol_type)
        {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .iter()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == State::CompletingRebalance {
            for member in &mut self.members {
                if let Some(waiter) = member.sync_waiter.take() {
                    waiter.send(SyncResult {
                        error_code: REBALANCE_IN_PROGRESS,
                        ..SyncResult::default()
                    });
                }
            }
        }
        let was_empty = self.state == State::Empty;
        self.state = State::PreparingRebalance;
        for member in &mut self.members {
            member.joined = member.join_waiter.is_some();
        }
        let longest = self
            .members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        // A new group waits a little for more members (Kafka's group.initial.rebalance.delay.ms);
        // otherwise the join phase lasts until every member rejoined or the rebalance timeout.
        let wait = if was_empty {
            initial_delay.min(longest)
        } else {
            longest
        };
        self.rebalance_deadline = Some(now + wait);
    }

    fn all_joined(&self) -> bool {
        self.members.iter().all(|m| m.joined)
    }

    /// Ends the join phase: a new generation, its protocol and leader, answers to every joiner.
    fn complete_join(&mut self, now: Instant) {
        self.members.retain(|m| m.joined);
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.generation += 1;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.generation += 1;
        self.protocol = self.select_protocol();
        self.protocol_type = self.members.first().map(|m| m.protocol_type.clone());
        if !self.leader.as_ref().is_some_and(|l| self.has_member(l)) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.state = State::CompletingRebalance;
        tracing::debug!(group = %self.id, generation = self.generation, leader = ?self.leader, members = self.members.len(), "join phase complete");
        let everyone = self.member_list();
        let leader = self.leader.clone().unwrap_or_default();
        for member in &mut self.members {
            member.joined = false;
            member.assignment = Bytes::new();
            member.heartbeat_deadline = now + member.session_timeout;
            if let Some(waiter) = member.join_waiter.take() {
                waiter.send(JoinResult {
                    error_code: error_code::NONE,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: member.id.clone(),
                    members: if member.id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(position) = self.members.iter().position(|m| m.id == id) {
            let member = self.members.remove(position);
            if let Some(waiter) = member.join_waiter {
                waiter.send(JoinResult::error(UNKNOWN_MEMBER_ID, id));
            }
            if let Some(waiter) = member.sync_waiter {
                waiter.send(SyncResult {
                    error_code: UNKNOWN_MEMBER_ID,
                    ..SyncResult::default()
                });
            }
        }
    }

    /// After a member left or expired: rebalance the rest, or become empty.
    fn after_departure(&mut self, now: Instant, initial_delay: Duration) {
        match self.state {
            State::Stable | State::CompletingRebalance if !self.members.is_empty() => {
                self.prepare_rebalance(now, initial_delay)
            }
            State::Stable | State::CompletingRebalance => {
                self.state = State::Empty;
                self.generation += 1;
                self.leader = None;
                self.protocol = None;
            }
            State::PreparingRebalance if self.all_joined() => self.complete_join(now),
            _ => {}
        }
    }
}

enum StaticJoin {
    /// Answer now (fenced, or a restarted static follower taking its place back).
    Answer(JoinResult),
    /// Go on as a join of this (known) member id.
    Continue(String),
    /// A static member the group has not seen: join as a new member.
    New,
}

/// KIP-345: a join carrying a group instance id. A restarted static member (empty member id)
/// takes over its old place under a new member id, keeping its assignment: in a stable group it
/// gets the current generation back with no rebalance (a leader also gets the member list, as
/// Kafka answers it; its SyncGroup then returns the assignment it already has). A changed
/// subscription rebalances. A member id that is not the instance's current one is fenced.
fn static_join(
    group: &mut Group,
    instance: &str,
    request: &JoinRequest,
    now: Instant,
) -> StaticJoin {
    let current = group
        .members
        .iter()
        .find(|m| m.instance_id.as_deref() == Some(instance))
        .map(|m| m.id.clone());
    let Some(old_id) = current else {
        return StaticJoin::New;
    };
    if !request.member_id.is_empty() {
        if request.member_id != old_id {
            return StaticJoin::Answer(JoinResult::error(FENCED_INSTANCE_ID, &request.member_id));
        }
        return StaticJoin::Continue(old_id);
    }
    let new_id = member_id_for(&request.client_id);
    let was_leader = group.leader.as_deref() == Some(old_id.as_str());
    let member = group.member(&old_id).expect("found above");
    member.id = new_id.clone();
    member.heartbeat_deadline = now + member.session_timeout;
    let unchanged = member.protocols == request.protocols;
    if was_leader {
        group.leader = Some(new_id.clone());
    }
    if unchanged && group.state == State::Stable {
        return StaticJoin::Answer(JoinResult {
            error_code: error_code::NONE,
            generation: group.generation,
            protocol_type: group.protocol_type.clone(),
            protocol: group.protocol.clone(),
            leader: group.leader.clone().unwrap_or_default(),
            members: if was_leader {
                group.member_list()
            } else {
                Vec::new()
            },
            member_id: new_id,
        });
    }
    StaticJoin::Continue(new_id)
}

/// Settings the coordinator needs from the broker's configuration.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// Segment size of the offsets logs (compaction deletes whole sealed segments).
    pub offsets_segment_bytes: u64,
    pub initial_rebalance_delay: Duration,
    pub offsets_retention_ms: i64,
    pub fsync: FsyncPolicy,
}

/// The order in which durable writes to one offsets log are applied: a ticket per write, taken
/// when it is appended, served in ticket order (append order). Shard-local.
#[derive(Default)]
struct ApplyOrder {
    next_ticket: std::cell::Cell<u64>,
    serving: std::cell::Cell<u64>,
    /// Tickets whose write was dropped before its turn (its request went away): skipped.
    abandoned: RefCell<std::collections::BTreeSet<u64>>,
    served: Notify,
}

impl ApplyOrder {
    fn take_ticket(self: &Rc<Self>) -> Turn {
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        Turn {
            order: self.clone(),
            ticket,
        }
    }

    /// Writes appended and not yet applied.
    fn in_flight(&self) -> u64 {
        self.next_ticket.get() - self.serving.get()
    }
}

/// One write's place in its log's apply order; dropping it (after applying, or on failure)
/// lets the next write apply.
struct Turn {
    order: Rc<ApplyOrder>,
    ticket: u64,
}

impl Turn {
    async fn wait(&self) {
        loop {
            let served = self.order.served.notified();
            if self.order.serving.get() == self.ticket {
                return;
            }
            served.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let order = &self.order;
        if order.serving.get() != self.ticket {
            // Dropped before its turn: the turn passes over it when it comes.
            order.abandoned.borrow_mut().insert(self.ticket);
            return;
        }
        let mut next = self.ticket + 1;
        let mut abandoned = order.abandoned.borrow_mut();
        while abandoned.remove(&next) {
            next += 1;
        }
        order.serving.set(next);
        order.served.notify_all();
    }
}

/// What a coordinator keeps its offsets logs on and reads the time from.
pub struct Backing {
    pub storage: Rc<dyn Storage>,
    pub clock: Rc<dyn Clock>,
}

pub struct Coordinator {
    config: GroupConfig,
    /// Deadlines and timestamps: the system's clocks, or virtual time in tests.
    clock: Rc<dyn Clock>,
    groups: RefCell<HashMap<String, Group>>,
    /// Per offsets log: writes appended and not yet applied, applied in append order.
    orders: HashMap<u32, Rc<ApplyOrder>>,
    /// The internal offsets partitions this shard owns (replaced when an offline one is
    /// reopened).
    logs: RefCell<HashMap<u32, Rc<Partition>>>,
}

fn member_id_for(client_id: &str) -> String {
    let id = crate::ids::random_id();
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{client_id}-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Coordinator {
    /// Opens this shard's offsets partitions under `data_dir` and replays their commits.
    pub async fn open(
        data_dir: &std::path::Path,
        shard: ShardId,
        shards: usize,
        config: GroupConfig,
    ) -> Result<Coordinator, OpenError> {
        let backing = Backing {
            storage: Rc::new(OsStorage),
            clock: Rc::new(SystemClock),
        };
        Coordinator::open_on(backing, data_dir, shard, shards, config).await
    }

    /// [`Coordinator::open`] on the given storage and clock (a simulated disk and virtual
    /// time, in tests).
    pub async fn open_on(
        backing: Backing,
        data_dir: &std::path::Path,
        shard: ShardId,
        shards: usize,
        config: GroupConfig,
    ) -> Result<Coordinator, OpenError> {
        let Backing { storage, clock } = backing;
        let mut logs = HashMap::new();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let log_config = LogConfig {
            fsync: config.fsync,
            segment_bytes: config.offsets_segment_bytes,
            retention_ms: None,
            retention_bytes: None,
            ..LogConfig::default()
        };
        for partition in (0..offsets::PARTITIONS).filter(|p| *p as usize % shards == shard.0) {
            let dir = data_dir.join(format!("{}-{partition}", offsets::INTERNAL_PREFIX));
            let log = Partition::open_on(storage.clone(), &dir, log_config.clone())
                .await
                .map_err(|source| OpenError::Log {
                    path: dir.clone(),
                    source,
                })?;
            replay(&log, &mut groups)
                .await
                .map_err(|source| OpenError::Replay {
                    path: dir.clone(),
                    source,
                })?;
            logs.insert(partition, log);
        }
        Ok(Coordinator {
            config,
            clock,
            groups: RefCell::new(groups),
            orders: logs.keys().map(|&p| (p, Rc::default())).collect(),
            logs: RefCell::new(logs),
        })
    }

    /// Closes the offsets logs; returns how many failed (each logged).
    pub async fn close(&self) -> usize {
        let mut failed = 0;
        let logs: Vec<Rc<Partition>> = self.logs.borrow().values().cloned().collect();
        for log in &logs {
            if let Err(err) = log.close().await {
                tracing::error!("closing offsets log {} failed: {err}", log.dir().display());
                failed += 1;
            }
        }
        failed
    }

    fn log_for(&self, group: &str) -> Option<Rc<Partition>> {
        self.log(offsets::partition_of(group))
    }

    /// Every offsets log here, by partition of `__consumer_offsets`.
    pub fn logs(&self) -> Vec<(u32, Rc<Partition>)> {
        self.logs
            .borrow()
            .iter()
            .map(|(index, log)| (*index, log.clone()))
            .collect()
    }

    /// For metrics: each live group's id, state, member count and committed offsets
    /// ((topic, partition) -> offset).
    pub fn metrics(&self) -> Vec<GroupFigures> {
        self.groups
            .borrow()
            .values()
            .filter(|g| g.state != State::Dead)
            .map(|g| GroupFigures {
                id: g.id.clone(),
                state: g.state.name(),
                members: g.members.len(),
                offsets: g
                    .offsets
                    .iter()
                    .map(|((topic, partition), c)| (topic.clone(), *partition, c.offset))
                    .collect(),
            })
            .collect()
    }

    /// The internal offsets log of partition `partition`, if this shard owns it: served
    /// read-only as `__consumer_offsets`.
    pub fn log(&self, partition: u32) -> Option<Rc<Partition>> {
        self.logs.borrow().get(&partition).cloned()
    }

    /// Reopens the offsets logs that a storage failure took offline ([`Partition::reopen`]).
    /// The groups' state in memory stays: it holds nothing the log did not acknowledge. Returns
    /// the first failure of those that are still offline, with their count.
    pub async fn reopen_offline(&self) -> Option<(usize, ringtail_engine::OpenError)> {
        let offline: Vec<(u32, Rc<Partition>)> = self
            .logs
            .borrow()
            .iter()
            .filter(|(_, log)| log.poisoned().is_some())
            .map(|(&p, log)| (p, log.clone()))
            .collect();
        let mut failed: Option<(usize, ringtail_engine::OpenError)> = None;
        for (partition, log) in offline {
            match log.reopen().await {
                Ok(reopened) => {
                    self.logs.borrow_mut().insert(partition, reopened);
                }
                Err(err) => match &mut failed {
                    Some((count, _)) => *count += 1,
                    None => failed = Some((1, err)),
                },
            }
        }
        failed
    }

    /// Appends the group's metadata record (Kafka's GroupMetadata key and value) for readers of
    /// `__consumer_offsets`. Not waited for: replay does not use it, so losing the newest one in
    /// a crash loses nothing but a monitor's view until the next rebalance.
    fn record_group(&self, group: &Group) {
        let Some(log) = self.log_for(&group.id) else {
            return;
        };
        let (key, value) = group_metadata_record(group, self.clock.now_ms());
        let batch = build_keyed_batch(
            &[(key.as_slice(), Some(value.as_slice()))],
            self.clock.now_ms(),
        );
        if let Err(err) = log.append(BytesMut::from(&batch[..]), self.clock.now_ms()) {
            tracing::warn!(group = %group.id, "cannot record group metadata: {err}");
        }
    }

    /// JoinGroup: an answer now, or a receiver completed when the join phase ends.
    pub fn join(&self, request: JoinRequest) -> Result<JoinResult, Receiver<JoinResult>> {
        let now = self.clock.now();
        tracing::debug!(group = %request.group, member = %request.member_id, "join");
        let mut groups = self.groups.borrow_mut();
        if request.group.is_empty() {
            return Ok(JoinResult::error(INVALID_GROUP_ID, &request.member_id));
        }
        if !SESSION_TIMEOUT_MS.contains(&request.session_timeout_ms) {
            return Ok(JoinResult::error(
                INVALID_SESSION_TIMEOUT,
                &request.member_id,
            ));
        }
        if !request.member_id.is_empty() && !groups.contains_key(&request.group) {
            return Ok(JoinResult::error(UNKNOWN_MEMBER_ID, &request.member_id));
        }
        let group = groups
            .entry(request.group.clone())
            .or_insert_with(|| Group::new(&request.group, self.clock.now_ms()));
        if group.state == State::Dead {
            return Ok(JoinResult::error(
                error_code::COORDINATOR_NOT_AVAILABLE,
                &request.member_id,
            ));
        }
        if !group.supports(&request.protocol_type, &request.protocols) {
            return Ok(JoinResult::error(
                INCONSISTENT_GROUP_PROTOCOL,
                &request.member_id,
            ));
        }
        group.last_activity_ms = self.clock.now_ms();
        if let Some(instance) = &request.instance_id {
            match static_join(group, instance, &request, now) {
                StaticJoin::Answer(result) => return Ok(result),
                StaticJoin::Continue(member_id) => {
                    return self.join_known(group, request, member_id, now)
                }
                StaticJoin::New => {}
            }
        }
        let mut member_id = request.member_id.clone();
        if request.instance_id.is_some() {
            // A new static member: no MEMBER_ID_REQUIRED round trip (KIP-345).
            member_id = member_id_for(&request.client_id);
        } else if member_id.is_empty() {
            member_id = member_id_for(&request.client_id);
            if request.require_known_member_id {
                group.pending_ids.push(member_id.clone());
                return Ok(JoinResult::error(MEMBER_ID_REQUIRED, &member_id));
            }
        } else if let Some(position) = group.pending_ids.iter().position(|id| *id == member_id) {
            group.pending_ids.remove(position);
        } else if !group.has_member(&member_id) {
            return Ok(JoinResult::error(UNKNOWN_MEMBER_ID, &member_id));
        }
        self.join_known(group, request, member_id, now)
    }

    /// Registers the join of a member whose id is settled (new, or known to the group).
    fn join_known(
        &self,
        group: &mut Group,
        request: JoinRequest,
        member_id: String,
        now: Instant,
    ) -> Result<JoinResult, Receiver<JoinResult>> {
        let (tx, rx) = oneshot();
        let session_timeout = Duration::from_millis(request.session_timeout_ms as u64);
        let rebalance_timeout = Duration::from_millis(
            request.rebalance_timeout_ms.max(request.session_timeout_ms) as u64,
        );
        let existing = group
            .member(&member_id)
            .map(|m| m.protocols == request.protocols);
        match existing {
            Some(unchanged) => {
                let is_leader = group.leader.as_deref() == Some(member_id.as_str());
                // A follower re-joining with the same subscription in a settled group gets the
                // current generation back without disturbing the others.
                if unchanged
                    && !is_leader
                    && matches!(group.state, State::Stable | State::CompletingRebalance)
                {
                    let member = group.member(&member_id).expect("present");
                    member.heartbeat_deadline = now + member.session_timeout;
                    return Ok(JoinResult {
                        error_code: error_code::NONE,
                        generation: group.generation,
                        protocol_type: group.protocol_type.clone(),
                        protocol: group.protocol.clone(),
                        leader: group.leader.clone().unwrap_or_default(),
                        member_id,
                        members: Vec::new(),
                    });
                }
                let member = group.member(&member_id).expect("present");
                member.protocols = request.protocols;
                member.session_timeout = session_timeout;
                member.rebalance_timeout = rebalance_timeout;
                member.join_waiter = Some(tx);
                member.joined = true;
                member.heartbeat_deadline = now + session_timeout;
            }
            None => group.members.push(Member {
                id: member_id,
                instance_id: request.instance_id,
                client_id: request.client_id,
                client_host: request.client_host,
                session_timeout,
                rebalance_timeout,
                protocol_type: request.protocol_type,
                protocols: request.protocols,
                assignment: Bytes::new(),
                heartbeat_deadline: now + session_timeout,
                joined: true,
                join_waiter: Some(tx),
                sync_waiter: None,
            }),
        }
        if group.state != State::PreparingRebalance {
            group.prepare_rebalance(now, self.config.initial_rebalance_delay);
        } else if group.all_joined() && group.generation > 0 {
            group.complete_join(now);
        }
        Err(rx)
    }

    /// SyncGroup: an answer now, or a receiver completed when the leader's assignment arrives.
    pub fn sync(&self, request: SyncRequest) -> Result<SyncResult, Receiver<SyncResult>> {
        let now = self.clock.now();
        let mut groups = self.groups.borrow_mut();
        let error = |code| {
            Ok(SyncResult {
                error_code: code,
                ..SyncResult::default()
            })
        };
        let Some(group) = groups.get_mut(&request.group) else {
            return error(UNKNOWN_MEMBER_ID);
        };
        if group.fenced(&request.member_id, request.instance_id.as_deref()) {
            return error(FENCED_INSTANCE_ID);
        }
        if !group.has_member(&request.member_id) {
            return error(UNKNOWN_MEMBER_ID);
        }
        if request.generation != group.generation {
            return error(ILLEGAL_GENERATION);
        }
        let (protocol_type, protocol) = (group.protocol_type.clone(), group.protocol.clone());
        match group.state {
            State::PreparingRebalance => return error(REBALANCE_IN_PROGRESS),
            State::Stable => {
                let member = group.member(&request.member_id).expect("present");
                member.heartbeat_deadline = now + member.session_timeout;
                return Ok(SyncResult {
                    error_code: error_code::NONE,
                    protocol_type,
                    protocol,
                    assignment: member.assignment.clone(),
                });
            }
            State::CompletingRebalance => {}
            State::Empty | State::Dead => return error(UNKNOWN_MEMBER_ID),
        }
        let (tx, rx) = oneshot();
        {
            let member = group.member(&request.member_id).expect("present");
            member.sync_waiter = Some(tx);
            member.heartbeat_deadline = now + member.session_timeout;
        }
        if group.leader.as_deref() == Some(request.member_id.as_str()) {
            tracing::debug!(group = %group.id, generation = group.generation, assignments = request.assignments.len(), "leader sync");
            let assignments: HashMap<String, Bytes> = request.assignments.into_iter().collect();
            for member in &mut group.members {
                member.assignment = assignments.get(&member.id).cloned().unwrap_or_default();
                if let Some(waiter) = member.sync_waiter.take() {
                    waiter.send(SyncResult {
                        error_code: error_code::NONE,
                        protocol_type: protocol_type.clone(),
                        protocol: protocol.clone(),
                        assignment: member.assignment.clone(),
                    });
                }
            }
            group.state = State::Stable;
            group.last_activity_ms = self.clock.now_ms();
            self.record_group(group);
        }
        Err(rx)
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let now = self.clock.now();
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        if group.fenced(member_id, instance_id) {
            return FENCED_INSTANCE_ID;
        }
        let state = group.state;
        let current = group.generation;
        let Some(member) = group.member(member_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        if generation != current {
            return ILLEGAL_GENERATION;
        }
        member.heartbeat_deadline = now + member.session_timeout;
        match state {
            State::PreparingRebalance => REBALANCE_IN_PROGRESS,
            State::Stable | State::CompletingRebalance => error_code::NONE,
            State::Empty | State::Dead => UNKNOWN_MEMBER_ID,
        }
    }

    /// LeaveGroup for each (member id, instance id); one error code per member.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let now = self.clock.now();
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return members.iter().map(|_| UNKNOWN_MEMBER_ID).collect();
        };
        let mut codes = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let id = if member_id.is_empty() {
                instance_id
                    .as_ref()
                    .and_then(|instance| {
                        group
                            .members
                            .iter()
                            .find(|m| m.instance_id.as_ref() == Some(instance))
                    })
                    .map(|m| m.id.clone())
            } else {
                Some(member_id.clone())
            };
            match id.filter(|id| group.has_member(id)) {
                Some(id) => {
                    group.remove_member(&id);
                    codes.push(error_code::NONE);
                }
                None => codes.push(UNKNOWN_MEMBER_ID),
            }
        }
        group.last_activity_ms = self.clock.now_ms();
        group.after_departure(now, self.config.initial_rebalance_delay);
        codes
    }

    /// Expires members that missed their session timeout and ends join phases whose time is up.
    pub fn tick(&self) {
        let now = self.clock.now();
        let mut groups = self.groups.borrow_mut();
        for group in groups.values_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|m| m.join_waiter.is_none() && m.heartbeat_deadline <= now)
                .map(|m| m.id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    group.remove_member(id);
                }
                group.after_departure(now, self.config.initial_rebalance_delay);
            }
            if group.state == State::PreparingRebalance
                && (group.rebalance_deadline.is_some_and(|d| d <= now)
                    || (group.all_joined() && group.generation > 0 && !group.members.is_empty()))
            {
                group.complete_join(now);
            }
        }
    }

    /// Checks a commit against the group's generation. None: allowed.
    pub fn commit_check(&self, group_id: &str, generation: i32, member_id: &str) -> Option<i16> {
        let groups = self.groups.borrow();
        let group = groups.get(group_id);
        if generation < 0 && member_id.is_empty() {
            // A simple commit, outside group management: only for groups with no members.
            return match group {
                Some(g) if !g.members.is_empty() => Some(UNKNOWN_MEMBER_ID),
                _ => None,
            };
        }
        let Some(group) = group else {
            return Some(ILLEGAL_GENERATION);
        };
        if !group.has_member(member_id) {
            return Some(UNKNOWN_MEMBER_ID);
        }
        if generation != group.generation {
            return Some(ILLEGAL_GENERATION);
        }
        if group.state == State::CompletingRebalance {
            return Some(REBALANCE_IN_PROGRESS);
        }
        None
    }

    /// Writes commits durably (under the acks=all rules of the fsync policy), then applies them.
    pub async fn commit(
        &self,
        group_id: &str,
        entries: Vec<(String, i32, Committed)>,
    ) -> Result<(), i16> {
        if entries.is_empty() {
            return Ok(());
        }
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = entries
            .iter()
            .map(|(topic, partition, committed)| {
                let key = Key {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                (
                    offsets::encode_key(&key),
                    Some(offsets::encode_value(committed)),
                )
            })
            .collect();
        let _turn = self.append_durably(group_id, &records).await?;
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, self.clock.now_ms()));
        group.last_activity_ms = self.clock.now_ms();
        for (topic, partition, committed) in entries {
            group.offsets.insert((topic, partition), committed);
        }
        Ok(())
    }

    /// Committed offsets of a group: those asked for, or all when `wanted` is None.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<(String, Vec<(i32, Option<Committed>)>)> {
        let groups = self.groups.borrow();
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        match wanted {
            Some(wanted) => wanted
                .iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .iter()
                        .map(|p| {
                            (
                                *p,
                                offsets.and_then(|o| o.get(&(topic.clone(), *p))).cloned(),
                            )
                        })
                        .collect();
                    (topic.clone(), found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<Committed>)>> = BTreeMap::new();
                for ((topic, partition), committed) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*partition, Some(committed.clone())));
                }
                by_topic.into_iter().collect()
            }
        }
    }

    /// (group id, protocol type, state) of every group here.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        self.groups
            .borrow()
            .values()
            .filter(|g| g.state != State::Dead)
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_else(|| "consumer".into()),
                    g.state.name(),
                )
            })
            .collect()
    }

    /// For DescribeGroups: state, protocol type, protocol, members (id, instance, client,
    /// host, metadata of the chosen protocol, assignment). None: no such group.
    #[allow(clippy::type_complexity)]
    pub fn describe(
        &self,
        group_id: &str,
    ) -> Option<(
        &'static str,
        String,
        String,
        Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
    )> {
        let groups = self.groups.borrow();
        let group = groups.get(group_id)?;
        let protocol = group.protocol.clone().unwrap_or_default();
        let members = group
            .members
            .iter()
            .map(|m| {
                let metadata = m.metadata_for(&protocol);
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    metadata,
                    m.assignment.clone(),
                )
            })
            .collect();
        Some((
            group.state.name(),
            group.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        ))
    }

    /// DeleteGroups: only groups without members; their offsets are deleted durably.
    pub async fn delete(&self, group_id: &str) -> i16 {
        let keys: Vec<(String, i32)> = {
            let groups = self.groups.borrow();
            match groups.get(group_id) {
                None => return GROUP_ID_NOT_FOUND,
                Some(g) if !g.members.is_empty() => return NON_EMPTY_GROUP,
                Some(g) => g.offsets.keys().cloned().collect(),
            }
        };
        let _turn = match self.tombstone(group_id, &keys).await {
            Ok(turn) => turn,
            Err(code) => return code,
        };
        let mut groups = self.groups.borrow_mut();
        if let Some(group) = groups.get_mut(group_id) {
            for key in &keys {
                group.offsets.remove(key);
            }
            if !group.offsets.is_empty() || !group.members.is_empty() {
                // A commit or a join landed while the tombstones were being written: the log
                // keeps that commit (it is not tombstoned), so the group stays with it.
                return error_code::NONE;
            }
        }
        if let Some(log) = self.log_for(group_id) {
            // The group's metadata record goes too (not waited for, as it is written).
            let key = offsets::encode_group_key(group_id);
            let batch = build_keyed_batch(&[(key.as_slice(), None)], self.clock.now_ms());
            let _ = log.append(BytesMut::from(&batch[..]), self.clock.now_ms());
        }
        if let Some(group) = groups.get_mut(group_id) {
            group.state = State::Dead;
        }
        groups.remove(group_id);
        error_code::NONE
    }

    /// Writes tombstones for `keys` durably; the caller removes them while holding the turn
    /// (None: there was nothing to write).
    async fn tombstone(&self, group_id: &str, keys: &[(String, i32)]) -> Result<Option<Turn>, i16> {
        if keys.is_empty() {
            return Ok(None);
        }
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = keys
            .iter()
            .map(|(topic, partition)| {
                (
                    offsets::encode_key(&Key {
                        group: group_id.to_string(),
                        topic: topic.clone(),
                        partition: *partition,
                    }),
                    None,
                )
            })
            .collect();
        self.append_durably(group_id, &records).await.map(Some)
    }

    /// Deletes every committed offset of `topic` (the topic was deleted).
    pub async fn forget_topic(&self, topic: &str) {
        let doomed: Vec<(String, Vec<(String, i32)>)> = self
            .groups
            .borrow()
            .values()
            .map(|g| {
                (
                    g.id.clone(),
                    g.offsets
                        .keys()
                        .filter(|(t, _)| t == topic)
                        .cloned()
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, keys)| !keys.is_empty())
            .collect();
        for (group_id, keys) in doomed {
            if let Ok(_turn) = self.tombstone(&group_id, &keys).await {
                if let Some(group) = self.groups.borrow_mut().get_mut(&group_id) {
                    for key in &keys {
                        group.offsets.remove(key);
                    }
                }
            }
        }
    }

    /// Appends records to the group's offsets log and waits for the acks=all durability rule,
    /// then for its turn: every write appended before it to the same log has been applied.
    /// The caller applies this write while holding the returned [`Turn`] (no await in between),
    /// so the in-memory state changes in log order, the order replay uses, whatever order the
    /// waiters wake in. A write counts as in flight until its turn ends, so a compaction never
    /// snapshots the map while a write it lacks sits in the log.
    async fn append_durably(
        &self,
        group_id: &str,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<Turn, i16> {
        let partition = offsets::partition_of(group_id);
        let (Some(log), Some(order)) = (self.log(partition), self.orders.get(&partition)) else {
            return Err(error_code::COORDINATOR_NOT_AVAILABLE);
        };
        let refs: Vec<(&[u8], Option<&[u8]>)> = records
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        let batch = build_keyed_batch(&refs, self.clock.now_ms());
        let info = log
            .append(BytesMut::from(&batch[..]), self.clock.now_ms())
            .map_err(|e| crate::protocol::errors::append_error_code(&e))?;
        let turn = order.take_ticket();
        let durable = log.wait_for_ack(info.last_offset, true).await;
        turn.wait().await;
        durable.map_err(|_| error_code::KAFKA_STORAGE_ERROR)?;
        Ok(turn)
    }

    /// Compacts offsets logs with more than `sealed_segments_min` sealed segments: appends every
    /// live committed offset of their groups as snapshot batches, waits for them to be durable,
    /// then deletes the segments below the snapshot (every record there is superseded by it).
    /// Replay from the new log start gives the same offsets. Skipped while an offsets write is
    /// in flight.
    pub async fn compact(&self, sealed_segments_min: usize) {
        let logs: Vec<(u32, Rc<Partition>)> = self
            .logs
            .borrow()
            .iter()
            .map(|(&p, log)| (p, log.clone()))
            .collect();
        for (partition, log) in logs {
            let busy = self
                .orders
                .get(&partition)
                .is_some_and(|order| order.in_flight() > 0);
            if log.segment_count() <= sealed_segments_min + 1 || busy {
                continue;
            }
            // Collected and appended with no await in between: no write can slip past it.
            let now_ms = self.clock.now_ms();
            let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = self
                .groups
                .borrow()
                .values()
                .filter(|g| offsets::partition_of(&g.id) == partition)
                .flat_map(|g| {
                    // Live groups' metadata, for `__consumer_offsets` readers; replay skips it.
                    let metadata = (g.state == State::Stable).then(|| {
                        let (key, value) = group_metadata_record(g, now_ms);
                        (key, Some(value))
                    });
                    g.offsets
                        .iter()
                        .map(|((topic, p), committed)| {
                            let key = Key {
                                group: g.id.clone(),
                                topic: topic.clone(),
                                partition: *p,
                            };
                            (
                                offsets::encode_key(&key),
                                Some(offsets::encode_value(committed)),
                            )
                        })
                        .chain(metadata)
                        .collect::<Vec<_>>()
                })
                .collect();
            let snapshot_start = log.log_end_offset();
            let mut last = None;
            for chunk in records.chunks(1000) {
                let refs: Vec<(&[u8], Option<&[u8]>)> = chunk
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_deref()))
                    .collect();
                match log.append(
                    BytesMut::from(&build_keyed_batch(&refs, self.clock.now_ms())[..]),
                    self.clock.now_ms(),
                ) {
                    Ok(info) => last = Some(info.last_offset),
                    Err(_) => return,
                }
            }
            if let Some(last) = last {
                if log.wait_for_ack(last, true).await.is_err() {
                    return;
                }
            }
            match log.delete_segments_before(snapshot_start) {
                Ok(deleted) => tracing::debug!(
                    partition,
                    deleted,
                    records = records.len(),
                    "offsets log compacted"
                ),
                Err(err) => tracing::error!("compacting offsets partition {partition}: {err}"),
            }
        }
    }

    /// Removes empty groups idle longer than `offsets.retention.minutes`, with their offsets.
    pub async fn expire_groups(&self) {
        let cutoff = self.clock.now_ms() - self.config.offsets_retention_ms;
        let idle: Vec<String> = self
            .groups
            .borrow()
            .values()
            .filter(|g| {
                g.state == State::Empty && g.members.is_empty() && g.last_activity_ms < cutoff
            })
            .map(|g| g.id.clone())
            .collect();
        for group_id in idle {
            let _ = self.delete(&group_id).await;
        }
    }
}

/// The coordinator's timers, until aborted: session timeouts and join deadlines every `tick`;
/// every 600 ticks (a minute in the broker) idle empty groups expire and the offsets logs are
/// compacted. Ticks read the coordinator's clock, so in virtual time nothing expires unless
/// the clock moved.
pub async fn run_timers(coordinator: Rc<Coordinator>, tick: Duration) {
    let mut ticks: u64 = 0;
    loop {
        ringtail_engine::io::sleep(tick).await;
        coordinator.tick();
        ticks += 1;
        if ticks.is_multiple_of(600) {
            coordinator.expire_groups().await;
            coordinator.compact(2).await;
        }
    }
}

/// A group's GroupMetadata record: its generation, protocol, leader and members.
fn group_metadata_record(group: &Group, now_ms: i64) -> (Vec<u8>, Vec<u8>) {
    let protocol = group.protocol.as_deref();
    let record = offsets::GroupRecord {
        protocol_type: group.protocol_type.as_deref().unwrap_or("consumer"),
        generation: group.generation,
        protocol,
        leader: group.leader.as_deref(),
        state_timestamp_ms: now_ms,
        members: group
            .members
            .iter()
            .map(|m| offsets::MemberRecord {
                member_id: &m.id,
                instance_id: m.instance_id.as_deref(),
                client_id: &m.client_id,
                client_host: &m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                session_timeout_ms: m.session_timeout.as_millis() as i32,
                subscription: m
                    .protocols
                    .iter()
                    .find(|(name, _)| Some(name.as_str()) == protocol)
                    .map_or(&[][..], |(_, metadata)| &metadata[..]),
                assignment: &m.assignment,
            })
            .collect(),
    };
    (
        offsets::encode_group_key(&group.id),
        offsets::encode_group_value(&record),
    )
}

/// Why a coordinator could not open (the broker does not start).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the offsets log {path}: {source}")]
    Log {
        path: std::path::PathBuf,
        source: ringtail_engine::OpenError,
    },
    #[error("cannot replay the offsets log {path}: {source}")]
    Replay {
        path: std::path::PathBuf,
        source: ReplayError,
    },
}

/// Why an offsets log could not be replayed at start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Read(#[from] ringtail_engine::ReadError),
    #[error("a batch at offset {offset} does not parse: {source}")]
    Batch {
        offset: ringtail_engine::Offset,
        source: ringtail_engine::format::batch::BatchError,
    },
    #[error("the batch at offset {offset} holds malformed records")]
    Records { offset: ringtail_engine::Offset },
}

/// Rebuilds committed offsets from an offsets log, newest record winning.
async fn replay(log: &Partition, groups: &mut HashMap<String, Group>) -> Result<(), ReplayError> {
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let bytes = log.read_bytes(offset, 8 << 20).await?;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let header = ringtail_engine::format::batch::parse_header(rest)
                .map_err(|source| ReplayError::Batch { offset, source })?;
            let (batch, after) = rest.split_at(header.size.min(rest.len()));
            rest = after;
            let records = keyed_records(batch).ok_or(ReplayError::Records { offset })?;
            offset = ringtail_engine::Offset(header.next_offset());
            for (key, value) in records {
                let Some(key) = offsets::decode_key(&key) else {
                    continue;
                };
                let group = groups
                    .entry(key.group.clone())
                    .or_insert_with(|| Group::new(&key.group, 0));
                match value.as_deref().and_then(offsets::decode_value) {
                    Some(committed) => {
                        group.last_activity_ms =
                            group.last_activity_ms.max(committed.commit_timestamp_ms);
                        group.offsets.insert((key.topic, key.partition), committed);
                    }
                    None => {
                        group.offsets.remove(&(key.topic, key.partition));
                    }
                }
            }
        }
    }
    groups.retain(|_, g| !g.offsets.is_empty());
    Ok(())
}
