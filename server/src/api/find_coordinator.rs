//! FindCoordinator (v0-4): this broker coordinates every group. Transaction coordinators are not
//! offered (no transactions): COORDINATOR_NOT_AVAILABLE.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, Response};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::Shard;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// A FindCoordinator request: the key type (group or transaction) and the keys (one before v4).
pub(super) struct Request {
    pub key_type: i8,
    pub keys: Vec<String>,
}

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    if version >= 4 {
        let key_type = body.i8()?;
        let count = body.array(1)?;
        let keys = (0..count)
            .map(|_| body.string())
            .collect::<Result<_, _>>()?;
        return Ok(Request { key_type, keys });
    }
    let key = body.string()?;
    let key_type = if version >= 1 {
        body.i8()?
    } else {
        KEY_TYPE_GROUP
    };
    Ok(Request {
        key_type,
        keys: vec![key],
    })
}

pub fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let Request { key_type, keys } = decode(version, &mut body)?;
    let config = &shard.shared.config;
    // Transactions do not exist yet: refuse them with an error no client retries (Kafka's
    // answer to a principal that may not use the transactional id), so a transactional producer
    // fails at once with a clear reason instead of retrying COORDINATOR_NOT_AVAILABLE.
    let (code, message) = match key_type {
        KEY_TYPE_GROUP => (error_code::NONE, None),
        KEY_TYPE_TRANSACTION => (
            error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            Some("transactions are not supported by this broker yet"),
        ),
        _ => (
            error_code::INVALID_REQUEST,
            Some("unknown coordinator key type"),
        ),
    };
    // Each key's coordinator: this broker alone; in a cluster, the broker its offsets
    // partition maps to (COORDINATOR_NOT_AVAILABLE while that broker is fenced).
    let place = |key: &str| -> (i16, BrokerId, StrBytes, i32) {
        let unplaced = |code| (code, BrokerId(-1), str_bytes(""), -1);
        if code != error_code::NONE {
            return unplaced(code);
        }
        if shard.shared.cluster.is_none() {
            let host = str_bytes(&config.advertised_host);
            return (code, super::node_id(shard), host, config.advertised_port);
        }
        match crate::cluster::topics::group_coordinator(shard, key) {
            Some((node, host, port)) => (code, BrokerId(node), str_bytes(&host), port),
            None => unplaced(error_code::COORDINATOR_NOT_AVAILABLE),
        }
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = keys
            .iter()
            .map(|key| {
                let (code, node, host, port) = place(key);
                Coordinator::default()
                    .with_key(str_bytes(key))
                    .with_node_id(node)
                    .with_host(host)
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message(message.map(str_bytes))
            })
            .collect();
    } else {
        let (code, node, host, port) = place(keys.first().map_or("", String::as_str));
        response.error_code = code;
        if version >= 1 {
            response.error_message = message.map(str_bytes);
        }
        response.node_id = node;
        response.host = host;
        response.port = port;
    }
    Ok(Response::framed(frame_response(header, &response)))
}
