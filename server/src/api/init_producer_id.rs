//! InitProducerId (v0-4) for idempotent producers: a new producer id (epoch 0), or, when the
//! request carries its current id and epoch (v3+, KIP-360), the same id with the epoch bumped
//! (a new id once the epoch would overflow). Transactions are not supported: a transactional id
//! is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients treat as fatal.

use std::rc::Rc;

use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::ProducerId;

use super::Response;
use crate::producer_ids::AllocateError;
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::{LocalFuture, Shard, ShardId};

pub(super) struct Request {
    transactional_id: Option<String>,
    producer_id: i64,
    producer_epoch: i16,
}

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    let transactional_id = body.nullable_string()?;
    let _transaction_timeout_ms = body.i32()?;
    let (producer_id, producer_epoch) = if version >= 3 {
        (body.i64()?, body.i16()?)
    } else {
        (-1, -1)
    };
    Ok(Request {
        transactional_id,
        producer_id,
        producer_epoch,
    })
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let request = decode(header.api_version, &mut body)?;
    let mut response = InitProducerIdResponse::default();
    if request.transactional_id.is_some() {
        response.error_code = error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return Ok(Response::framed(frame_response(header, &response)));
    }
    if request.producer_id >= 0 && (0..i16::MAX - 1).contains(&request.producer_epoch) {
        response.producer_id = ProducerId(request.producer_id);
        response.producer_epoch = request.producer_epoch + 1;
        return Ok(Response::framed(frame_response(header, &response)));
    }
    if let Some(cluster) = &shard.shared.cluster {
        // In a cluster, ids come in blocks from the quorum: unique cluster-wide.
        match cluster.producer_id().await {
            Ok(id) => {
                response.producer_id = ProducerId(id);
                response.producer_epoch = 0;
            }
            Err(err) => {
                tracing::warn!("InitProducerId: {err}");
                response.error_code = error_code::COORDINATOR_NOT_AVAILABLE;
            }
        }
        return Ok(Response::framed(frame_response(header, &response)));
    }
    let allocate = |controller: Rc<Shard>| -> LocalFuture<Result<i64, AllocateError>> {
        Box::pin(async move { controller.allocate_producer_id() })
    };
    match shard.on_shard(ShardId::CONTROLLER, allocate).await {
        Some(Ok(id)) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Some(Err(err)) => {
            tracing::error!("InitProducerId: {err}");
            response.error_code = error_code::COORDINATOR_NOT_AVAILABLE;
        }
        None => response.error_code = error_code::COORDINATOR_NOT_AVAILABLE,
    }
    Ok(Response::framed(frame_response(header, &response)))
}
