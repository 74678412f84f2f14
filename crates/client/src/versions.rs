//! A node's ApiVersions table and version negotiation.

use std::collections::BTreeMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use crate::error::ClientError;

/// The API version ranges one node advertised in its ApiVersions response.
///
/// Kafka peers negotiate per API: the sender picks the highest version both sides
/// implement. A broker's table can change when it is upgraded or downgraded, which
/// always involves a restart, so the table is refreshed on every new connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiVersionTable {
    ranges: BTreeMap<i16, (i16, i16)>,
}

impl ApiVersionTable {
    /// The table of an ApiVersions response. Entries with an empty range are dropped;
    /// for a key listed twice the last entry wins.
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        let ranges = response
            .api_keys
            .iter()
            .filter(|v| 0 <= v.min_version && v.min_version <= v.max_version)
            .map(|v| (v.api_key, (v.min_version, v.max_version)))
            .collect();
        ApiVersionTable { ranges }
    }

    /// The node's advertised `(min, max)` for `api_key`, if it implements the API.
    pub fn range(&self, api_key: ApiKey) -> Option<(i16, i16)> {
        self.ranges.get(&(api_key as i16)).copied()
    }

    /// Every advertised `(api key, (min, max))`, by key.
    pub fn iter(&self) -> impl Iterator<Item = (i16, (i16, i16))> + '_ {
        self.ranges.iter().map(|(k, r)| (*k, *r))
    }

    /// The highest version of `api_key` in both `ours_min..=ours_max` and the node's
    /// range, or `None` if they do not overlap (or the node lacks the API).
    pub fn negotiate(&self, api_key: ApiKey, ours_min: i16, ours_max: i16) -> Option<i16> {
        let (theirs_min, theirs_max) = self.range(api_key)?;
        let low = ours_min.max(theirs_min);
        let high = ours_max.min(theirs_max);
        (low <= high).then_some(high)
    }

    /// [`Self::negotiate`], as an error naming both ranges when there is no common
    /// version.
    pub fn require(
        &self,
        api_key: ApiKey,
        ours_min: i16,
        ours_max: i16,
    ) -> Result<i16, ClientError> {
        self.negotiate(api_key, ours_min, ours_max)
            .ok_or_else(|| ClientError::UnsupportedVersion {
                api_key,
                ours_min,
                ours_max,
                theirs: self.range(api_key),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    fn table() -> ApiVersionTable {
        let response = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_min_version(0)
                .with_max_version(12),
            ApiVersion::default()
                .with_api_key(ApiKey::Fetch as i16)
                .with_min_version(4)
                .with_max_version(17),
            // a nonsense entry is ignored
            ApiVersion::default()
                .with_api_key(ApiKey::Produce as i16)
                .with_min_version(9)
                .with_max_version(3),
        ]);
        ApiVersionTable::from_response(&response)
    }

    #[test]
    fn highest_common_version() {
        let t = table();
        assert_eq!(t.negotiate(ApiKey::Metadata, 0, 13), Some(12));
        assert_eq!(t.negotiate(ApiKey::Metadata, 1, 9), Some(9));
        assert_eq!(t.negotiate(ApiKey::Fetch, 0, 4), Some(4));
        assert_eq!(t.negotiate(ApiKey::Fetch, 0, 3), None);
        assert_eq!(t.negotiate(ApiKey::Fetch, 18, 20), None);
        assert_eq!(t.negotiate(ApiKey::Produce, 0, 13), None);
        assert_eq!(t.negotiate(ApiKey::WriteTxnMarkers, 0, 1), None);
    }

    #[test]
    fn require_names_both_ranges() {
        let t = table();
        assert_eq!(t.require(ApiKey::Metadata, 0, 13).ok(), Some(12));
        let err = t.require(ApiKey::Fetch, 0, 3).unwrap_err();
        assert!(matches!(
            err,
            ClientError::UnsupportedVersion {
                api_key: ApiKey::Fetch,
                theirs: Some((4, 17)),
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "node does not support Fetch v0..=v3 (it advertises v4..=v17)"
        );
        let err = t.require(ApiKey::WriteTxnMarkers, 1, 1).unwrap_err();
        assert!(err
            .to_string()
            .ends_with("(it advertises no version of it)"));
    }
}
