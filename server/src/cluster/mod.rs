//! The cluster: the metadata the controller quorum replicates (`metadata`), and (being built,
//! issue #14) the quorum on openraft, broker registration and heartbeats, and request routing.
//! `docs/cluster.md` describes the whole design.

// The state machine lands before the quorum that drives it; until then only its tests use it.
#[allow(dead_code)]
pub mod metadata;
pub mod node;
#[allow(dead_code)]
pub mod quorum;
#[allow(dead_code)]
pub mod raft_store;
pub mod topics;
