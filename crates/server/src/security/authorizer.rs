//! Kafka's `StandardAuthorizer`: decides from the ACLs in the metadata image whether a
//! principal connected from a host may perform an operation on a resource.
//!
//! The rules, in Kafka's order: a super user may do anything; otherwise the ACLs that
//! apply to the resource are those naming it literally, the literal wildcard `*`, and
//! every PREFIXED ACL whose prefix starts its name. If none applies to the resource at
//! all, `allow.everyone.if.no.acl.found` decides. Else a DENY for this principal (or
//! `User:*`) and host (or `*`) naming this operation (or ALL) denies; then an ALLOW
//! naming it, ALL, or an operation implying it (READ, WRITE, DELETE and ALTER imply
//! DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS: ALLOWs only) allows; else deny.
//!
//! Checks run on every request, so each connection keeps its recent decisions
//! ([`Caller`]): a produce to a topic already checked costs one atomic load and one
//! uncontended lock. The cache is dropped whenever the ACLs change.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ottla_controller::acls::{
    operation, pattern_type, permission, AclBinding, WILDCARD, WILDCARD_PRINCIPAL,
};
pub use ottla_controller::acls::{operation as op, resource_type as resource, CLUSTER_NAME};
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::config::AuthorizerConfig;

/// Decisions one connection remembers; past this many the cache starts over (a client
/// touching more resources than this pays a lookup per new one).
const MAX_CACHED_DECISIONS_PER_CONNECTION: usize = 4_096;
/// Longer resource names (group ids and transactional ids are unbounded) are decided
/// every time rather than kept: the cache stays under 4,096 × 256 bytes a connection.
const MAX_CACHED_NAME_BYTES: usize = 256;

/// The image's ACLs.
type AclsById = BTreeMap<Uuid, AclBinding>;
/// Allowed or not, by (operation, resource type), then resource name (looked up by
/// `&str`, so a cached decision costs no allocation).
type Decisions = HashMap<(i8, i8), HashMap<String, bool>>;

/// One ACL as the index keeps it (the resource part is the index's key).
#[derive(Debug, Clone)]
struct Entry {
    principal: String,
    host: String,
    operation: i8,
    permission: i8,
}

impl Entry {
    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == WILDCARD_PRINCIPAL)
            && (self.host == host || self.host == WILDCARD)
    }
}

/// The ACLs, indexed by resource type and pattern, built once per change.
#[derive(Default)]
struct AclIndex {
    literal: HashMap<(i8, String), Vec<Entry>>,
    prefixed: HashMap<i8, BTreeMap<String, Vec<Entry>>>,
}

impl AclIndex {
    fn build(acls: &BTreeMap<Uuid, AclBinding>) -> AclIndex {
        let mut index = AclIndex::default();
        for acl in acls.values() {
            let entry = Entry {
                principal: acl.principal.clone(),
                host: acl.host.clone(),
                operation: acl.operation,
                permission: acl.permission,
            };
            match acl.pattern_type {
                pattern_type::PREFIXED => index
                    .prefixed
                    .entry(acl.resource_type)
                    .or_default()
                    .entry(acl.resource_name.clone())
                    .or_default()
                    .push(entry),
                _ => index
                    .literal
                    .entry((acl.resource_type, acl.resource_name.clone()))
                    .or_default()
                    .push(entry),
            }
        }
        index
    }

    /// Every ACL applying to the resource `name` of `resource_type`.
    fn applying(&self, resource_type: i8, name: &str) -> Vec<&Entry> {
        let mut out: Vec<&Entry> = Vec::new();
        for key in [name, WILDCARD] {
            if let Some(entries) = self.literal.get(&(resource_type, key.to_string())) {
                out.extend(entries);
            }
        }
        if let Some(prefixes) = self.prefixed.get(&resource_type) {
            for (end, _) in name.char_indices().skip(1).chain([(name.len(), ' ')]) {
                if let Some(entries) = prefixes.get(&name[..end]) {
                    out.extend(entries);
                }
            }
        }
        out
    }
}

/// Whether an ALLOW of `granted` covers `wanted`.
fn allow_covers(granted: i8, wanted: i8) -> bool {
    granted == wanted
        || granted == operation::ALL
        || (wanted == operation::DESCRIBE
            && matches!(
                granted,
                operation::READ | operation::WRITE | operation::DELETE | operation::ALTER
            ))
        || (wanted == operation::DESCRIBE_CONFIGS && granted == operation::ALTER_CONFIGS)
}

/// Why a decision was made, for the authorizer log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    SuperUser,
    NoAclFound,
    Deny,
    Allow,
    DefaultDeny,
}

pub struct Authorizer {
    config: AuthorizerConfig,
    /// The ACLs of the image last taken, and their index.
    index: RwLock<(Arc<AclsById>, Arc<AclIndex>)>,
    /// Bumped whenever the ACLs change: connections drop their cached decisions.
    generation: AtomicU64,
}

impl Authorizer {
    pub fn new(config: AuthorizerConfig) -> Authorizer {
        Authorizer {
            config,
            index: RwLock::new((Arc::default(), Arc::default())),
            generation: AtomicU64::new(0),
        }
    }

    /// Take the ACLs of a new metadata image (cheap when they did not change).
    pub fn update(&self, acls: &Arc<BTreeMap<Uuid, AclBinding>>) {
        if Arc::ptr_eq(&self.index.read().0, acls) {
            return;
        }
        let index = Arc::new(AclIndex::build(acls));
        *self.index.write() = (acls.clone(), index);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn decide(&self, principal: &str, host: &str, op: i8, resource_type: i8, name: &str) -> Rule {
        if self.config.super_users.iter().any(|s| s == principal) {
            return Rule::SuperUser;
        }
        let index = self.index.read().1.clone();
        let applying = index.applying(resource_type, name);
        if applying.is_empty() {
            return if self.config.allow_everyone_if_no_acl_found {
                Rule::NoAclFound
            } else {
                Rule::DefaultDeny
            };
        }
        let mine = || applying.iter().filter(|e| e.applies_to(principal, host));
        if mine().any(|e| {
            e.permission == permission::DENY && (e.operation == op || e.operation == operation::ALL)
        }) {
            return Rule::Deny;
        }
        if mine().any(|e| e.permission == permission::ALLOW && allow_covers(e.operation, op)) {
            return Rule::Allow;
        }
        Rule::DefaultDeny
    }
}

/// Kafka's names for resource types and operations, for log lines.
fn resource_type_name(t: i8) -> &'static str {
    match t {
        resource::TOPIC => "Topic",
        resource::GROUP => "Group",
        resource::CLUSTER => "Cluster",
        resource::TRANSACTIONAL_ID => "TransactionalId",
        resource::DELEGATION_TOKEN => "DelegationToken",
        resource::USER => "User",
        _ => "Unknown",
    }
}

fn operation_name(o: i8) -> &'static str {
    match o {
        operation::ALL => "All",
        operation::READ => "Read",
        operation::WRITE => "Write",
        operation::CREATE => "Create",
        operation::DELETE => "Delete",
        operation::ALTER => "Alter",
        operation::DESCRIBE => "Describe",
        operation::CLUSTER_ACTION => "ClusterAction",
        operation::DESCRIBE_CONFIGS => "DescribeConfigs",
        operation::ALTER_CONFIGS => "AlterConfigs",
        operation::IDEMPOTENT_WRITE => "IdempotentWrite",
        operation::CREATE_TOKENS => "CreateTokens",
        operation::DESCRIBE_TOKENS => "DescribeTokens",
        _ => "Unknown",
    }
}

/// The client's address as Kafka compares it with an ACL's host (Java's
/// `InetAddress.getHostAddress`): IPv4-mapped IPv6 as plain IPv4, IPv6 in full
/// uncompressed groups (`0:0:0:0:0:0:0:1`).
fn kafka_host_address(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|s| format!("{s:x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

/// One connection's decisions, valid for one ACL generation.
struct DecisionCache {
    generation: u64,
    decisions: Decisions,
    /// Decisions held, over every operation and resource type.
    len: usize,
}

impl DecisionCache {
    fn new(generation: u64) -> DecisionCache {
        DecisionCache {
            generation,
            decisions: HashMap::new(),
            len: 0,
        }
    }
}

/// Who sent a request, as the authorizer sees it: cheap to clone into work that runs
/// elsewhere (the blocking pool). With no authorizer configured every check passes.
#[derive(Clone)]
pub struct Caller {
    inner: Arc<CallerInner>,
}

struct CallerInner {
    principal: String,
    host: String,
    authorizer: Option<Arc<Authorizer>>,
    cache: Mutex<DecisionCache>,
}

impl Caller {
    pub fn new(principal: &str, host: IpAddr, authorizer: Option<Arc<Authorizer>>) -> Caller {
        Caller {
            inner: Arc::new(CallerInner {
                principal: principal.to_string(),
                host: kafka_host_address(host),
                authorizer,
                cache: Mutex::new(DecisionCache::new(0)),
            }),
        }
    }

    pub fn principal(&self) -> &str {
        &self.inner.principal
    }

    /// A `super.users` principal, or no authorizer at all: everything is allowed.
    pub fn is_super_user(&self) -> bool {
        self.inner.authorizer.as_ref().is_none_or(|a| {
            a.config
                .super_users
                .iter()
                .any(|s| *s == self.inner.principal)
        })
    }

    /// Whether an authorizer is configured (CreateAcls and friends answer
    /// SECURITY_DISABLED without one).
    pub fn has_authorizer(&self) -> bool {
        self.inner.authorizer.is_some()
    }

    /// The topics this caller may DESCRIBE, for the group coordinator to resolve a
    /// subscription regex with (Kafka filters the matched topics with the triggering
    /// member's context, not logging denials: a topic left out is not an event).
    pub fn topic_describe_access(&self) -> ottla_group::consumer::TopicAccess {
        if !self.has_authorizer() {
            return ottla_group::consumer::TopicAccess::default();
        }
        let caller = self.clone();
        ottla_group::consumer::TopicAccess::new(move |topic| {
            caller.allowed_quietly(op::DESCRIBE, resource::TOPIC, topic)
        })
    }

    /// May this caller perform `op` on the resource `name` of `resource_type`? A denial
    /// is logged (once per connection and resource).
    pub fn allowed(&self, op: i8, resource_type: i8, name: &str) -> bool {
        self.check(op, resource_type, name, true)
    }

    /// As [`Caller::allowed`], without logging a denial: for filtering what a listing
    /// shows (Kafka's `logIfDenied = false`), where a refusal is not an event.
    pub fn allowed_quietly(&self, op: i8, resource_type: i8, name: &str) -> bool {
        self.check(op, resource_type, name, false)
    }

    fn check(&self, op: i8, resource_type: i8, name: &str, log_denial: bool) -> bool {
        let Some(authorizer) = &self.inner.authorizer else {
            return true;
        };
        let generation = authorizer.generation.load(Ordering::Acquire);
        {
            let mut cache = self.inner.cache.lock();
            if cache.generation != generation {
                *cache = DecisionCache::new(generation);
            } else if let Some(&allowed) = cache
                .decisions
                .get(&(op, resource_type))
                .and_then(|by_name| by_name.get(name))
            {
                return allowed;
            }
        }
        let rule = authorizer.decide(
            &self.inner.principal,
            &self.inner.host,
            op,
            resource_type,
            name,
        );
        let allowed = matches!(rule, Rule::SuperUser | Rule::NoAclFound | Rule::Allow);
        if !allowed && log_denial {
            // Kafka's `kafka.authorizer.logger` line, once per connection and resource.
            tracing::info!(
                target: "kafka.authorizer.logger",
                "Principal = {} is Denied operation = {} from host = {} on resource = {}:{}:{} based on rule {:?}",
                self.inner.principal,
                operation_name(op),
                self.inner.host,
                resource_type_name(resource_type),
                "LITERAL",
                name,
                rule
            );
        }
        // A quiet denial is not cached: a later check that logs must still log it once.
        let cacheable = allowed || log_denial;
        let mut cache = self.inner.cache.lock();
        if cacheable && cache.generation == generation && name.len() <= MAX_CACHED_NAME_BYTES {
            if cache.len >= MAX_CACHED_DECISIONS_PER_CONNECTION {
                *cache = DecisionCache::new(generation);
            }
            cache
                .decisions
                .entry((op, resource_type))
                .or_default()
                .insert(name.to_string(), allowed);
            cache.len += 1;
        }
        allowed
    }

    /// Whether some topic may be written (KIP-679: what an idempotent producer needs
    /// without IDEMPOTENT_WRITE): an ALLOW of WRITE or ALL on any topic pattern for
    /// this principal and host, or no ACL needed at all.
    pub fn may_write_some_topic(&self) -> bool {
        let Some(authorizer) = &self.inner.authorizer else {
            return true;
        };
        if authorizer
            .config
            .super_users
            .iter()
            .any(|s| *s == self.inner.principal)
        {
            return true;
        }
        let index = authorizer.index.read().1.clone();
        let mine = |e: &Entry| e.applies_to(&self.inner.principal, &self.inner.host);
        // A DENY of WRITE on every topic for this principal ends it (Kafka's
        // `authorizeByResourceType` refuses on a wildcard deny).
        let wildcard_deny = index
            .literal
            .get(&(resource::TOPIC, WILDCARD.to_string()))
            .is_some_and(|entries| {
                entries.iter().any(|e| {
                    mine(e)
                        && e.permission == permission::DENY
                        && matches!(e.operation, operation::WRITE | operation::ALL)
                })
            });
        if wildcard_deny {
            return false;
        }
        let no_topic_acls = !index.literal.keys().any(|(t, _)| *t == resource::TOPIC)
            && index
                .prefixed
                .get(&resource::TOPIC)
                .is_none_or(|m| m.is_empty());
        if authorizer.config.allow_everyone_if_no_acl_found && no_topic_acls {
            return true;
        }
        let grants = |e: &Entry| {
            e.permission == permission::ALLOW
                && matches!(e.operation, operation::WRITE | operation::ALL)
                && e.applies_to(&self.inner.principal, &self.inner.host)
        };
        index
            .literal
            .iter()
            .filter(|((t, _), _)| *t == resource::TOPIC)
            .flat_map(|(_, entries)| entries)
            .chain(
                index
                    .prefixed
                    .get(&resource::TOPIC)
                    .into_iter()
                    .flat_map(|m| m.values().flatten()),
            )
            .any(grants)
    }

    /// May this caller perform `op` on the cluster?
    pub fn allowed_on_cluster(&self, op: i8) -> bool {
        self.allowed(op, resource::CLUSTER, CLUSTER_NAME)
    }

    pub fn allowed_on_topic(&self, op: i8, topic: &str) -> bool {
        self.allowed(op, resource::TOPIC, topic)
    }

    pub fn allowed_on_group(&self, op: i8, group: &str) -> bool {
        self.allowed(op, resource::GROUP, group)
    }

    pub fn allowed_on_transactional_id(&self, op: i8, id: &str) -> bool {
        self.allowed(op, resource::TRANSACTIONAL_ID, id)
    }

    /// Kafka's authorized-operations bit field for a resource (KIP-430): bit `n` set
    /// when operation `n` is allowed, among the operations the resource type supports
    /// (all of them without an authorizer, as Kafka answers). Callers send
    /// `AUTHORIZED_OPERATIONS_OMITTED` instead when the request did not ask.
    pub fn authorized_operations(&self, resource_type: i8, name: &str) -> i32 {
        let candidates: &[i8] = match resource_type {
            resource::TOPIC => &[
                operation::READ,
                operation::WRITE,
                operation::CREATE,
                operation::DELETE,
                operation::ALTER,
                operation::DESCRIBE,
                operation::DESCRIBE_CONFIGS,
                operation::ALTER_CONFIGS,
            ],
            resource::GROUP => &[
                operation::READ,
                operation::DELETE,
                operation::DESCRIBE,
                operation::DESCRIBE_CONFIGS,
                operation::ALTER_CONFIGS,
            ],
            resource::CLUSTER => &[
                operation::CREATE,
                operation::ALTER,
                operation::DESCRIBE,
                operation::CLUSTER_ACTION,
                operation::DESCRIBE_CONFIGS,
                operation::ALTER_CONFIGS,
                operation::IDEMPOTENT_WRITE,
            ],
            _ => &[],
        };
        candidates
            .iter()
            .filter(|&&o| self.allowed_quietly(o, resource_type, name))
            .fold(0, |bits, &o| bits | (1 << o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, pattern: i8, principal: &str, op: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: resource::TOPIC,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    fn authorizer(acls: Vec<AclBinding>, allow_if_none: bool) -> Arc<Authorizer> {
        let a = Arc::new(Authorizer::new(AuthorizerConfig {
            super_users: vec!["User:admin".into()],
            allow_everyone_if_no_acl_found: allow_if_none,
        }));
        a.update(&Arc::new(
            acls.into_iter().map(|b| (Uuid::new_v4(), b)).collect(),
        ));
        a
    }

    fn caller(who: &str, a: &Arc<Authorizer>) -> Caller {
        Caller::new(who, "10.0.0.1".parse().unwrap(), Some(a.clone()))
    }

    #[test]
    fn deny_by_default_and_super_users() {
        let a = authorizer(vec![], false);
        assert!(!caller("User:alice", &a).allowed_on_topic(op::READ, "t"));
        assert!(caller("User:admin", &a).allowed_on_topic(op::READ, "t"));
        let open = authorizer(vec![], true);
        assert!(caller("User:alice", &open).allowed_on_topic(op::READ, "t"));
    }

    #[test]
    fn an_acl_on_the_resource_ends_allow_everyone() {
        let a = authorizer(
            vec![binding(
                "t",
                pattern_type::LITERAL,
                "User:bob",
                op::READ,
                permission::ALLOW,
            )],
            true,
        );
        assert!(!caller("User:alice", &a).allowed_on_topic(op::READ, "t"));
        assert!(caller("User:alice", &a).allowed_on_topic(op::READ, "other"));
        assert!(caller("User:bob", &a).allowed_on_topic(op::READ, "t"));
    }

    #[test]
    fn implications_apply_to_allows_only() {
        let a = authorizer(
            vec![
                binding(
                    "t",
                    pattern_type::LITERAL,
                    "User:alice",
                    op::WRITE,
                    permission::ALLOW,
                ),
                binding(
                    "t",
                    pattern_type::LITERAL,
                    "User:bob",
                    op::ALL,
                    permission::ALLOW,
                ),
                binding(
                    "t",
                    pattern_type::LITERAL,
                    "User:bob",
                    op::READ,
                    permission::DENY,
                ),
            ],
            false,
        );
        let alice = caller("User:alice", &a);
        assert!(alice.allowed_on_topic(op::WRITE, "t"));
        assert!(
            alice.allowed_on_topic(op::DESCRIBE, "t"),
            "WRITE implies DESCRIBE"
        );
        assert!(!alice.allowed_on_topic(op::READ, "t"));
        let bob = caller("User:bob", &a);
        assert!(!bob.allowed_on_topic(op::READ, "t"), "DENY beats ALLOW ALL");
        assert!(
            bob.allowed_on_topic(op::DESCRIBE, "t"),
            "a DENY of READ does not deny DESCRIBE"
        );
        assert_eq!(
            bob.authorized_operations(resource::TOPIC, "t") & (1 << op::READ),
            0
        );
    }

    #[test]
    fn prefixes_wildcards_and_hosts() {
        let mut on_host = binding(
            "*",
            pattern_type::LITERAL,
            "User:*",
            op::DESCRIBE,
            permission::ALLOW,
        );
        on_host.host = "10.0.0.2".into();
        let a = authorizer(
            vec![
                binding(
                    "orders-",
                    pattern_type::PREFIXED,
                    "User:alice",
                    op::READ,
                    permission::ALLOW,
                ),
                binding(
                    "*",
                    pattern_type::LITERAL,
                    "User:*",
                    op::WRITE,
                    permission::ALLOW,
                ),
                on_host,
            ],
            false,
        );
        let alice = caller("User:alice", &a);
        assert!(alice.allowed_on_topic(op::READ, "orders-eu"));
        assert!(!alice.allowed_on_topic(op::READ, "order"));
        assert!(!alice.allowed_on_topic(op::READ, "payments"));
        assert!(
            alice.allowed_on_topic(op::WRITE, "payments"),
            "the wildcard covers every topic"
        );
        assert!(
            !alice.allowed_on_group(op::READ, "orders-eu"),
            "other resource types are apart"
        );
        let carol = Caller::new("User:carol", "10.0.0.2".parse().unwrap(), Some(a.clone()));
        assert!(carol.allowed_on_topic(op::DESCRIBE, "x"));
        assert!(
            carol.allowed_on_topic(op::DESCRIBE, "x")
                && !caller("User:carol", &a).allowed_on_topic(op::READ, "x")
        );
    }

    #[test]
    fn cached_decisions_follow_acl_changes() {
        let a = authorizer(vec![], false);
        let alice = caller("User:alice", &a);
        assert!(!alice.allowed_on_topic(op::WRITE, "t"));
        a.update(&Arc::new(BTreeMap::from([(
            Uuid::new_v4(),
            binding(
                "t",
                pattern_type::LITERAL,
                "User:alice",
                op::WRITE,
                permission::ALLOW,
            ),
        )])));
        assert!(alice.allowed_on_topic(op::WRITE, "t"));
    }

    #[test]
    fn hosts_are_compared_as_java_writes_them() {
        assert_eq!(
            kafka_host_address("::ffff:10.0.0.5".parse().unwrap()),
            "10.0.0.5"
        );
        assert_eq!(
            kafka_host_address("::1".parse().unwrap()),
            "0:0:0:0:0:0:0:1"
        );
        assert_eq!(
            kafka_host_address("fe80::1:2".parse().unwrap()),
            "fe80:0:0:0:0:0:1:2"
        );
        let mut on_host = binding(
            "t",
            pattern_type::LITERAL,
            "User:a",
            op::READ,
            permission::DENY,
        );
        on_host.host = "10.0.0.5".into();
        let mut allow = on_host.clone();
        allow.permission = permission::ALLOW;
        allow.host = "*".into();
        let a = authorizer(vec![on_host, allow], false);
        let mapped = Caller::new(
            "User:a",
            "::ffff:10.0.0.5".parse().unwrap(),
            Some(a.clone()),
        );
        assert!(
            !mapped.allowed_on_topic(op::READ, "t"),
            "the host DENY applies to a mapped address"
        );
    }

    #[test]
    fn idempotent_producers_need_some_topic_write() {
        let a = authorizer(
            vec![binding(
                "p-",
                pattern_type::PREFIXED,
                "User:alice",
                op::WRITE,
                permission::ALLOW,
            )],
            true,
        );
        assert!(caller("User:alice", &a).may_write_some_topic());
        assert!(
            !caller("User:bob", &a).may_write_some_topic(),
            "topic ACLs exist: allow.everyone.if.no.acl.found no longer grants it"
        );
        assert!(caller("User:bob", &authorizer(vec![], true)).may_write_some_topic());
        let denied = authorizer(
            vec![
                binding(
                    "p-",
                    pattern_type::PREFIXED,
                    "User:alice",
                    op::WRITE,
                    permission::ALLOW,
                ),
                binding(
                    "*",
                    pattern_type::LITERAL,
                    "User:alice",
                    op::WRITE,
                    permission::DENY,
                ),
            ],
            false,
        );
        assert!(!caller("User:alice", &denied).may_write_some_topic());
        assert!(caller("User:admin", &denied).is_super_user());
    }

    #[test]
    fn no_authorizer_allows_everything() {
        let c = Caller::new("User:ANONYMOUS", "127.0.0.1".parse().unwrap(), None);
        assert!(c.allowed_on_cluster(op::ALTER));
        assert!(!c.has_authorizer());
    }
}
