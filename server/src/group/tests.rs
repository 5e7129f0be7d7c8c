//! Coordinator tests on a real runtime and offsets log: commits survive a reopen, tombstones
//! for deleted topics and deleted or expired groups survive it too, and the classic protocol's
//! join/sync/heartbeat/leave errors come where Kafka gives them.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use ringtail_engine::io::{Runtime, RuntimeConfig};
use ringtail_engine::FsyncPolicy;

use super::offsets::Committed;
use super::*;

fn config(retention_ms: i64) -> GroupConfig {
    GroupConfig {
        offsets_segment_bytes: 64 << 20,
        initial_rebalance_delay: Duration::ZERO,
        offsets_retention_ms: retention_ms,
        fsync: FsyncPolicy::AcksAll,
    }
}

fn committed(offset: i64) -> Committed {
    Committed {
        offset,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp_ms: SystemClock.now_ms(),
    }
}

fn offsets_of(coordinator: &Coordinator, group: &str) -> Vec<(String, i32, i64)> {
    let mut out: Vec<_> = coordinator
        .fetch_offsets(group, None)
        .into_iter()
        .flat_map(|(t, ps)| {
            ps.into_iter()
                .map(move |(p, c)| (t.clone(), p, c.map_or(-1, |c| c.offset)))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn commits_deletions_and_expiry_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    runtime.block_on(async {
        let c = Coordinator::open(dir.path(), ShardId(0), 1, config(i64::MAX / 4))
            .await
            .expect("open");
        c.commit(
            "g1",
            vec![("a".into(), 0, committed(5)), ("b".into(), 1, committed(7))],
        )
        .await
        .expect("commit");
        c.commit("g2", vec![("a".into(), 0, committed(9))])
            .await
            .expect("commit");
        c.commit("g3", vec![("c".into(), 0, committed(1))])
            .await
            .expect("commit");
        c.forget_topic("b").await;
        assert_eq!(c.delete("g3").await, error_code::NONE);
        assert_eq!(c.delete("nobody").await, GROUP_ID_NOT_FOUND);
        c.close().await;
    });
    runtime.block_on(async {
        let c = Coordinator::open(dir.path(), ShardId(0), 1, config(i64::MAX / 4))
            .await
            .expect("reopen");
        assert_eq!(
            offsets_of(&c, "g1"),
            vec![("a".into(), 0, 5)],
            "b's offsets were deleted with the topic"
        );
        assert_eq!(offsets_of(&c, "g2"), vec![("a".into(), 0, 9)]);
        assert!(
            offsets_of(&c, "g3").is_empty(),
            "a deleted group stays deleted"
        );
        c.close().await;
    });
    // With a 1 ms retention every empty group expires, durably.
    runtime.block_on(async {
        let c = Coordinator::open(dir.path(), ShardId(0), 1, config(1))
            .await
            .expect("reopen");
        ringtail_engine::io::sleep(Duration::from_millis(5)).await;
        c.expire_groups().await;
        assert!(c.list().is_empty());
        c.close().await;
    });
    runtime.block_on(async {
        let c = Coordinator::open(dir.path(), ShardId(0), 1, config(i64::MAX / 4))
            .await
            .expect("reopen");
        assert!(offsets_of(&c, "g1").is_empty() && offsets_of(&c, "g2").is_empty());
        c.close().await;
    });
}

fn join_request(group: &str, member: &str) -> JoinRequest {
    JoinRequest {
        group: group.into(),
        member_id: member.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: true,
    }
}

#[test]
fn the_classic_protocol_answers_as_kafka_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    runtime.block_on(async {
        let c = Rc::new(
            Coordinator::open(dir.path(), ShardId(0), 1, config(i64::MAX / 4))
                .await
                .expect("open"),
        );
        // A new member first gets its id.
        let first = c.join(join_request("g", "")).expect("answered at once");
        assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
        let id = first.member_id;
        assert_eq!(
            c.join(join_request("g", "stranger"))
                .expect("refused")
                .error_code,
            UNKNOWN_MEMBER_ID
        );
        let pending = c
            .join(join_request("g", &id))
            .expect_err("waits for the join phase");
        c.tick();
        let joined = pending.await.expect("joined");
        assert_eq!(
            (joined.error_code, joined.generation),
            (error_code::NONE, 1),
            "generations start at 1"
        );
        assert_eq!(joined.leader, id);
        assert_eq!(
            joined.members.len(),
            1,
            "the leader gets every member's metadata"
        );
        assert_eq!(c.heartbeat("g", 1, &id, None), error_code::NONE);
        assert_eq!(c.heartbeat("g", 7, &id, None), ILLEGAL_GENERATION);
        assert_eq!(c.heartbeat("g", 1, "stranger", None), UNKNOWN_MEMBER_ID);
        let bad_sync = c.sync(SyncRequest {
            group: "g".into(),
            generation: 2,
            member_id: id.clone(),
            instance_id: None,
            assignments: vec![],
        });
        assert!(matches!(
            bad_sync,
            Ok(SyncResult {
                error_code: ILLEGAL_GENERATION,
                ..
            })
        ));
        let sync = c.sync(SyncRequest {
            group: "g".into(),
            generation: 1,
            member_id: id.clone(),
            instance_id: None,
            assignments: vec![(id.clone(), Bytes::from_static(b"all"))],
        });
        let synced = match sync {
            Ok(result) => result,
            Err(waiting) => waiting.await.expect("synced"),
        };
        assert_eq!(
            (synced.error_code, &synced.assignment[..]),
            (error_code::NONE, &b"all"[..])
        );
        // Commits are checked against the generation.
        assert_eq!(c.commit_check("g", 1, &id), None);
        assert_eq!(c.commit_check("g", 3, &id), Some(ILLEGAL_GENERATION));
        assert_eq!(
            c.commit_check("g", -1, ""),
            Some(UNKNOWN_MEMBER_ID),
            "no simple commits into a live group"
        );
        // A second member triggers a rebalance the first learns of by heartbeat.
        let Ok(second) = c.join(join_request("g", "")) else {
            panic!("id first")
        };
        let second = second.member_id;
        let Err(second_pending) = c.join(join_request("g", &second)) else {
            panic!("waits")
        };
        assert_eq!(c.heartbeat("g", 1, &id, None), REBALANCE_IN_PROGRESS);
        let Err(first_pending) = c.join(join_request("g", &id)) else {
            panic!("rejoins")
        };
        c.tick();
        let (a, b) = (
            first_pending.await.expect("joined"),
            second_pending.await.expect("joined"),
        );
        assert_eq!((a.generation, b.generation), (2, 2));
        assert_eq!(
            a.members.len() + b.members.len(),
            2,
            "only the leader gets the member list"
        );
        assert_eq!(
            c.leave("g", &[(second.clone(), None)]),
            vec![error_code::NONE]
        );
        assert_eq!(c.leave("g", &[(second, None)]), vec![UNKNOWN_MEMBER_ID]);
        assert_eq!(c.delete("g").await, NON_EMPTY_GROUP);
        c.close().await;
    });
}

fn static_request(group: &str, member: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        instance_id: Some(instance.into()),
        ..join_request(group, member)
    }
}

async fn settle_join(c: &Coordinator, request: JoinRequest) -> JoinResult {
    match c.join(request) {
        Ok(result) => result,
        Err(waiting) => {
            c.tick();
            waiting.await.expect("joined")
        }
    }
}

async fn sync(
    c: &Coordinator,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
    assign: Vec<(String, Bytes)>,
) -> SyncResult {
    let request = SyncRequest {
        group: group.into(),
        generation,
        member_id: member.into(),
        instance_id: instance.map(Into::into),
        assignments: assign,
    };
    match c.sync(request) {
        Ok(result) => result,
        Err(waiting) => waiting.await.expect("synced"),
    }
}

#[test]
fn a_restarted_static_member_takes_its_place_back_without_a_rebalance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    runtime.block_on(async {
        let c = Coordinator::open(dir.path(), ShardId(0), 1, config(i64::MAX / 4))
            .await
            .expect("open");
        // Static members need no MEMBER_ID_REQUIRED round trip.
        let (a_pending, b_pending) = match (
            c.join(static_request("s", "", "a")),
            c.join(static_request("s", "", "b")),
        ) {
            (Err(a), Err(b)) => (a, b),
            _ => panic!("static members join at once"),
        };
        c.tick();
        let (a, b) = (a_pending.await.expect("a"), b_pending.await.expect("b"));
        assert_eq!((a.generation, b.generation), (1, 1));
        let (leader, follower) = if a.leader == a.member_id {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let follower_instance = if follower.member_id == a.member_id {
            "a"
        } else {
            "b"
        };
        let assignments = vec![
            (leader.member_id.clone(), Bytes::from_static(b"L")),
            (follower.member_id.clone(), Bytes::from_static(b"F")),
        ];
        let (synced_leader, synced_follower) = (
            sync(&c, "s", 1, &leader.member_id, None, assignments).await,
            sync(&c, "s", 1, &follower.member_id, None, vec![]).await,
        );
        assert_eq!(
            (
                &synced_leader.assignment[..],
                &synced_follower.assignment[..]
            ),
            (&b"L"[..], &b"F"[..])
        );

        // The follower restarts (no LeaveGroup, a new process: empty member id).
        let back = settle_join(&c, static_request("s", "", follower_instance)).await;
        assert_eq!(back.error_code, error_code::NONE);
        assert_eq!(back.generation, 1, "no rebalance: the same generation");
        assert_ne!(back.member_id, follower.member_id);
        let resumed = sync(&c, "s", 1, &back.member_id, Some(follower_instance), vec![]).await;
        assert_eq!(&resumed.assignment[..], b"F", "its assignment is kept");
        assert_eq!(
            c.heartbeat("s", 1, &leader.member_id, None),
            error_code::NONE,
            "the leader saw no rebalance"
        );
        // The old incarnation is fenced.
        assert_eq!(
            c.heartbeat("s", 1, &follower.member_id, Some(follower_instance)),
            FENCED_INSTANCE_ID
        );
        let zombie = c.join(static_request("s", &follower.member_id, follower_instance));
        assert!(matches!(
            zombie,
            Ok(JoinResult {
                error_code: FENCED_INSTANCE_ID,
                ..
            })
        ));
        c.close().await;
    });
}

#[test]
fn compaction_keeps_every_live_offset_and_drops_the_superseded_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let small = || GroupConfig {
        offsets_segment_bytes: 1024,
        ..config(i64::MAX / 4)
    };
    let expected = runtime.block_on(async {
        let c = Coordinator::open(dir.path(), ShardId(0), 1, small())
            .await
            .expect("open");
        // Many commits over a few keys: most records are superseded.
        for round in 0..200 {
            for group in ["g1", "g2"] {
                let entries = (0..3)
                    .map(|p| ("t".to_string(), p, committed(round * 10 + i64::from(p))))
                    .collect();
                c.commit(group, entries).await.expect("commit");
            }
        }
        c.forget_topic("nothing").await;
        c.commit("g3", vec![("u".into(), 0, committed(7))])
            .await
            .expect("commit");
        assert_eq!(c.delete("g3").await, error_code::NONE);
        let before: usize = c.logs.borrow().values().map(|l| l.segment_count()).sum();
        c.compact(0).await;
        let after: usize = c.logs.borrow().values().map(|l| l.segment_count()).sum();
        assert!(
            after < before,
            "compaction deleted segments ({before} -> {after})"
        );
        let expected = (offsets_of(&c, "g1"), offsets_of(&c, "g2"));
        assert_eq!(
            expected.0,
            vec![
                ("t".into(), 0, 1990),
                ("t".into(), 1, 1991),
                ("t".into(), 2, 1992)
            ]
        );
        c.close().await;
        expected
    });
    runtime.block_on(async {
        let c = Coordinator::open(dir.path(), ShardId(0), 1, small())
            .await
            .expect("reopen");
        assert_eq!(
            (offsets_of(&c, "g1"), offsets_of(&c, "g2")),
            expected,
            "the same offsets after replaying the compacted log"
        );
        assert!(
            offsets_of(&c, "g3").is_empty(),
            "a deleted group stays deleted"
        );
        c.close().await;
    });
}
