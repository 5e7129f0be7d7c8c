//! Decoding a request without running it, with the API table's decoder: the decode tests and
//! the fuzz targets use it.

use bytes::BytesMut;

use crate::protocol::parse_header;
use crate::protocol::reader::DecodeError;

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
    match super::table::find(header.api_key) {
        Some(api) => (api.decode)(header.api_version, &mut reader).map(|()| true),
        None => Ok(false),
    }
}
