//! ApiVersions: exactly the table in `protocol::APIS`. The response carries no tagged fields
//! (Kafka sends none here by default, and librdkafka 2.0.2 cannot read them).

use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};

use super::Response;
use crate::protocol::{error_code, frame_response, key, spec, RequestHeader, APIS};

pub fn handle(header: &RequestHeader) -> Response {
    let api_keys = APIS
        .iter()
        .map(|spec| {
            ApiVersion::default()
                .with_api_key(spec.key)
                .with_min_version(spec.min)
                .with_max_version(spec.max)
        })
        .collect();
    let mut response = ApiVersionsResponse::default().with_api_keys(api_keys);
    if header.supported() {
        return Response::framed(frame_response(header, &response));
    }
    // An unsupported version is answered in v0, with the error and the versions we do support,
    // so the client can pick one (Kafka's behaviour).
    response.error_code = error_code::UNSUPPORTED_VERSION;
    let v0 = RequestHeader {
        api_version: 0,
        ..header.clone()
    };
    debug_assert!(spec(key::API_VERSIONS).is_some());
    Response::framed(frame_response(&v0, &response))
}
