//! Ringtail's broker: the Kafka protocol on the storage engine, one shard per core.
//!
//! The binary (`main.rs`) parses the configuration and calls [`broker::run`]; the library exists
//! so that fuzz targets and tests can reach the request decoders.
#![forbid(unsafe_code)]

pub mod admin;
mod api;
mod balance;
pub mod broker;
pub mod clock;
mod cluster;
pub mod config;
mod conn;
mod conn_limits;
mod controller;
pub mod error;
mod group;
mod ids;
mod metrics;
mod moves;
mod partition_dirs;
mod producer_ids;
mod protocol;
pub mod shard;
pub mod sync;
mod topics;
pub mod tune;

/// Decodes a request frame body (after the size prefix) with the decoder of its API, as the
/// broker would, without running it: for fuzzing. Ok(false) when the API or version is not one
/// this broker serves.
pub fn decode_request(body: &[u8]) -> Result<bool, protocol::reader::DecodeError> {
    api::decode_only(body)
}
