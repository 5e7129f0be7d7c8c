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
        commit_timestamp_ms: now_ms(),
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
        let c = Coordinator::open(dir.path(), 0, 1, config(i64::MAX / 4))
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
        let c = Coordinator::open(dir.path(), 0, 1, config(i64::MAX / 4))
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
        let c = Coordinator::open(dir.path(), 0, 1, config(1))
            .await
            .expect("reopen");
        ringtail_engine::io::sleep(Duration::from_millis(5)).await;
        c.expire_groups().await;
        assert!(c.list().is_empty());
        c.close().await;
    });
    runtime.block_on(async {
        let c = Coordinator::open(dir.path(), 0, 1, config(i64::MAX / 4))
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
            Coordinator::open(dir.path(), 0, 1, config(i64::MAX / 4))
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
        assert_eq!(c.heartbeat("g", 1, &id), error_code::NONE);
        assert_eq!(c.heartbeat("g", 7, &id), ILLEGAL_GENERATION);
        assert_eq!(c.heartbeat("g", 1, "stranger"), UNKNOWN_MEMBER_ID);
        let bad_sync = c.sync(SyncRequest {
            group: "g".into(),
            generation: 2,
            member_id: id.clone(),
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
        assert_eq!(c.heartbeat("g", 1, &id), REBALANCE_IN_PROGRESS);
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
