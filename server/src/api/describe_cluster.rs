//! DescribeCluster (v0-1): this one broker, as admin clients need it.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};

use super::metadata::CLUSTER_ID;
use super::{str_bytes, Response, AUTHORIZED_OPERATIONS_OMITTED, NODE_ID};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{frame_response, RequestHeader};
use crate::shard::Shard;

pub fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let _include_authorized_operations = body.bool()?;
    let endpoint_type = if header.api_version >= 1 {
        body.i8()?
    } else {
        1
    };
    let config = &shard.shared.config;
    let broker = DescribeClusterBroker::default()
        .with_broker_id(NODE_ID)
        .with_host(str_bytes(&config.advertised_host))
        .with_port(config.advertised_port);
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(endpoint_type)
        .with_cluster_id(str_bytes(CLUSTER_ID))
        .with_controller_id(NODE_ID)
        .with_brokers(vec![broker])
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    Ok(Response::framed(frame_response(header, &response)))
}
