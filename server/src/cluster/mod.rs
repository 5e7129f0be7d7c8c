//! The cluster (docs/cluster.md): the metadata records and their state machine (`metadata`),
//! their durable Raft storage (`raft_store`), the controller quorum on openraft (`quorum`),
//! a node's registration and heartbeats (`node`), and the topics a member derives from the
//! metadata image (`topics`).

pub mod metadata;
pub mod node;
pub mod quorum;
pub mod raft_store;
pub mod topics;
