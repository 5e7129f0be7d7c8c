//! Decoding a request without running it: the decode tests and the fuzz targets use it.

use bytes::BytesMut;

use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{key, parse_header};

/// Decodes a frame body with the API's own decoder, without running the request. Ok(false):
/// not an API and version served here.
pub(crate) fn decode_only(body: &[u8]) -> Result<bool, DecodeError> {
    let (header, mut reader) = match parse_header(BytesMut::from(body)) {
        Ok(parsed) => parsed,
        Err(err) => return Err(err),
    };
    if !header.supported() {
        return Ok(false);
    }
    let version = header.api_version;
    let body: &mut Reader = &mut reader;
    let decoded = match header.api_key {
        key::PRODUCE => super::produce::decode(body).map(drop),
        key::FETCH => super::fetch::decode(version, body).map(drop),
        key::LIST_OFFSETS => super::list_offsets::decode(version, body).map(drop),
        key::METADATA => super::metadata::decode(version, body).map(drop),
        key::API_VERSIONS => Ok(()),
        key::CREATE_TOPICS => super::create_topics::decode(body).map(drop),
        key::DELETE_TOPICS => super::delete_topics::decode(version, body).map(drop),
        key::DESCRIBE_CONFIGS => super::configs::decode_describe(body).map(drop),
        key::DESCRIBE_CLUSTER => super::describe_cluster::decode(version, body).map(drop),
        key::INIT_PRODUCER_ID => super::init_producer_id::decode(version, body).map(drop),
        key::FIND_COORDINATOR => super::find_coordinator::decode(version, body).map(drop),
        key::JOIN_GROUP => super::join_group::decode(version, body, "client", "host").map(drop),
        key::SYNC_GROUP => super::sync_group::decode(version, body).map(drop),
        key::HEARTBEAT => super::heartbeat::decode(version, body).map(drop),
        key::LEAVE_GROUP => super::leave_group::decode(version, body).map(drop),
        key::OFFSET_COMMIT => super::offset_commit::decode(version, body).map(drop),
        key::OFFSET_FETCH => super::offset_fetch::decode(version, body).map(drop),
        key::LIST_GROUPS => super::list_groups::decode(version, body).map(drop),
        key::DESCRIBE_GROUPS => super::describe_groups::decode(body).map(drop),
        key::DELETE_GROUPS => super::delete_groups::decode(body).map(drop),
        _ => return Ok(false),
    };
    decoded.map(|()| true)
}
