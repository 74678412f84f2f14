//! `create-acls`: grant a principal ALLOW ACLs through one raw-protocol CreateAcls
//! request (v3), optionally over SASL PLAIN (SaslHandshake v1, SaslAuthenticate v2),
//! then wait until DescribeAcls (v3, same connection) lists every one of them.
//! `scripts/bench.sh` uses it for the "authorizer on against off" pair: the bench
//! client (User:ANONYMOUS on PLAINTEXT) gets real ACLs, granted by a super user over a
//! SASL_PLAINTEXT listener, because with `allow.everyone.if.no.acl.found=false` nobody
//! else may create the first ones.
//!
//! Why DescribeAcls for the wait: it is quiet. A probe as the granted principal
//! (DescribeCluster's authorized operations, Metadata) is checked like any request and
//! logs a denial while the ACLs are not applied yet, which is what bench.sh looks for
//! to catch incomplete ACLs. DescribeAcls answers from the broker's metadata image, and
//! Ottla's broker hands a metadata change to its authorizer before the image that has
//! it becomes readable (single node and quorum alike), so once DescribeAcls lists the
//! ACLs every check sees them. (A Kafka broker applies them asynchronously; against
//! one, the first requests could still be denied.)
//!
//! Raw protocol, not librdkafka: the rdkafka crate (0.38) wraps no ACL admin call
//! (librdkafka's `rd_kafka_CreateAcls` is reachable only through rdkafka-sys, i.e.
//! unsafe FFI, which the workspace's `unsafe_code = "deny"` forbids), and bench.sh
//! depends on no Python client. The versions are fixed ones both Kafka 4.x and Ottla
//! serve, so no ApiVersions negotiation is needed.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::describe_acls_response::DescribeAclsResource;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::{decode_response, encode_request};
use serde_json::{json, Value};

use crate::common::round;
use crate::startup::{header, read_frame, resolve};

/// Kafka's resource type codes (`org.apache.kafka.common.resource.ResourceType`).
const RESOURCE_TYPES: &[(&str, i8)] = &[
    ("topic", 2),
    ("group", 3),
    ("cluster", 4),
    ("transactional-id", 5),
];
const CLUSTER: i8 = 4;
/// The ANY code of resource types, pattern types, operations and permissions (filters).
const ANY: i8 = 1;
/// The only name a CLUSTER resource has.
const CLUSTER_NAME: &str = "kafka-cluster";
/// Kafka's operation codes (`org.apache.kafka.common.acl.AclOperation`); bit `code` of
/// an authorized-operations field (KIP-430) is the same operation.
const OPERATIONS: &[(&str, i8)] = &[
    ("all", 2),
    ("read", 3),
    ("write", 4),
    ("create", 5),
    ("delete", 6),
    ("alter", 7),
    ("describe", 8),
    ("cluster-action", 9),
    ("describe-configs", 10),
    ("alter-configs", 11),
    ("idempotent-write", 12),
];
const PATTERN_LITERAL: i8 = 3;
const PERMISSION_ALLOW: i8 = 3;

#[derive(clap::Args, Debug)]
pub struct CreateAclsArgs {
    /// host:port of a listener where the sender may create ACLs (a super user, or a
    /// principal with ALTER on the cluster)
    #[arg(long)]
    pub bootstrap: String,
    /// USER:PASSWORD: authenticate with SASL PLAIN first (a SASL_PLAINTEXT listener);
    /// without it the connection is plain (PLAINTEXT)
    #[arg(long, value_name = "USER:PASSWORD")]
    pub sasl_plain: Option<String>,
    /// The principal the ACLs grant to, e.g. User:ANONYMOUS
    #[arg(long)]
    pub principal: String,
    /// The client host the ACLs apply to
    #[arg(long, default_value = "*")]
    pub host: String,
    /// TYPE:NAME:OP[,OP...]: ALLOW, LITERAL pattern. TYPE: topic, group, cluster (NAME
    /// kafka-cluster), transactional-id; OP: all, read, write, create, delete, alter,
    /// describe, cluster-action, describe-configs, alter-configs, idempotent-write.
    /// Repeatable.
    #[arg(long = "acl", value_name = "TYPE:NAME:OPS", required = true)]
    pub acls: Vec<String>,
    /// Give up after this many seconds (connecting, creating, waiting for DescribeAcls
    /// to list them).
    #[arg(long, default_value_t = 30.0)]
    pub timeout_s: f64,
}

/// One ACL to create.
#[derive(Debug, Clone, PartialEq)]
struct Grant {
    resource_type: i8,
    name: String,
    operation: i8,
}

fn lookup(table: &[(&str, i8)], what: &str, word: &str) -> Result<i8> {
    let wanted = word.trim().to_ascii_lowercase().replace('_', "-");
    table
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, code)| *code)
        .ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            anyhow!("unknown {what} {word:?} (known: {})", known.join(", "))
        })
}

/// `TYPE:NAME:OP[,OP...]`: the name may contain colons (group ids can), the type and
/// the operations cannot.
fn parse_acl(spec: &str) -> Result<Vec<Grant>> {
    let (kind, rest) = spec
        .split_once(':')
        .with_context(|| format!("--acl {spec:?}: expected TYPE:NAME:OP[,OP...]"))?;
    let (name, ops) = rest
        .rsplit_once(':')
        .with_context(|| format!("--acl {spec:?}: expected TYPE:NAME:OP[,OP...]"))?;
    let resource_type = lookup(RESOURCE_TYPES, "resource type", kind)?;
    if name.is_empty() {
        bail!("--acl {spec:?}: empty resource name");
    }
    if resource_type == CLUSTER && name != CLUSTER_NAME {
        bail!("--acl {spec:?}: the cluster resource is named {CLUSTER_NAME}");
    }
    ops.split(',')
        .map(|op| {
            Ok(Grant {
                resource_type,
                name: name.to_string(),
                operation: lookup(OPERATIONS, "operation", op)?,
            })
        })
        .collect()
}

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error {code}"),
    }
}

/// A blocking connection sending one request at a time.
struct Conn {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl Conn {
    fn connect(addr: &str, timeout: Duration) -> Result<Conn> {
        let socket = resolve(addr)?;
        let stream = TcpStream::connect_timeout(&socket, timeout)
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            next_correlation_id: 1,
        })
    }

    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp> {
        let id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let frame = encode_request(&header(key, version, id), key, body)
            .map_err(|e| anyhow!("encoding {key:?} v{version}: {e}"))?;
        self.stream.write_all(&frame)?;
        let response = read_frame(&mut self.stream)
            .with_context(|| format!("reading the {key:?} v{version} response"))?;
        let (got, body) = decode_response(key, version, response)
            .map_err(|e| anyhow!("decoding the {key:?} v{version} response: {e}"))?;
        if got != id {
            bail!("{key:?} answered with correlation id {got}, sent {id}");
        }
        Ok(body)
    }

    /// SASL PLAIN (RFC 4616): SaslHandshake v1, then the token in SaslAuthenticate v2.
    fn sasl_plain(&mut self, credentials: &str) -> Result<()> {
        let (user, password) = credentials
            .split_once(':')
            .context("--sasl-plain expects USER:PASSWORD")?;
        let handshake: SaslHandshakeResponse = self.call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        )?;
        if handshake.error_code != 0 {
            let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
            bail!(
                "SaslHandshake PLAIN: {} (the listener offers {offered:?})",
                error_name(handshake.error_code)
            );
        }
        let token = format!("\0{user}\0{password}");
        let auth: SaslAuthenticateResponse = self.call(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes())),
        )?;
        if auth.error_code != 0 {
            bail!(
                "SaslAuthenticate as {user}: {}: {}",
                error_name(auth.error_code),
                auth.error_message.as_deref().unwrap_or("")
            );
        }
        Ok(())
    }
}

/// Whether `listed` (a DescribeAcls answer) holds the ALLOW of `grant` for
/// `principal` on `host`, LITERAL.
fn listed(listed: &[DescribeAclsResource], grant: &Grant, principal: &str, host: &str) -> bool {
    listed.iter().any(|r| {
        r.resource_type == grant.resource_type
            && r.resource_name.as_str() == grant.name
            && r.pattern_type == PATTERN_LITERAL
            && r.acls.iter().any(|a| {
                a.principal.as_str() == principal
                    && a.host.as_str() == host
                    && a.operation == grant.operation
                    && a.permission_type == PERMISSION_ALLOW
            })
    })
}

pub fn run(args: CreateAclsArgs) -> Result<Value> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.timeout_s);
    let io_timeout = Duration::from_secs_f64(args.timeout_s.clamp(1.0, 30.0));
    let mut grants = Vec::new();
    for spec in &args.acls {
        grants.extend(parse_acl(spec)?);
    }

    let mut conn = Conn::connect(&args.bootstrap, io_timeout)?;
    if let Some(credentials) = &args.sasl_plain {
        conn.sasl_plain(credentials)?;
    }
    let creations: Vec<AclCreation> = grants
        .iter()
        .map(|g| {
            AclCreation::default()
                .with_resource_type(g.resource_type)
                .with_resource_name(StrBytes::from_string(g.name.clone()))
                .with_resource_pattern_type(PATTERN_LITERAL)
                .with_principal(StrBytes::from_string(args.principal.clone()))
                .with_host(StrBytes::from_string(args.host.clone()))
                .with_operation(g.operation)
                .with_permission_type(PERMISSION_ALLOW)
        })
        .collect();
    let created: CreateAclsResponse = conn.call(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(creations),
    )?;
    if created.results.len() != grants.len() {
        bail!(
            "CreateAcls answered {} results for {} ACLs",
            created.results.len(),
            grants.len()
        );
    }
    for (grant, result) in grants.iter().zip(&created.results) {
        if result.error_code != 0 {
            bail!(
                "CreateAcls {grant:?} for {}: {}: {}",
                args.principal,
                error_name(result.error_code),
                result.error_message.as_deref().unwrap_or("")
            );
        }
    }
    let created_ms = start.elapsed().as_secs_f64() * 1000.0;

    // Every ACL of the principal, then look for ours.
    let filter = DescribeAclsRequest::default()
        .with_resource_type_filter(ANY)
        // The message's defaults are empty strings, which match nothing: null is "any".
        .with_resource_name_filter(None)
        .with_pattern_type_filter(ANY)
        .with_principal_filter(Some(StrBytes::from_string(args.principal.clone())))
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY);
    loop {
        let described: DescribeAclsResponse = conn.call(ApiKey::DescribeAcls, 3, &filter)?;
        let missing = if described.error_code != 0 {
            format!(
                "DescribeAcls: {}: {}",
                error_name(described.error_code),
                described.error_message.as_deref().unwrap_or("")
            )
        } else {
            match grants
                .iter()
                .find(|g| !listed(&described.resources, g, &args.principal, &args.host))
            {
                None => break,
                Some(g) => format!(
                    "{g:?} not among the {} resource(s) DescribeAcls lists: {:?}",
                    described.resources.len(),
                    described
                        .resources
                        .iter()
                        .map(|r| (r.resource_type, r.resource_name.as_str(), r.acls.len()))
                        .collect::<Vec<_>>()
                ),
            }
        };
        if Instant::now() > deadline {
            bail!(
                "CreateAcls succeeded but after {:.0}s: {missing}",
                args.timeout_s
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed_ms = start.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "[create-acls] {} ACL(s) for {} created in {created_ms:.0} ms, listed by DescribeAcls after {listed_ms:.0} ms",
        grants.len(),
        args.principal,
    );
    Ok(json!({
        "mode": "create-acls",
        "principal": args.principal,
        "acls": grants.len(),
        "created_ms": round(created_ms, 1),
        "listed_ms": round(listed_ms, 1),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_names_and_operations() {
        let grants = parse_acl("topic:bench-1k-8p:write,describe,CREATE").unwrap();
        assert_eq!(
            grants.iter().map(|g| g.operation).collect::<Vec<_>>(),
            [4, 8, 5]
        );
        assert!(grants
            .iter()
            .all(|g| g.resource_type == 2 && g.name == "bench-1k-8p"));
        let group = parse_acl("group:a:b:read").unwrap();
        assert_eq!((group[0].resource_type, group[0].name.as_str()), (3, "a:b"));
        assert_eq!(
            parse_acl("transactional_id:t:idempotent_write").unwrap()[0].operation,
            12
        );
        assert!(parse_acl("cluster:kafka-cluster:create").is_ok());
    }

    #[test]
    fn refuses_what_kafka_would() {
        assert!(parse_acl("cluster:other:create").is_err());
        assert!(parse_acl("topic::write").is_err());
        assert!(parse_acl("topic:t:fly").is_err());
        assert!(parse_acl("queue:t:write").is_err());
        assert!(parse_acl("topic-write").is_err());
    }
}
