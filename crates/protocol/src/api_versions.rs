//! The APIs and versions this broker implements — the single source of truth for the
//! ApiVersions response and for rejecting requests we cannot decode correctly.
//!
//! A version is listed only when every field it adds is handled (or is a documented
//! no-op for a single-node broker); see the notes next to each entry. Clients pick the
//! highest version both sides support, so over-advertising is how subtle
//! incompatibilities happen.

use kafka_protocol::messages::ApiKey;

/// One supported API: Kafka's key and the inclusive version range we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
    /// What ApiVersions reports as the minimum; below `min_version` only for Produce,
    /// see [`PRODUCE_ADVERTISED_MIN_VERSION`].
    pub advertised_min_version: i16,
}

const fn api(key: ApiKey, min_version: i16, max_version: i16) -> SupportedApi {
    SupportedApi {
        key,
        min_version,
        max_version,
        advertised_min_version: min_version,
    }
}

/// librdkafka enables gzip, snappy and lz4 only if the broker advertises Produce v0
/// (its feature detection predates KIP-896). Kafka 4 therefore keeps advertising
/// Produce from v0 while refusing v0-2 requests (KAFKA-18659); so do we. No client
/// sends v0-2 once it sees a higher version both sides support.
pub const PRODUCE_ADVERTISED_MIN_VERSION: i16 = 0;

/// Ordered by API key, as Kafka lists them.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    // v3 is the first with record batch v2 (Kafka 4 dropped v0-2). v12 is the same
    // request from a transactions-v2 producer (KIP-890 part 2: the leader adds the
    // partition to the transaction); v13 addresses topics by id: not implemented.
    SupportedApi {
        key: ApiKey::Produce,
        min_version: 3,
        max_version: 12,
        advertised_min_version: PRODUCE_ADVERTISED_MIN_VERSION,
    },
    // v4+ (Kafka 4 baseline); v13+ address topics by id; v17 adds a replica directory id
    // that only followers send. Fetch sessions are answered sessionless (session id 0),
    // which KIP-227 allows and every client handles by sending full fetches.
    api(ApiKey::Fetch, 4, 17),
    // v7 adds MAX_TIMESTAMP, v8 EARLIEST_LOCAL (= earliest here: no tiered storage),
    // v9 LATEST_TIERED (= earliest: nothing is tiered).
    api(ApiKey::ListOffsets, 1, 9),
    // v10 topic ids; v12 allows lookup by topic id. v13 adds a top-level error only.
    api(ApiKey::Metadata, 0, 12),
    // v10 addresses topics by id: not implemented.
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    // v4+ batches keys; v6 adds share-group key types.
    api(ApiKey::FindCoordinator, 0, 5),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    // v6 adds an error message (KIP-1043) only.
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 5),
    // v1: tokens in SaslAuthenticate requests; v0: raw tokens after the handshake.
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    // v2 is the flexible encoding.
    api(ApiKey::DeleteRecords, 0, 2),
    // v6 adds two-phase-commit fields (KIP-939): not implemented.
    api(ApiKey::InitProducerId, 0, 5),
    // Kafka 4 serves v2-4 (v3 adds the replica id, v4 is the flexible encoding).
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    // v4+ batch transactions and add the verify-only form (KIP-890, broker to broker).
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    // v5 bumps the epoch at every end and returns it (KIP-890 transactions v2).
    api(ApiKey::EndTxn, 0, 5),
    // Kafka 4 serves only v1 (v0 was removed with KIP-896).
    api(ApiKey::WriteTxnMarkers, 1, 1),
    // v5: the group coordinator adds its partition to the transaction (transactions v2).
    api(ApiKey::TxnOffsetCommit, 0, 5),
    // Kafka 4 serves v1-3 (v0, without pattern types, was removed with KIP-896).
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    // v4 adds the file system's total and usable bytes.
    api(ApiKey::DescribeLogDirs, 1, 4),
    // v1 adds the session lifetime (KIP-368), v2 is the flexible encoding.
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    // v1 adds the election type (preferred or unclean), v2 is the flexible encoding.
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    // v1 adds allow_replication_factor_change (KIP-860).
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    // v1 adds fetch timestamps, v2 the voters' endpoints (KIP-853).
    api(ApiKey::DescribeQuorum, 0, 2),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0),
    // v1 adds the duration filter (KIP-994); v2's transactional id pattern is not
    // implemented.
    api(ApiKey::ListTransactions, 0, 1),
    // KIP-848. Heartbeat v1 has the client generate its member id.
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    // v1 adds the member type (classic or consumer).
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    // KIP-966: what kafka-topics --describe and Admin describeTopics use from 3.7/3.8.
    api(ApiKey::DescribeTopicPartitions, 0, 0),
];

/// A feature flag of ApiVersions v3+ (KIP-584): its supported range and the level
/// the cluster has finalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub min_version: i16,
    pub max_version: i16,
    pub finalized_level: i16,
}

/// The features this broker reports. `transaction.version` 2 (KIP-890 part 2) is
/// finalized as a new Kafka 4.x cluster finalizes it: Java producers 4.0+ use
/// transactions v2 (Produce v12, EndTxn v5, TxnOffsetCommit v5) only when it is.
/// Older clients still use transactions v1 against it, as they do against Kafka.
/// `group.version` 1 is the consumer group protocol (KIP-848), finalized by default
/// from Kafka 4.0.
pub const FEATURES: &[Feature] = &[
    Feature {
        name: "group.version",
        min_version: 0,
        max_version: 1,
        finalized_level: 1,
    },
    Feature {
        name: "transaction.version",
        min_version: 0,
        max_version: 2,
        finalized_level: 2,
    },
];

/// The epoch of the finalized features. Kafka uses the metadata offset at which they
/// were last changed; Ottla's never change at run time, and clients only need it to be
/// at least 0 (they ignore finalized features with epoch -1).
pub const FINALIZED_FEATURES_EPOCH: i64 = 0;

/// The supported range for `key`, if we implement it at all.
pub fn supported(key: ApiKey) -> Option<SupportedApi> {
    SUPPORTED_APIS.iter().copied().find(|a| a.key == key)
}

/// True when `version` of the API with raw key `key` is one we implement.
pub fn is_supported(key: i16, version: i16) -> bool {
    ApiKey::try_from(key)
        .ok()
        .and_then(supported)
        .is_some_and(|a| a.min_version <= version && version <= a.max_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_range_is_decodable_by_the_message_crate() {
        for a in SUPPORTED_APIS {
            let crate_range = a.key.valid_versions();
            assert!(a.min_version <= a.max_version, "{:?}", a.key);
            assert!(a.advertised_min_version <= a.min_version);
            assert!(
                crate_range.min <= a.min_version && a.max_version <= crate_range.max,
                "{:?}: we advertise {}..={} but the message crate knows {}..={}",
                a.key,
                a.min_version,
                a.max_version,
                crate_range.min,
                crate_range.max
            );
        }
    }

    #[test]
    fn table_is_sorted_and_unique() {
        let keys: Vec<i16> = SUPPORTED_APIS.iter().map(|a| a.key as i16).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn support_checks() {
        assert!(is_supported(18, 3));
        assert!(!is_supported(18, 99));
        assert!(
            !is_supported(0, 2),
            "Produce v0-2 is advertised but refused"
        );
        assert_eq!(
            supported(ApiKey::Produce).unwrap().advertised_min_version,
            0
        );
        assert!(!is_supported(9999, 0));
    }
}
