//! The metadata quorum's storage: openraft's own storage test suite, then durability across
//! reopens (a torn tail, truncation, purge and compaction, the vote, snapshots).

use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{log_id, StoreBuilder, Suite};
use openraft::{Entry, EntryPayload, RaftLogReader, RaftSnapshotBuilder, StorageError, Vote};

use super::*;
use crate::cluster::metadata::MetadataRecord;

struct TempStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for TempStores {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("dir");
        let log = LogStore::open(dir.path()).expect("log");
        let sm = StateMachine::open(dir.path(), Arc::new(|_: &MetadataImage| {})).expect("sm");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(TempStores).expect("openraft's storage suite passes");
}

fn register(node: NodeId, term: u64, index: u64) -> RaftEntry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(MetadataRecord::RegisterBroker {
            node,
            epoch: index,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        }),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

async fn append(log: &mut LogStore, entries: Vec<RaftEntry>) {
    log.append_durably(entries).expect("append");
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(0..)
        .await
        .expect("read")
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[test]
fn appended_entries_and_the_vote_survive_a_reopen_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().expect("dir");
    block_on(async {
        let mut log = LogStore::open(dir.path()).expect("open");
        append(&mut log, (1..=3).map(|i| register(i, 1, i)).collect()).await;
        log.save_vote(&Vote::new(2, 1)).await.expect("vote");
    });
    // A crash in the middle of the next append: half a frame at the end.
    let path = dir.path().join(LOG_FILE);
    let whole = fs::metadata(&path).expect("stat").len();
    let mut torn = encode_frame(br#"{"Entry": "never finished"}"#);
    torn.truncate(torn.len() / 2);
    OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open")
        .write_all(&torn)
        .expect("write");
    block_on(async {
        let mut log = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&mut log).await, vec![1, 2, 3]);
        assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(2, 1)));
        append(&mut log, vec![register(4, 2, 4)]).await;
    });
    assert!(
        fs::metadata(&path).expect("stat").len() > whole,
        "appended after the cut"
    );
    block_on(async {
        let mut log = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(
            indexes(&mut log).await,
            vec![1, 2, 3, 4],
            "nothing of the torn frame"
        );
    });
}

#[test]
fn truncation_purge_and_compaction_survive_reopens() {
    let dir = tempfile::tempdir().expect("dir");
    block_on(async {
        let mut log = LogStore::open(dir.path()).expect("open");
        append(&mut log, (1..=5).map(|i| register(i, 1, i)).collect()).await;
        // A new leader overwrites the uncommitted suffix from index 4.
        log.truncate(log_id(1, 1, 4)).await.expect("truncate");
        append(&mut log, vec![register(9, 2, 4)]).await;
        log.purge(log_id(1, 1, 2)).await.expect("purge");
    });
    block_on(async {
        let mut log = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&mut log).await, vec![3, 4]);
        let entries = log.try_get_log_entries(4..5).await.expect("read");
        assert_eq!(entries[0].log_id, log_id(2, 1, 4), "the new leader's entry");
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 4)));
        // Enough entries to make the purged part most of a file over 1 MiB: compacted.
        let big: Vec<RaftEntry> = (5..6000).map(|i| register(i, 2, i)).collect();
        append(&mut log, big).await;
        let before = fs::metadata(dir.path().join(LOG_FILE)).expect("stat").len();
        log.purge(log_id(2, 1, 5900)).await.expect("purge");
        let after = fs::metadata(dir.path().join(LOG_FILE)).expect("stat").len();
        assert!(
            after * 10 < before,
            "rewritten without purged entries: {before} -> {after}"
        );
        append(&mut log, vec![register(1, 2, 6000)]).await;
    });
    block_on(async {
        let mut log = LogStore::open(dir.path()).expect("reopen");
        let kept = indexes(&mut log).await;
        assert_eq!(kept.first(), Some(&5901));
        assert_eq!(kept.last(), Some(&6000));
        assert_eq!(kept.len(), 100);
    });
}

#[test]
fn a_snapshot_restores_the_image_at_the_next_open() {
    let dir = tempfile::tempdir().expect("dir");
    let image = block_on(async {
        let mut sm = StateMachine::open(dir.path(), Arc::new(|_: &MetadataImage| {})).expect("sm");
        let answers = sm
            .apply(vec![
                register(1, 1, 1),
                register(1, 1, 2),
                register(2, 1, 3),
            ])
            .await
            .expect("apply");
        assert_eq!(answers[0], Ok(()));
        assert!(
            answers[1].is_ok(),
            "a later registration of the same node applies"
        );
        let mut builder = sm.get_snapshot_builder().await;
        builder.build_snapshot().await.expect("snapshot");
        sm.image()
    });
    assert_eq!(image.brokers.len(), 2);
    block_on(async {
        let mut sm = StateMachine::open(dir.path(), Arc::new(|_: &MetadataImage| {})).expect("sm");
        assert_eq!(sm.image(), image);
        let (applied, _) = sm.applied_state().await.expect("state");
        assert_eq!(applied, Some(log_id(1, 1, 3)));
        let current = sm.get_current_snapshot().await.expect("snapshot");
        assert!(current.is_some());
    });
}
