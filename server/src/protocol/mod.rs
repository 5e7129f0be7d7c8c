//! Kafka wire protocol: request headers, the table of APIs and versions this broker implements,
//! and response framing.
//!
//! Requests are decoded by hand with the checked [`reader::Reader`] (so that no count from the
//! wire allocates before it is checked, and record batches stay slices of the request buffer);
//! most responses are encoded with the `kafka-protocol` crate, generated from Kafka's schemas.
//! Fetch responses are framed by hand so that record bytes can be spliced.

mod error_codes;
pub mod errors;
pub mod reader;

pub use error_codes::ErrorCodes;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::Encodable;

use reader::{DecodeError, Reader};

/// Kafka API keys used here.
pub mod key {
    pub const PRODUCE: i16 = 0;
    pub const FETCH: i16 = 1;
    pub const LIST_OFFSETS: i16 = 2;
    pub const METADATA: i16 = 3;
    pub const API_VERSIONS: i16 = 18;
    pub const CREATE_TOPICS: i16 = 19;
    pub const DELETE_TOPICS: i16 = 20;
    pub const DESCRIBE_CONFIGS: i16 = 32;
    pub const DESCRIBE_CLUSTER: i16 = 60;
    pub const INIT_PRODUCER_ID: i16 = 22;
    pub const OFFSET_COMMIT: i16 = 8;
    pub const OFFSET_FETCH: i16 = 9;
    pub const FIND_COORDINATOR: i16 = 10;
    pub const JOIN_GROUP: i16 = 11;
    pub const HEARTBEAT: i16 = 12;
    pub const LEAVE_GROUP: i16 = 13;
    pub const SYNC_GROUP: i16 = 14;
    pub const DESCRIBE_GROUPS: i16 = 15;
    pub const LIST_GROUPS: i16 = 16;
    pub const DELETE_GROUPS: i16 = 42;
    pub const ALTER_CONFIGS: i16 = 33;
    pub const INCREMENTAL_ALTER_CONFIGS: i16 = 44;
}

/// One implemented API: the versions served, and the first flexible (compact, tagged) one.
#[derive(Clone, Copy, Debug)]
pub struct ApiSpec {
    pub key: i16,
    pub min: i16,
    pub max: i16,
    pub flexible_from: i16,
}

/// Exactly what this broker implements; ApiVersions reports this table.
pub const APIS: &[ApiSpec] = &[
    ApiSpec {
        key: key::PRODUCE,
        min: 3,
        max: 12,
        flexible_from: 9,
    },
    ApiSpec {
        key: key::FETCH,
        min: 4,
        max: 17,
        flexible_from: 12,
    },
    ApiSpec {
        key: key::LIST_OFFSETS,
        min: 1,
        max: 7,
        flexible_from: 6,
    },
    ApiSpec {
        key: key::METADATA,
        min: 0,
        max: 13,
        flexible_from: 9,
    },
    ApiSpec {
        key: key::API_VERSIONS,
        min: 0,
        max: 4,
        flexible_from: 3,
    },
    ApiSpec {
        key: key::CREATE_TOPICS,
        min: 2,
        max: 7,
        flexible_from: 5,
    },
    ApiSpec {
        key: key::DELETE_TOPICS,
        min: 1,
        max: 6,
        flexible_from: 4,
    },
    ApiSpec {
        key: key::DESCRIBE_CONFIGS,
        min: 0,
        max: 4,
        flexible_from: 4,
    },
    ApiSpec {
        key: key::OFFSET_COMMIT,
        min: 0,
        max: 9,
        flexible_from: 8,
    },
    ApiSpec {
        key: key::OFFSET_FETCH,
        min: 0,
        max: 9,
        flexible_from: 6,
    },
    ApiSpec {
        key: key::FIND_COORDINATOR,
        min: 0,
        max: 6,
        flexible_from: 3,
    },
    ApiSpec {
        key: key::JOIN_GROUP,
        min: 0,
        max: 9,
        flexible_from: 6,
    },
    ApiSpec {
        key: key::HEARTBEAT,
        min: 0,
        max: 4,
        flexible_from: 4,
    },
    ApiSpec {
        key: key::LEAVE_GROUP,
        min: 0,
        max: 5,
        flexible_from: 4,
    },
    ApiSpec {
        key: key::SYNC_GROUP,
        min: 0,
        max: 5,
        flexible_from: 4,
    },
    ApiSpec {
        key: key::DESCRIBE_GROUPS,
        min: 0,
        max: 6,
        flexible_from: 5,
    },
    ApiSpec {
        key: key::LIST_GROUPS,
        min: 0,
        max: 5,
        flexible_from: 3,
    },
    ApiSpec {
        key: key::DELETE_GROUPS,
        min: 0,
        max: 2,
        flexible_from: 2,
    },
    ApiSpec {
        key: key::INIT_PRODUCER_ID,
        min: 0,
        max: 5,
        flexible_from: 2,
    },
    ApiSpec {
        key: key::DESCRIBE_CLUSTER,
        min: 0,
        max: 2,
        flexible_from: 0,
    },
    ApiSpec {
        key: key::ALTER_CONFIGS,
        min: 0,
        max: 2,
        flexible_from: 2,
    },
    ApiSpec {
        key: key::INCREMENTAL_ALTER_CONFIGS,
        min: 0,
        max: 1,
        flexible_from: 1,
    },
];

pub fn spec(api_key: i16) -> Option<&'static ApiSpec> {
    APIS.iter().find(|spec| spec.key == api_key)
}

/// A request header (v1, or v2 with tagged fields).
#[derive(Clone, Debug)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

impl RequestHeader {
    /// Whether the body (and the response) use the flexible encoding. Unknown APIs and versions
    /// are not flexible: they are answered with an error in the classic framing.
    pub fn flexible(&self) -> bool {
        spec(self.api_key).is_some_and(|s| self.supported() && self.api_version >= s.flexible_from)
    }

    pub fn supported(&self) -> bool {
        spec(self.api_key).is_some_and(|s| (s.min..=s.max).contains(&self.api_version))
    }
}

/// Parses the header at the start of a frame body (after the size prefix) and returns the rest
/// as a reader for the request body. Fails only when not even the fixed fields are present.
pub fn parse_header(frame: BytesMut) -> Result<(RequestHeader, Reader), DecodeError> {
    let mut reader = Reader::new(frame, false);
    let api_key = reader.i16()?;
    let api_version = reader.i16()?;
    let correlation_id = reader.i32()?;
    let mut header = RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id: None,
    };
    // The client id is a classic nullable string in both header versions.
    header.client_id = reader.nullable_string()?;
    if header.flexible() {
        reader.flexible = true;
        reader.tagged_fields()?;
    }
    Ok((header, reader))
}

/// Frames a response: size prefix, header (v0, or v1 with empty tagged fields for flexible
/// versions; ApiVersions always uses v0, as Kafka does), then the body. Fails only if the body
/// holds a field the version cannot carry (a bug, reported instead of sent malformed).
/// A response the codec could not encode (a bug: the connection is closed, as Kafka does).
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot encode the response to API {api_key} v{api_version} for client {client_id:?}: {reason}"
)]
pub struct EncodeError {
    pub api_key: i16,
    pub api_version: i16,
    pub client_id: String,
    /// The codec's own message.
    pub reason: String,
}

pub fn frame_response<R: Encodable + ErrorCodes>(
    header: &RequestHeader,
    body: &R,
) -> Result<Bytes, EncodeError> {
    frame_response_as(header, body, header.api_version)
}

/// As [`frame_response`], with the body encoded as `version`: for the old versions that Kafka's
/// current schemas (and so the codec) dropped but whose bytes equal a later version's
/// (OffsetCommit v0-1 are v2's; OffsetFetch v0 is v1's).
pub fn frame_response_as<R: Encodable + ErrorCodes>(
    header: &RequestHeader,
    body: &R,
    version: i16,
) -> Result<Bytes, EncodeError> {
    body.error_codes(&mut |code| crate::metrics::api_error(header.api_key, code));
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    put_response_header(&mut buf, header);
    body.encode(&mut buf, version).map_err(|e| EncodeError {
        api_key: header.api_key,
        api_version: header.api_version,
        client_id: header.client_id.clone().unwrap_or_default(),
        reason: e.to_string(),
    })?;
    Ok(finish_frame(buf))
}

pub fn put_response_header(buf: &mut BytesMut, header: &RequestHeader) {
    buf.put_i32(header.correlation_id);
    if header.flexible() && header.api_key != key::API_VERSIONS {
        buf.put_u8(0); // no tagged fields
    }
}

/// Writes the size prefix of a frame built with a 4-byte placeholder.
pub fn finish_frame(mut buf: BytesMut) -> Bytes {
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    buf.freeze()
}

/// Kafka error codes used by this broker: the one place they are defined. Internal errors are
/// mapped to them in `protocol::errors` (engine errors) and by the group coordinator (whose answers
/// are Kafka's own state machine).
pub mod error_code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REQUEST: i16 = 42;
    pub const INVALID_CONFIG: i16 = 40;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const TOPIC_DELETION_DISABLED: i16 = 73;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const FENCED_INSTANCE_ID: i16 = 82;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        for spec in APIS {
            assert!(spec.min <= spec.max, "{spec:?}");
            assert!(APIS.iter().filter(|s| s.key == spec.key).count() == 1);
        }
    }
}
