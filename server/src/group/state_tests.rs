//! The coordinator's state machine in virtual time, on the simulated disk: session expiry, the
//! initial rebalance delay, the rebalance timeout, offsets expiry, generation fencing and every
//! error code of join / sync / heartbeat / leave / delete, each tested by moving a
//! `ManualClock` instead of sleeping; and the offsets log through power failures.

use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use ringtail_engine::io::{spawn, Runtime, RuntimeConfig};
use ringtail_engine::storage::sim::SimDisk;
use ringtail_engine::FsyncPolicy;

use super::offsets::Committed;
use super::*;
use crate::clock::ManualClock;
use crate::sync::Receiver;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 20_000;

struct Harness {
    coordinator: Rc<Coordinator>,
    clock: Rc<ManualClock>,
}

impl Harness {
    fn advance_ms(&self, ms: u64) {
        self.clock.advance(Duration::from_millis(ms));
        self.coordinator.tick();
    }
}

fn config(initial_delay_ms: u64, retention_ms: i64) -> GroupConfig {
    GroupConfig {
        offsets_segment_bytes: 64 << 20,
        initial_rebalance_delay: Duration::from_millis(initial_delay_ms),
        offsets_retention_ms: retention_ms,
        fsync: FsyncPolicy::AcksAll,
    }
}

async fn open(disk: &SimDisk, clock: &Rc<ManualClock>, config: GroupConfig) -> Coordinator {
    let backing = Backing {
        storage: disk.storage(),
        clock: clock.clone(),
    };
    Coordinator::open_on(
        backing,
        std::path::Path::new("/data"),
        ShardId(0),
        1,
        config,
    )
    .await
    .expect("open the coordinator on the simulated disk")
}

/// Runs `test` with a coordinator on a fresh simulated disk, in virtual time.
fn virtual_time<F>(config: GroupConfig, test: impl FnOnce(Rc<Harness>) -> F)
where
    F: std::future::Future<Output = ()>,
{
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    runtime.block_on(async {
        let disk = SimDisk::new(1);
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let coordinator = Rc::new(open(&disk, &clock, config).await);
        let harness = Rc::new(Harness { coordinator, clock });
        test(harness.clone()).await;
        harness.coordinator.close().await;
    });
}

fn request(group: &str, member: &str) -> JoinRequest {
    JoinRequest {
        group: group.into(),
        member_id: member.into(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: true,
    }
}

/// Whether a join or sync answer is still outstanding (polled once, without waiting).
fn pending<T>(receiver: &mut Receiver<T>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    std::pin::Pin::new(receiver).poll(&mut cx).is_pending()
}

/// A new member's join, after the MEMBER_ID_REQUIRED round trip: (its id, the join waiting for
/// the end of the join phase).
fn join_new(c: &Coordinator, group: &str) -> (String, Receiver<JoinResult>) {
    let first = c.join(request(group, "")).expect("answered at once");
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let waiting = c
        .join(request(group, &first.member_id))
        .expect_err("waits for the join phase");
    (first.member_id, waiting)
}

fn sync_request(group: &str, generation: i32, member: &str, assign: &[&str]) -> SyncRequest {
    SyncRequest {
        group: group.into(),
        generation,
        member_id: member.into(),
        instance_id: None,
        assignments: assign
            .iter()
            .map(|m| ((*m).to_string(), Bytes::from_static(b"a")))
            .collect(),
    }
}

fn sync_now(c: &Coordinator, request: SyncRequest) -> i16 {
    match c.sync(request) {
        Ok(result) => result.error_code,
        Err(_) => panic!("expected an answer at once"),
    }
}

fn state_of(c: &Coordinator, group: &str) -> (&'static str, usize) {
    let (state, _, _, members) = c.describe(group).expect("a known group");
    (state, members.len())
}

/// A stable two-member group "g": (leader, follower), generation 1.
async fn stable_pair(h: &Harness) -> (String, String) {
    stable_pair_in(h, "g").await
}

/// A stable two-member group `g` (new): (leader, follower), generation 1.
async fn stable_pair_in(h: &Harness, g: &str) -> (String, String) {
    let c = &h.coordinator;
    let (a, a_join) = join_new(c, g);
    let (b, b_join) = join_new(c, g);
    h.advance_ms(0);
    let (a_join, b_join) = (a_join.await.expect("a"), b_join.await.expect("b"));
    assert_eq!((a_join.generation, b_join.generation), (1, 1));
    let (leader, follower) = if a_join.leader == a { (a, b) } else { (b, a) };
    let follower_sync = c
        .sync(sync_request(g, 1, &follower, &[]))
        .expect_err("the follower waits for the leader");
    let leader_sync = c.sync(sync_request(g, 1, &leader, &[&leader, &follower]));
    assert!(matches!(
        leader_sync,
        Err(_) | Ok(SyncResult { error_code: 0, .. })
    ));
    assert_eq!(
        follower_sync.await.expect("synced").error_code,
        error_code::NONE
    );
    assert_eq!(state_of(c, g), ("Stable", 2));
    (leader, follower)
}

#[test]
fn a_member_silent_past_its_session_timeout_is_removed_and_the_rest_rebalance() {
    virtual_time(config(0, i64::MAX / 4), |h| async move {
        let c = &h.coordinator;
        let (leader, follower) = stable_pair(&h).await;
        h.advance_ms(6_000);
        assert_eq!(c.heartbeat("g", 1, &leader, None), error_code::NONE);
        h.advance_ms(3_999);
        assert_eq!(state_of(c, "g"), ("Stable", 2), "9.999 s: not yet expired");
        h.advance_ms(1);
        assert_eq!(
            state_of(c, "g"),
            ("PreparingRebalance", 1),
            "10 s without a heartbeat: the follower is gone"
        );
        assert_eq!(c.heartbeat("g", 1, &follower, None), UNKNOWN_MEMBER_ID);
        assert_eq!(c.heartbeat("g", 1, &leader, None), REBALANCE_IN_PROGRESS);
        // The survivor rejoins and gets generation 2 alone.
        let rejoin = c.join(request("g", &leader)).expect_err("joins");
        let joined = rejoin.await.expect("joined");
        assert_eq!((joined.generation, joined.members.len()), (2, 1));
        // Silent too: the group empties, and its generation moves on.
        h.advance_ms(10_000);
        assert_eq!(state_of(c, "g"), ("Empty", 0));
        assert_eq!(c.heartbeat("g", 2, &leader, None), UNKNOWN_MEMBER_ID);
    });
}

#[test]
fn the_initial_rebalance_delay_holds_a_new_groups_first_join_phase() {
    virtual_time(config(3_000, i64::MAX / 4), |h| async move {
        let c = &h.coordinator;
        let (_, mut first) = join_new(c, "g");
        h.advance_ms(1_000);
        let (_, mut second) = join_new(c, "g");
        h.advance_ms(1_999);
        assert!(
            pending(&mut first) && pending(&mut second),
            "2.999 s: still waiting"
        );
        h.advance_ms(1);
        let (first, second) = (first.await.expect("first"), second.await.expect("second"));
        assert_eq!((first.generation, second.generation), (1, 1));
        assert_eq!(
            first.members.len() + second.members.len(),
            2,
            "both are in the first generation"
        );
    });
}

#[test]
fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() {
    virtual_time(config(0, i64::MAX / 4), |h| async move {
        let c = &h.coordinator;
        let (leader, follower) = stable_pair(&h).await;
        // The leader rejoins: a rebalance the follower learns of and ignores (but keeps
        // heartbeating, so its session stays alive).
        let mut rejoin = c.join(request("g", &leader)).expect_err("waits");
        for _ in 0..3 {
            h.advance_ms(6_000);
            assert_eq!(c.heartbeat("g", 1, &follower, None), REBALANCE_IN_PROGRESS);
            assert_eq!(c.heartbeat("g", 1, &leader, None), REBALANCE_IN_PROGRESS);
        }
        h.advance_ms(1_999);
        assert!(
            pending(&mut rejoin),
            "19.999 s: the join phase is still open"
        );
        h.advance_ms(1);
        let joined = rejoin.await.expect("joined");
        assert_eq!((joined.generation, joined.members.len()), (2, 1));
        assert_eq!(c.heartbeat("g", 2, &follower, None), UNKNOWN_MEMBER_ID);
    });
}

#[test]
fn an_empty_groups_offsets_expire_after_the_retention_and_a_live_groups_do_not() {
    virtual_time(config(0, 60_000), |h| async move {
        let c = &h.coordinator;
        let commit = |offset| Committed {
            offset,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: h.clock.now_ms(),
        };
        c.commit("solo", vec![("t".into(), 0, commit(5))])
            .await
            .expect("commit");
        let (leader, follower) = stable_pair(&h).await;
        c.commit("g", vec![("t".into(), 0, commit(9))])
            .await
            .expect("commit");
        for _ in 0..6 {
            h.advance_ms(9_000);
            c.heartbeat("g", 1, &leader, None);
            c.heartbeat("g", 1, &follower, None);
        }
        h.advance_ms(5_999);
        c.heartbeat("g", 1, &leader, None);
        c.heartbeat("g", 1, &follower, None);
        c.expire_groups().await;
        assert_eq!(
            c.fetch_offsets("solo", None).len(),
            1,
            "59.999 s idle: kept"
        );
        h.advance_ms(2);
        c.heartbeat("g", 1, &leader, None);
        c.heartbeat("g", 1, &follower, None);
        c.expire_groups().await;
        assert!(
            c.fetch_offsets("solo", None).is_empty(),
            "past 60 s: expired"
        );
        assert_eq!(
            c.delete("solo").await,
            GROUP_ID_NOT_FOUND,
            "the group is gone"
        );
        assert_eq!(
            c.fetch_offsets("g", None).len(),
            1,
            "a live group keeps its offsets"
        );
    });
}

#[test]
fn an_old_generation_is_fenced_everywhere() {
    virtual_time(config(0, i64::MAX / 4), |h| async move {
        let c = &h.coordinator;
        let (leader, follower) = stable_pair(&h).await;
        // A third member: generation 2 once everyone rejoined.
        let (third, third_join) = join_new(c, "g");
        let leader_join = c.join(request("g", &leader)).expect_err("rejoins");
        let follower_join = c.join(request("g", &follower)).expect_err("rejoins");
        for join in [third_join, leader_join, follower_join] {
            assert_eq!(join.await.expect("joined").generation, 2);
        }
        assert_eq!(c.heartbeat("g", 1, &follower, None), ILLEGAL_GENERATION);
        assert_eq!(
            sync_now(c, sync_request("g", 1, &third, &[])),
            ILLEGAL_GENERATION
        );
        assert_eq!(c.commit_check("g", 1, &leader), Some(ILLEGAL_GENERATION));
        assert_eq!(
            c.commit_check("g", 2, &leader),
            Some(REBALANCE_IN_PROGRESS),
            "generation 2 is not synced yet"
        );
        assert_eq!(c.commit_check("g", 2, "stranger"), Some(UNKNOWN_MEMBER_ID));
    });
}

#[test]
fn each_error_code_comes_where_kafka_gives_it() {
    virtual_time(config(0, i64::MAX / 4), |h| async move {
        let c = &h.coordinator;
        let code = |result: Result<JoinResult, Receiver<JoinResult>>| match result {
            Ok(result) => result.error_code,
            Err(_) => panic!("expected an answer at once"),
        };
        assert_eq!(code(c.join(request("", ""))), INVALID_GROUP_ID);
        for session_timeout_ms in [5_999, 1_800_001] {
            let bad = JoinRequest {
                session_timeout_ms,
                ..request("g", "")
            };
            assert_eq!(
                code(c.join(bad)),
                INVALID_SESSION_TIMEOUT,
                "{session_timeout_ms}"
            );
        }
        assert_eq!(code(c.join(request("nobody", "m"))), UNKNOWN_MEMBER_ID);
        assert_eq!(
            sync_now(c, sync_request("nobody", 1, "m", &[])),
            UNKNOWN_MEMBER_ID
        );
        assert_eq!(c.heartbeat("nobody", 1, "m", None), UNKNOWN_MEMBER_ID);
        assert_eq!(
            c.leave("nobody", &[("m".into(), None)]),
            vec![UNKNOWN_MEMBER_ID]
        );
        assert_eq!(c.delete("nobody").await, GROUP_ID_NOT_FOUND);

        let (leader, follower) = stable_pair(&h).await;
        let other_type = JoinRequest {
            protocol_type: "connect".into(),
            ..request("g", "")
        };
        assert_eq!(code(c.join(other_type)), INCONSISTENT_GROUP_PROTOCOL);
        let no_common_protocol = JoinRequest {
            protocols: vec![("roundrobin".into(), Bytes::new())],
            ..request("g", "")
        };
        assert_eq!(
            code(c.join(no_common_protocol)),
            INCONSISTENT_GROUP_PROTOCOL
        );
        assert_eq!(c.delete("g").await, NON_EMPTY_GROUP);

        // A rebalance while the follower waits in SyncGroup answers it REBALANCE_IN_PROGRESS.
        let (_third, third_join) = join_new(c, "g");
        let rejoined = c.join(request("g", &leader)).expect_err("leader rejoins");
        assert_eq!(
            sync_now(c, sync_request("g", 1, &follower, &[])),
            REBALANCE_IN_PROGRESS,
            "SyncGroup during a join phase"
        );
        let follower_join = c.join(request("g", &follower)).expect_err("rejoins");
        let generation = rejoined.await.expect("joined").generation;
        assert_eq!(generation, 2);
        let waiting_sync = c
            .sync(sync_request("g", 2, &follower, &[]))
            .expect_err("waits for the leader");
        let _ = (third_join.await, follower_join.await);
        let (_fourth, _fourth_join) = join_new(c, "g");
        assert_eq!(
            waiting_sync.await.expect("answered").error_code,
            REBALANCE_IN_PROGRESS,
            "a pending SyncGroup is answered when a new join phase starts"
        );
        assert_eq!(
            c.leave("g", &[(follower.clone(), None), ("stranger".into(), None)]),
            vec![error_code::NONE, UNKNOWN_MEMBER_ID]
        );
    });
}

/// Group timers run in virtual time only when ticked: a coordinator that is not ticked never
/// expires anyone, however far the clock moves (what the shard's timer task relies on to stop
/// at close: it ticks no more once the coordinator is gone).
#[test]
fn nothing_expires_without_a_tick() {
    virtual_time(config(0, i64::MAX / 4), |h| async move {
        let c = &h.coordinator;
        stable_pair(&h).await;
        h.clock.advance(Duration::from_secs(3_600));
        assert_eq!(state_of(c, "g"), ("Stable", 2));
        c.tick();
        assert_eq!(state_of(c, "g"), ("Empty", 0));
    });
}

/// The timer task expires a silent member once the clock passes its session timeout, and once
/// aborted (as the shard does at stop) it never runs again.
#[test]
fn group_timers_do_not_run_after_they_are_stopped() {
    virtual_time(config(0, i64::MAX / 4), |h| async move {
        let c = &h.coordinator;
        let real_sleep = |ms| ringtail_engine::io::sleep(Duration::from_millis(ms));
        // Control: with the timer task running, a silent pair expires once the clock passes
        // their session timeout.
        stable_pair_in(&h, "a").await;
        let timers = spawn(run_timers(c.clone(), Duration::from_millis(1)));
        real_sleep(10).await;
        assert_eq!(
            state_of(c, "a"),
            ("Stable", 2),
            "no virtual time passed yet"
        );
        h.clock.advance(Duration::from_millis(SESSION_MS as u64));
        real_sleep(30).await;
        assert_eq!(
            state_of(c, "a"),
            ("Empty", 0),
            "the running timers expired them"
        );
        timers.abort();
        stable_pair_in(&h, "b").await;
        h.clock.advance(Duration::from_secs(3_600));
        real_sleep(30).await;
        assert_eq!(
            state_of(c, "b"),
            ("Stable", 2),
            "an aborted timer task expired a member"
        );
        c.tick();
        assert_eq!(
            state_of(c, "b"),
            ("Empty", 0),
            "a tick would have expired them"
        );
    });
}

/// Random commits, group deletions and compactions, with power failures between lives of the
/// coordinator: after each reopen every acknowledged commit is what OffsetFetch returns, unless
/// a later commit (acknowledged or in flight at the crash) replaced it. `SIM_SEEDS` and
/// `SIM_SEED` as in the engine's simulation.
#[test]
fn acknowledged_commits_survive_power_failures() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => {
            let n = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(40);
            (0..n).collect()
        }
    };
    for seed in seeds {
        let outcome = std::panic::catch_unwind(|| commits_through_crashes(seed));
        if let Err(panic) = outcome {
            eprintln!("coordinator simulation failed: SIM_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

type Key = (String, String, i32);
/// A key's acknowledged offset, and the offsets committed after it whose fate is unknown.
type Fate = (Option<i64>, Vec<i64>);

fn committed_at(clock: &ManualClock, offset: i64) -> Committed {
    Committed {
        offset,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp_ms: clock.now_ms(),
    }
}

fn commits_through_crashes(seed: u64) {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    let disk = SimDisk::new(seed);
    let clock = Rc::new(ManualClock::new(1_700_000_000_000));
    // key -> (acknowledged offset, offsets committed after it whose fate is unknown).
    let model: Rc<RefCell<BTreeMap<Key, Fate>>> = Rc::default();
    let small = || GroupConfig {
        offsets_segment_bytes: 1024,
        ..config(0, i64::MAX / 4)
    };
    let mut next_offset = 0i64;
    for life in 0..6 {
        let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
        runtime.block_on(async {
            let c = Rc::new(open(&disk, &clock, small()).await);
            for (key, (acked, maybe)) in model.borrow_mut().iter_mut() {
                let fetched = c
                    .fetch_offsets(&key.0, None)
                    .into_iter()
                    .flat_map(|(t, ps)| ps.into_iter().map(move |(p, o)| (t.clone(), p, o)))
                    .find(|(t, p, _)| *t == key.1 && *p == key.2)
                    .and_then(|(_, _, o)| o.map(|o| o.offset));
                assert!(
                    fetched == *acked || fetched.is_some_and(|f| maybe.contains(&f)),
                    "seed {seed} life {life}: {key:?} fetched {fetched:?}, acknowledged \
                     {acked:?}, in flight {maybe:?}"
                );
                *acked = fetched;
                maybe.clear();
            }
            let steps = 5 + disk.random() % 30;
            for _ in 0..steps {
                let group = format!("g{}", disk.random() % 3);
                let partition = (disk.random() % 2) as i32;
                let key = (group.clone(), "t".to_string(), partition);
                next_offset += 1;
                let entry = vec![(
                    "t".to_string(),
                    partition,
                    committed_at(&clock, next_offset),
                )];
                match disk.random() % 10 {
                    0 => {
                        if c.delete(&group).await == error_code::NONE {
                            for (k, slot) in model.borrow_mut().iter_mut() {
                                if k.0 == group {
                                    slot.0 = None;
                                }
                            }
                        }
                    }
                    1 => c.compact(0).await,
                    _ => {
                        c.commit(&group, entry).await.expect("commit");
                        model.borrow_mut().entry(key).or_default().0 = Some(next_offset);
                    }
                }
            }
            // Commits in flight when the life ends: each may or may not survive, but one that
            // was acknowledged must, unless a later one replaced it.
            for _ in 0..disk.random() % 4 {
                let group = format!("g{}", disk.random() % 3);
                let partition = (disk.random() % 2) as i32;
                let key = (group.clone(), "t".to_string(), partition);
                next_offset += 1;
                let offset = next_offset;
                model
                    .borrow_mut()
                    .entry(key.clone())
                    .or_default()
                    .1
                    .push(offset);
                let entry = vec![("t".to_string(), partition, committed_at(&clock, offset))];
                let (c, model) = (c.clone(), model.clone());
                drop(spawn(async move {
                    if c.commit(&group, entry).await.is_ok() {
                        let mut model = model.borrow_mut();
                        let slot = model.entry(key).or_default();
                        // Appended in the order spawned (each task appends at its first
                        // poll, in spawn order): a later offset is a later record.
                        if slot.0.is_none_or(|acked| acked < offset) {
                            slot.0 = Some(offset);
                        }
                        slot.1.retain(|o| *o > offset);
                    }
                }));
            }
            for _ in 0..disk.random() % 6 {
                ringtail_engine::io::yield_now().await;
            }
            if disk.random().is_multiple_of(3) {
                for _ in 0..50 {
                    ringtail_engine::io::yield_now().await;
                }
                c.close().await;
            }
        });
        drop(runtime);
        disk.crash();
    }
}

/// Two commits of one offset whose waiters wake in the opposite order to their appends: the
/// in-memory state must end as the log does (the later append wins), before and after a
/// reopen. Without apply ordering the state followed wake order (here the `block_on` task is
/// polled first), while replay takes the last appended record.
#[test]
fn concurrent_commits_apply_in_log_order() {
    let disk = SimDisk::new(3);
    disk.set_max_yields(0);
    let clock = Rc::new(ManualClock::new(1_700_000_000_000));
    let fetch = |c: &Coordinator| {
        c.fetch_offsets("g", None)
            .into_iter()
            .flat_map(|(_, ps)| ps)
            .filter_map(|(_, o)| o.map(|o| o.offset))
            .collect::<Vec<_>>()
    };
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let before = runtime.block_on(async {
        let c = Rc::new(open(&disk, &clock, config(0, i64::MAX / 4)).await);
        let spawned = {
            let c = c.clone();
            let entry = vec![("t".to_string(), 0, committed_at(&clock, 1))];
            spawn(async move { c.commit("g", entry).await })
        };
        // Let the spawned commit append first: this commit is the later record, but this task
        // is polled before the spawned one when both wait on the same fdatasync.
        ringtail_engine::io::yield_now().await;
        let entry = vec![("t".to_string(), 0, committed_at(&clock, 2))];
        c.commit("g", entry).await.expect("commit 2");
        spawned.await.expect("commit 1");
        let before = fetch(&c);
        c.close().await;
        before
    });
    let after = runtime.block_on(async {
        let c = open(&disk, &clock, config(0, i64::MAX / 4)).await;
        let after = fetch(&c);
        c.close().await;
        after
    });
    assert_eq!(
        before, after,
        "the state served before the reopen is the one replayed"
    );
    assert_eq!(after, vec![2], "the last appended commit wins");
}

/// An offsets log that a write failure took offline refuses commits (KAFKA_STORAGE_ERROR)
/// until `reopen_offline` finds the fault cleared; then commits work again, and every commit
/// acknowledged before the failure is still there, in memory and after a power failure.
#[test]
fn an_offline_offsets_log_is_reopened_once_the_fault_clears() {
    use ringtail_engine::storage::sim::FaultOp;
    const ENOSPC: i32 = 28;
    let disk = SimDisk::new(11);
    let clock = Rc::new(ManualClock::new(1_700_000_000_000));
    let fetch = |c: &Coordinator| {
        c.fetch_offsets("g", None)
            .into_iter()
            .flat_map(|(_, ps)| ps.into_iter())
            .find(|(p, _)| *p == 0)
            .and_then(|(_, o)| o.map(|o| o.offset))
    };
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    runtime.block_on(async {
        let c = open(&disk, &clock, config(0, i64::MAX / 4)).await;
        let entry = |offset| vec![("t".to_string(), 0, committed_at(&clock, offset))];
        c.commit("g", entry(5))
            .await
            .expect("commit before the fault");
        disk.fail_next(FaultOp::Write, ENOSPC);
        assert_eq!(
            c.commit("g", entry(6)).await.err(),
            Some(error_code::KAFKA_STORAGE_ERROR)
        );
        assert_eq!(
            c.commit("g", entry(7)).await.err(),
            Some(error_code::KAFKA_STORAGE_ERROR),
            "offline: refused until reopened"
        );
        disk.fail_next(FaultOp::Write, ENOSPC);
        let still = c.reopen_offline().await;
        assert!(
            matches!(still, Some((1, _))),
            "the disk is still full: {still:?}"
        );
        assert!(
            c.reopen_offline().await.is_none(),
            "space freed: back online"
        );
        assert_eq!(fetch(&c), Some(5), "the acknowledged commit is kept");
        c.commit("g", entry(8)).await.expect("commits work again");
        assert_eq!(fetch(&c), Some(8));
    });
    drop(runtime);
    disk.crash();
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    runtime.block_on(async {
        let c = open(&disk, &clock, config(0, i64::MAX / 4)).await;
        assert_eq!(fetch(&c), Some(8), "replayed after a power failure");
        c.close().await;
    });
}
