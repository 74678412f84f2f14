//! Access control lists as the controller stores them (KRaft's `AccessControlEntryRecord`
//! and `RemoveAccessControlEntryRecord`, Kafka's `AclControlManager`): CreateAcls and
//! DeleteAcls commit here; every broker's authorizer reads them from its image.
//!
//! The numbers are Kafka's wire codes (`ResourceType`, `PatternType`, `AclOperation`,
//! `AclPermissionType`), kept as they travel so that a binding round-trips unchanged.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::image::MetadataImage;
use crate::records::MetadataRecord;
use crate::{Controller, ControllerError, ControllerOp};

/// Kafka's `ResourceType` codes.
pub mod resource_type {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// Kafka's `PatternType` codes.
pub mod pattern_type {
    pub const ANY: i8 = 1;
    /// Filters only: literal name, the literal wildcard, or a prefix of the name.
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Kafka's `AclOperation` codes.
pub mod operation {
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
}

/// Kafka's `AclPermissionType` codes.
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// The only name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// An ACL's resource name or principal matching every one (`*`, `User:*`).
pub const WILDCARD: &str = "*";
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Kafka's INVALID_REQUEST.
const INVALID_REQUEST: i16 = 42;

/// One ACL: who (principal, host) may or may not (permission) do what (operation) to
/// which resources (type, name, pattern).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

/// What DescribeAcls and DeleteAcls select: `None` and the ANY codes match everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    /// Kafka's `AclBindingFilter.matches`.
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let code = |want: i8, any: i8, got: i8| want == any || want == got;
        let text = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
        code(self.resource_type, resource_type::ANY, acl.resource_type)
            && self.matches_pattern(acl)
            && text(&self.principal, &acl.principal)
            && text(&self.host, &acl.host)
            && code(self.operation, operation::ANY, acl.operation)
            && code(self.permission, permission::ANY, acl.permission)
    }

    /// Kafka's `ResourcePatternFilter.matches`: MATCH selects the ACLs that would apply
    /// to a resource of that name (its literal name, the wildcard, prefixes of it).
    fn matches_pattern(&self, acl: &AclBinding) -> bool {
        match self.pattern_type {
            pattern_type::MATCH => match &self.resource_name {
                None => true,
                Some(name) => match acl.pattern_type {
                    pattern_type::LITERAL => {
                        acl.resource_name == *name || acl.resource_name == WILDCARD
                    }
                    pattern_type::PREFIXED => name.starts_with(&acl.resource_name),
                    _ => false,
                },
            },
            pattern_type::ANY => self
                .resource_name
                .as_ref()
                .is_none_or(|n| *n == acl.resource_name),
            exact => {
                exact == acl.pattern_type
                    && self
                        .resource_name
                        .as_ref()
                        .is_none_or(|n| *n == acl.resource_name)
            }
        }
    }

    /// Kafka's `AclBindingFilter.findIndefiniteField`: why a filter cannot be used
    /// (UNKNOWN codes), for DescribeAcls and DeleteAcls to refuse it.
    pub fn invalid_field(&self) -> Option<&'static str> {
        // Codes Kafka does not know read as UNKNOWN there (`fromCode`).
        if !(resource_type::ANY..=resource_type::USER).contains(&self.resource_type) {
            Some("Resource type is UNKNOWN.")
        } else if !(pattern_type::ANY..=pattern_type::PREFIXED).contains(&self.pattern_type) {
            Some("Resource pattern type is UNKNOWN.")
        } else if !(operation::ANY..=operation::DESCRIBE_TOKENS).contains(&self.operation) {
            Some("Operation is UNKNOWN.")
        } else if !(permission::ANY..=permission::ALLOW).contains(&self.permission) {
            Some("Permission type is UNKNOWN.")
        } else {
            None
        }
    }
}

/// Kafka's `AclControlManager.validateNewAcl`: why `acl` cannot be stored, as
/// INVALID_REQUEST's message.
pub fn validate_new_acl(acl: &AclBinding) -> Result<(), (i16, String)> {
    let invalid = |m: String| Err((INVALID_REQUEST, m));
    if !(resource_type::TOPIC..=resource_type::USER).contains(&acl.resource_type) {
        return invalid(format!("Invalid resourceType {}", acl.resource_type));
    }
    if !matches!(
        acl.pattern_type,
        pattern_type::LITERAL | pattern_type::PREFIXED
    ) {
        return invalid(format!("Invalid patternType {}", acl.pattern_type));
    }
    if !(operation::ALL..=operation::DESCRIBE_TOKENS).contains(&acl.operation) {
        return invalid(format!("Invalid operation {}", acl.operation));
    }
    if !matches!(acl.permission, permission::DENY | permission::ALLOW) {
        return invalid(format!("Invalid permissionType {}", acl.permission));
    }
    if acl.resource_name.is_empty() {
        return invalid("Resource name should not be empty".into());
    }
    if acl.resource_type == resource_type::CLUSTER && acl.resource_name != CLUSTER_NAME {
        return invalid(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    match acl.principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
        _ => {
            return invalid(format!(
                "Could not parse principal from `{}` (no colon is present separating the principal type from the principal name)",
                acl.principal
            ))
        }
    }
    if acl.host.is_empty() {
        return invalid("Host should not be empty".into());
    }
    Ok(())
}

/// The records creating `acls` in `image`, one outcome per ACL (`None` = created, or
/// already there: Kafka answers both the same).
pub fn create_records(
    image: &MetadataImage,
    acls: &[AclBinding],
) -> (Vec<MetadataRecord>, Vec<Option<(i16, String)>>) {
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(acls.len());
    let mut added: Vec<&AclBinding> = Vec::new();
    for acl in acls {
        if let Err(e) = validate_new_acl(acl) {
            results.push(Some(e));
            continue;
        }
        let exists = image.acls.values().any(|a| a == acl) || added.contains(&acl);
        if !exists {
            records.push(MetadataRecord::AccessControlEntry {
                id: Uuid::new_v4(),
                acl: acl.clone(),
            });
            added.push(acl);
        }
        results.push(None);
    }
    (records, results)
}

/// The records deleting what each filter matches, and what each deleted: an ACL
/// matched by several filters is reported under the first (as Kafka's
/// `AclControlManager.deleteAcls`).
pub fn delete_records(
    image: &MetadataImage,
    filters: &[AclFilter],
) -> (Vec<MetadataRecord>, Vec<DeleteOutcome>) {
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(filters.len());
    let mut deleted: std::collections::BTreeSet<Uuid> = std::collections::BTreeSet::new();
    for filter in filters {
        if let Some(why) = filter.invalid_field() {
            results.push(Err((INVALID_REQUEST, why.to_string())));
            continue;
        }
        let mut matched = Vec::new();
        for (id, acl) in image.acls.iter() {
            if !deleted.contains(id) && filter.matches(acl) {
                deleted.insert(*id);
                records.push(MetadataRecord::RemoveAccessControlEntry { id: *id });
                matched.push(acl.clone());
            }
        }
        results.push(Ok(matched));
    }
    (records, results)
}

/// DeleteAcls' answer per filter: the ACLs it deleted, or Kafka's error.
pub type DeleteOutcome = Result<Vec<AclBinding>, (i16, String)>;

impl Controller {
    /// Commit `acls` at the active controller: one outcome per ACL (`None` = done).
    pub fn create_acls(
        &self,
        acls: Vec<AclBinding>,
    ) -> Result<Vec<Option<(i16, String)>>, ControllerError> {
        self.run_change(
            &|| ControllerOp::CreateAcls { acls: acls.clone() },
            &|| self.create_acls_here(&acls),
            &|output| match output {
                crate::ChangeOutput::CreatedAcls(results) => Ok(results),
                _ => Err(ControllerError::QuorumUnavailable(
                    "no CreateAcls results in the answer".into(),
                )),
            },
        )
    }

    pub(crate) fn create_acls_here(
        &self,
        acls: &[AclBinding],
    ) -> Result<Vec<Option<(i16, String)>>, ControllerError> {
        let node_id = self.config.node_id;
        self.commit(|image| {
            let (records, results) = create_records(image, acls);
            for record in &records {
                if let MetadataRecord::AccessControlEntry { acl, .. } = record {
                    tracing::info!("[QuorumController id={node_id}] Created ACL {acl:?}");
                }
            }
            Ok((records, results))
        })
    }

    /// Delete what `filters` match at the active controller: per filter, what it deleted.
    pub fn delete_acls(
        &self,
        filters: Vec<AclFilter>,
    ) -> Result<Vec<DeleteOutcome>, ControllerError> {
        self.run_change(
            &|| ControllerOp::DeleteAcls {
                filters: filters.clone(),
            },
            &|| self.delete_acls_here(&filters),
            &|output| match output {
                crate::ChangeOutput::DeletedAcls(results) => Ok(results),
                _ => Err(ControllerError::QuorumUnavailable(
                    "no DeleteAcls results in the answer".into(),
                )),
            },
        )
    }

    pub(crate) fn delete_acls_here(
        &self,
        filters: &[AclFilter],
    ) -> Result<Vec<DeleteOutcome>, ControllerError> {
        let node_id = self.config.node_id;
        self.commit(|image| {
            let (records, results) = delete_records(image, filters);
            for acl in results.iter().flatten().flatten() {
                tracing::info!("[QuorumController id={node_id}] Deleted ACL {acl:?}");
            }
            Ok((records, results))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(name: &str, pattern: i8, principal: &str, op: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: resource_type::TOPIC,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    fn any_filter() -> AclFilter {
        AclFilter {
            resource_type: resource_type::ANY,
            resource_name: None,
            pattern_type: pattern_type::ANY,
            principal: None,
            host: None,
            operation: operation::ANY,
            permission: permission::ANY,
        }
    }

    #[test]
    fn created_acls_replay_and_duplicates_add_nothing() {
        let mut image = MetadataImage::default();
        let a = acl(
            "orders",
            pattern_type::LITERAL,
            "User:alice",
            operation::READ,
            permission::ALLOW,
        );
        let (records, results) = create_records(&image, &[a.clone(), a.clone()]);
        assert_eq!(results, vec![None, None]);
        assert_eq!(
            records.len(),
            1,
            "the same ACL twice in one request is stored once"
        );
        for r in &records {
            image.replay(r).unwrap();
        }
        assert_eq!(image.acls.values().collect::<Vec<_>>(), vec![&a]);
        let (again, results) = create_records(&image, std::slice::from_ref(&a));
        assert!(again.is_empty());
        assert_eq!(results, vec![None]);
    }

    #[test]
    fn invalid_acls_are_refused_one_by_one() {
        let image = MetadataImage::default();
        let good = acl(
            "t",
            pattern_type::LITERAL,
            "User:a",
            operation::READ,
            permission::ALLOW,
        );
        let bad = [
            AclBinding {
                resource_name: String::new(),
                ..good.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..good.clone()
            },
            AclBinding {
                pattern_type: pattern_type::MATCH,
                ..good.clone()
            },
            AclBinding {
                operation: operation::ANY,
                ..good.clone()
            },
            AclBinding {
                permission: permission::ANY,
                ..good.clone()
            },
            AclBinding {
                resource_type: resource_type::CLUSTER,
                resource_name: "other".into(),
                ..good.clone()
            },
        ];
        let mut all = bad.to_vec();
        all.push(good);
        let (records, results) = create_records(&image, &all);
        assert_eq!(records.len(), 1);
        assert!(results[..bad.len()]
            .iter()
            .all(|r| r.as_ref().is_some_and(|e| e.0 == INVALID_REQUEST)));
        assert_eq!(results[bad.len()], None);
    }

    #[test]
    fn filters_match_as_kafka_does() {
        let literal = acl(
            "orders",
            pattern_type::LITERAL,
            "User:alice",
            operation::READ,
            permission::ALLOW,
        );
        let wildcard = acl(
            "*",
            pattern_type::LITERAL,
            "User:bob",
            operation::WRITE,
            permission::DENY,
        );
        let prefixed = acl(
            "ord",
            pattern_type::PREFIXED,
            "User:alice",
            operation::ALL,
            permission::ALLOW,
        );
        let other = acl(
            "payments",
            pattern_type::LITERAL,
            "User:alice",
            operation::READ,
            permission::ALLOW,
        );
        let all = [&literal, &wildcard, &prefixed, &other];
        let select = |f: &AclFilter| all.iter().filter(|a| f.matches(a)).count();
        assert_eq!(select(&any_filter()), 4);
        let matching = AclFilter {
            resource_name: Some("orders".into()),
            pattern_type: pattern_type::MATCH,
            ..any_filter()
        };
        assert_eq!(
            select(&matching),
            3,
            "literal, wildcard and prefix of `orders`"
        );
        let literal_only = AclFilter {
            pattern_type: pattern_type::LITERAL,
            ..matching.clone()
        };
        assert_eq!(select(&literal_only), 1);
        let by_principal = AclFilter {
            principal: Some("User:bob".into()),
            ..any_filter()
        };
        assert_eq!(select(&by_principal), 1);
        let denies = AclFilter {
            permission: permission::DENY,
            ..any_filter()
        };
        assert_eq!(select(&denies), 1);
    }

    #[test]
    fn deletes_report_each_acl_under_the_first_filter_only() {
        let mut image = MetadataImage::default();
        let a = acl(
            "a",
            pattern_type::LITERAL,
            "User:x",
            operation::READ,
            permission::ALLOW,
        );
        let b = acl(
            "b",
            pattern_type::LITERAL,
            "User:x",
            operation::READ,
            permission::ALLOW,
        );
        for r in create_records(&image.clone(), &[a.clone(), b.clone()]).0 {
            image.replay(&r).unwrap();
        }
        let only_a = AclFilter {
            resource_name: Some("a".into()),
            ..any_filter()
        };
        let unknown = AclFilter {
            operation: 0,
            ..any_filter()
        };
        let (records, results) = delete_records(&image, &[only_a, any_filter(), unknown]);
        assert_eq!(records.len(), 2);
        assert_eq!(results[0], Ok(vec![a]));
        assert_eq!(results[1], Ok(vec![b]));
        assert!(matches!(results[2], Err((INVALID_REQUEST, _))));
        for r in &records {
            image.replay(r).unwrap();
        }
        assert!(image.acls.is_empty());
    }
}
