//! ApiVersions (key 18): the table in `ottla_protocol::api_versions`.
//!
//! A client that sends a version we lack gets Kafka's documented fallback: a v0-format
//! response carrying UNSUPPORTED_VERSION and our version table, from which it picks a
//! version both sides support and asks again.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::api_versions::{supported, FEATURES, FINALIZED_FEATURES_EPOCH, SUPPORTED_APIS};
use ottla_protocol::frame::Request;

use super::{decode, encode, respond, str_bytes, HandlerError, Reply};

fn version_table() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.advertised_min_version)
                .with_max_version(a.max_version)
        })
        .collect()
}

pub fn handle(request: &Request) -> Result<Reply, HandlerError> {
    let range = supported(ApiKey::ApiVersions).expect("ApiVersions is always supported");
    let version = request.version();
    if version < range.min_version || version > range.max_version {
        let body = ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(version_table());
        return Ok(Reply::Now(encode(
            ApiKey::ApiVersions,
            0,
            request.correlation_id(),
            &body,
        )?));
    }
    let _client: ApiVersionsRequest = decode(request)?;
    // Features are v3+ tagged fields; the encoder leaves them out of older versions.
    let body = ApiVersionsResponse::default()
        .with_api_keys(version_table())
        .with_supported_features(
            FEATURES
                .iter()
                .map(|f| {
                    SupportedFeatureKey::default()
                        .with_name(str_bytes(f.name.to_string()))
                        .with_min_version(f.min_version)
                        .with_max_version(f.max_version)
                })
                .collect(),
        )
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(
            FEATURES
                .iter()
                .map(|f| {
                    FinalizedFeatureKey::default()
                        .with_name(str_bytes(f.name.to_string()))
                        .with_min_version_level(f.finalized_level)
                        .with_max_version_level(f.finalized_level)
                })
                .collect(),
        );
    respond(request, &body)
}
