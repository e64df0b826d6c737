//! ApiVersions: the APIs and versions this broker implements. A request of a version we do not
//! know gets UNSUPPORTED_VERSION with our list, so the client can pick one (KIP-511).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

pub(super) fn handle(_request: &ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    let api_keys = super::supported_apis()
        .into_iter()
        .map(|(key, min, max)| {
            ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max)
        })
        .collect();
    let known = super::supported_versions(ApiKey::ApiVersions).is_some_and(|(min, max)| (min..=max).contains(&version));
    let error_code = if known { 0 } else { ResponseError::UnsupportedVersion.code() };
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}
