//! Request handlers, one file per Kafka API, and the dispatch between them.
//!
//! Runs on the connection's shard. A handler decodes its body with the checked reader, does its
//! work (on other shards where partitions live there) and returns the framed response. Internal
//! errors are mapped to Kafka error codes in `errors`.

pub mod alter_configs;
pub mod api_versions;
pub mod configs;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_groups;
pub use crate::protocol::errors;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod produce;
pub mod sync_group;

mod decode_only;
#[cfg(test)]
mod decode_tests;
mod table;
pub(crate) use decode_only::decode_only;

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::protocol::StrBytes;
use ringtail_engine::io as rio;
use ringtail_engine::FileRange;

use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{key, RequestHeader};
use crate::shard::Shard;

/// This broker's node id: its `node.id` in a cluster, 0 when it runs alone.
pub fn node_id(shard: &Shard) -> BrokerId {
    BrokerId(
        shard
            .shared
            .cluster
            .as_ref()
            .map_or(0, |c| c.node_id as i32),
    )
}

/// The brokers Metadata and DescribeCluster list: in a cluster the unfenced ones of the
/// metadata image (this one included once it is registered and unfenced), else this one.
pub fn brokers(shard: &Shard) -> Vec<(BrokerId, String, i32)> {
    let config = &shard.shared.config;
    if shard.shared.cluster.is_none() {
        return vec![(
            node_id(shard),
            config.advertised_host.clone(),
            config.advertised_port,
        )];
    }
    // The view delivered to this shard's inbox: nothing is listed before the first one.
    shard.cluster_view().map_or_else(Vec::new, |view| {
        view.image
            .live_brokers()
            .map(|b| (BrokerId(b.node as i32), b.host.clone(), i32::from(b.port)))
            .collect()
    })
}

/// The active controller: the quorum's leader (-1 while none is elected), or this broker.
pub fn controller_id(shard: &Shard) -> BrokerId {
    match &shard.shared.cluster {
        Some(_) => BrokerId(
            shard
                .cluster_view()
                .and_then(|view| view.controller)
                .map_or(-1, |id| id as i32),
        ),
        None => node_id(shard),
    }
}
/// `authorized_operations` when the client did not ask for them (Kafka's INT32_MIN).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// A piece of a response: bytes built here, or a file range spliced from the page cache.
pub enum Part {
    Bytes(Bytes),
    File(FileRange),
}

pub enum Response {
    /// Nothing to send (produce with acks=0).
    None,
    Frame(Bytes),
    /// A response whose record bytes are spliced from segment files.
    Parts(Vec<Part>),
    /// The request cannot be answered: close the connection, as Kafka does.
    Close(String),
}

impl Response {
    /// A framed response, or a closed connection if it could not be encoded.
    pub fn framed(frame: Result<Bytes, crate::protocol::EncodeError>) -> Response {
        match frame {
            Ok(bytes) => Response::Frame(bytes),
            Err(err) => {
                tracing::error!("{err}");
                Response::Close(err.to_string())
            }
        }
    }
}

pub fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A request taken in: answered already, or (produce) dispatched with its answer still to come.
pub enum Handled {
    Done(Response),
    /// The partition work is with its owners; the task finishes with the response.
    Pending(rio::JoinHandle<(Response, Option<std::time::Instant>)>),
}

/// Takes in one request. Produce requests are dispatched (their batches appended in arrival
/// order) and answered later, so a connection can pipeline them; every other request is
/// answered before the next one is read, as Kafka does.
pub async fn take(
    shard: &Rc<Shard>,
    header: RequestHeader,
    body: Reader,
    client_host: &str,
) -> Handled {
    if header.api_key == key::PRODUCE && header.supported() {
        return match produce::dispatch(shard, &header, body).await {
            Ok(pending) => Handled::Pending(rio::spawn(async move {
                let response = pending.await;
                (response, ringtail_engine::timing::start())
            })),
            Err(err) => Handled::Done(malformed(&header, err)),
        };
    }
    Handled::Done(handle(shard, header, body, client_host).await)
}

fn malformed(header: &RequestHeader, err: DecodeError) -> Response {
    refuse(header, format!("malformed request: {err}"))
}

/// Closes the connection, as Kafka does for a request it cannot answer, saying at warn which
/// client sent what.
fn refuse(header: &RequestHeader, reason: String) -> Response {
    tracing::warn!(
        client_id = header.client_id.as_deref().unwrap_or(""),
        api_key = header.api_key,
        api_version = header.api_version,
        "closing connection: {reason}"
    );
    Response::Close(format!(
        "{reason} (API {} v{})",
        header.api_key, header.api_version
    ))
}

/// Answers one request.
pub async fn handle(
    shard: &Rc<Shard>,
    header: RequestHeader,
    body: Reader,
    client_host: &str,
) -> Response {
    if header.api_key == key::API_VERSIONS {
        return api_versions::handle(&header);
    }
    if !header.supported() {
        return refuse(
            &header,
            "unsupported API key or version (see ApiVersions)".into(),
        );
    }
    let handler = table::find(header.api_key).and_then(|api| api.handle);
    let Some(handler) = handler else {
        // Produce and ApiVersions are taken in before this (a test checks the table says so).
        tracing::error!(api_key = header.api_key, "no handler for a served API");
        return refuse(&header, "internal error: no handler".into());
    };
    let result = handler(shard, &header, body, client_host).await;
    result.unwrap_or_else(|err| malformed(&header, err))
}
