//! DescribeCluster (v0-1): this one broker, as admin clients need it.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};

use super::metadata::CLUSTER_ID;
use super::{str_bytes, Response, AUTHORIZED_OPERATIONS_OMITTED};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{frame_response, RequestHeader};
use crate::shard::Shard;

/// The endpoint type asked for (1: brokers).
pub(super) fn decode(version: i16, body: &mut Reader) -> Result<i8, DecodeError> {
    let _include_authorized_operations = body.bool()?;
    let endpoint_type = if version >= 1 { body.i8()? } else { 1 };
    if version >= 2 {
        let _include_fenced_brokers = body.bool()?;
    }
    Ok(endpoint_type)
}

pub fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let endpoint_type = decode(header.api_version, &mut body)?;
    let brokers = super::brokers(shard)
        .into_iter()
        .map(|(id, host, port)| {
            DescribeClusterBroker::default()
                .with_broker_id(id)
                .with_host(str_bytes(&host))
                .with_port(port)
        })
        .collect();
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(endpoint_type)
        .with_cluster_id(str_bytes(CLUSTER_ID))
        .with_controller_id(super::controller_id(shard))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    Ok(Response::framed(frame_response(header, &response)))
}
