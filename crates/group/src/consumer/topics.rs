//! What a consumer group coordinator knows about topics: a snapshot of the cluster's
//! topics (names, ids, partition counts) taken from the broker's metadata image, and
//! subscriptions resolved against it — topic names, and regular expressions in RE2
//! syntax (Kafka uses RE2/J; Rust's `regex` crate has the same syntax and the same
//! linear-time guarantee), compiled with a bounded size.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regex::{Regex, RegexBuilder};
use uuid::Uuid;

use crate::assignor::SubscribedTopics;

/// Upper bound on a compiled subscription regex (bytes of compiled program). A
/// pathological pattern is refused with INVALID_REGULAR_EXPRESSION instead of using
/// unbounded memory; matching time is linear in the topic name either way.
pub const MAX_REGEX_COMPILED_BYTES: usize = 1 << 20;
/// Longest subscription regex accepted, in bytes.
pub const MAX_REGEX_LEN: usize = 4096;

/// Which topics a member's principal may DESCRIBE. The topics a subscription regex
/// resolves to are filtered by it, as Kafka's `refreshRegularExpressions` filters them
/// with the authorizer and the context of the member whose heartbeat (or classic
/// JoinGroup) triggered the resolution; a topic left out is silently not subscribed.
/// The default allows every topic (no authorizer).
#[derive(Clone, Default)]
pub struct TopicAccess(Option<std::sync::Arc<TopicAllowed>>);

/// The authorizer's answer for one topic name.
type TopicAllowed = dyn Fn(&str) -> bool + Send + Sync;

impl TopicAccess {
    /// Access decided by `allowed` (the authorizer, for the request's principal).
    pub fn new(allowed: impl Fn(&str) -> bool + Send + Sync + 'static) -> TopicAccess {
        TopicAccess(Some(std::sync::Arc::new(allowed)))
    }

    pub fn allows(&self, topic: &str) -> bool {
        self.0.as_ref().is_none_or(|allowed| allowed(topic))
    }
}

impl std::fmt::Debug for TopicAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "TopicAccess(authorizer)"
        } else {
            "TopicAccess(all)"
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: Uuid,
    pub partitions: u32,
}

/// The topics of the cluster at one metadata version. Internal topics are left out by
/// whoever builds it (Kafka never matches them with a regex either).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicsImage {
    by_name: BTreeMap<String, TopicInfo>,
    names: HashMap<Uuid, String>,
    /// The metadata version this snapshot was taken at: regexes resolved at an older
    /// version are resolved again.
    version: i64,
}

impl TopicsImage {
    pub fn new(topics: impl IntoIterator<Item = (String, Uuid, u32)>) -> TopicsImage {
        let mut image = TopicsImage::default();
        for (name, id, partitions) in topics {
            image.names.insert(id, name.clone());
            image.by_name.insert(name, TopicInfo { id, partitions });
        }
        image
    }

    /// The same topics, as of metadata `version`.
    pub fn at_version(mut self, version: i64) -> TopicsImage {
        self.version = version;
        self
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.by_name.get(name).copied()
    }

    pub fn name(&self, id: Uuid) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// Topic names matching `regex` (whole-name match, as Kafka's `Pattern.matcher(..).matches()`).
    pub fn matching(&self, regex: &Regex) -> BTreeSet<String> {
        self.by_name
            .keys()
            .filter(|name| regex.is_match(name))
            .cloned()
            .collect()
    }

    /// Kafka's metadata hash (KIP-1101), computed over the subscribed topics that exist:
    /// any change of id or partition count gives a different value, so the group epoch
    /// moves and a new target assignment is computed. 0 when none exists.
    pub fn metadata_hash(&self, subscribed: &BTreeSet<String>) -> i64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut any = false;
        for name in subscribed {
            let Some(info) = self.topic(name) else {
                continue;
            };
            any = true;
            for byte in name
                .as_bytes()
                .iter()
                .chain(&[0u8])
                .chain(info.id.as_bytes())
                .chain(&info.partitions.to_be_bytes())
            {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        if any {
            hash as i64
        } else {
            0
        }
    }
}

impl SubscribedTopics for TopicsImage {
    fn num_partitions(&self, topic_id: Uuid) -> Option<u32> {
        let name = self.names.get(&topic_id)?;
        self.by_name.get(name).map(|t| t.partitions)
    }
}

/// RE2's largest repetition count (`{n,m}` with n or m above it is invalid).
const MAX_REPEAT: u32 = 1000;

/// Compiles a subscription regex as Kafka validates it (`Pattern.compile` of RE2/J),
/// anchored to the whole topic name. The error text is the client's message.
///
/// Rust's `regex` crate has RE2's syntax with three differences this closes: RE2 refuses
/// a repetition of a repetition (`a**`, `a{2}{3}`: "invalid nested repetition
/// operator") and counts above 1000 ("invalid repeat count"), and it knows `\Q...\E`
/// literal quoting, which is rewritten into escaped text here.
pub fn compile_subscription_regex(regex: &str) -> Result<Regex, String> {
    if regex.len() > MAX_REGEX_LEN {
        return Err(format!(
            "SubscribedTopicRegex is longer than {MAX_REGEX_LEN} bytes."
        ));
    }
    let invalid = |detail: &str| {
        format!("SubscribedTopicRegex `{regex}` is not a valid regular expression: {detail}.")
    };
    let pattern = unquote(regex);
    let ast = regex_syntax::ast::parse::ParserBuilder::new()
        .nest_limit(100)
        .build()
        .parse(&pattern)
        .map_err(|e| invalid(&e.kind().to_string()))?;
    check_re2_repetitions(&ast).map_err(|e| invalid(&e))?;
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(MAX_REGEX_COMPILED_BYTES)
        .dfa_size_limit(MAX_REGEX_COMPILED_BYTES)
        .build()
        .map_err(|e| {
            let detail = e.to_string();
            let detail = detail
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .to_string();
            format!("SubscribedTopicRegex `{regex}` is not a valid regular expression: {detail}.")
        })
}

/// `\Q...\E` (up to the end when `\E` is missing) as escaped literal text.
fn unquote(regex: &str) -> String {
    let mut out = String::with_capacity(regex.len());
    let mut rest = regex;
    while let Some(start) = find_unescaped(rest, "\\Q") {
        out.push_str(&rest[..start]);
        let quoted = &rest[start + 2..];
        let (literal, after) = match quoted.find("\\E") {
            Some(end) => (&quoted[..end], &quoted[end + 2..]),
            None => (quoted, ""),
        };
        out.push_str(&regex::escape(literal));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The first `needle` (a backslash sequence) not itself escaped by a backslash.
fn find_unescaped(s: &str, needle: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if s[i..].starts_with(needle) {
                return Some(i);
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

fn check_re2_repetitions(ast: &regex_syntax::ast::Ast) -> Result<(), String> {
    use regex_syntax::ast::{Ast, RepetitionKind, RepetitionRange};
    match ast {
        Ast::Repetition(rep) => {
            if matches!(*rep.ast, Ast::Repetition(_)) {
                return Err("invalid nested repetition operator".into());
            }
            if let RepetitionKind::Range(range) = &rep.op.kind {
                let too_big = match range {
                    RepetitionRange::Exactly(n) | RepetitionRange::AtLeast(n) => *n > MAX_REPEAT,
                    RepetitionRange::Bounded(n, m) => *n > MAX_REPEAT || *m > MAX_REPEAT,
                };
                if too_big {
                    return Err("invalid repeat count".into());
                }
            }
            check_re2_repetitions(&rep.ast)
        }
        Ast::Group(g) => check_re2_repetitions(&g.ast),
        Ast::Alternation(a) => a.asts.iter().try_for_each(check_re2_repetitions),
        Ast::Concat(c) => c.asts.iter().try_for_each(check_re2_repetitions),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> TopicsImage {
        TopicsImage::new([
            ("orders".to_string(), Uuid::from_u64_pair(1, 1), 3),
            ("orders-eu".to_string(), Uuid::from_u64_pair(1, 2), 6),
            ("payments".to_string(), Uuid::from_u64_pair(1, 3), 1),
        ])
    }

    #[test]
    fn regex_matches_whole_names() {
        let image = image();
        let re = compile_subscription_regex("orders.*").unwrap();
        assert_eq!(
            image.matching(&re),
            ["orders", "orders-eu"].map(String::from).into()
        );
        let re = compile_subscription_regex("order").unwrap();
        assert!(image.matching(&re).is_empty());
        let re = compile_subscription_regex("orders|payments").unwrap();
        assert_eq!(image.matching(&re).len(), 2);
    }

    #[test]
    fn invalid_and_huge_regexes_are_refused() {
        let err = compile_subscription_regex("(unclosed").unwrap_err();
        assert!(
            err.starts_with("SubscribedTopicRegex `(unclosed` is not a valid regular expression"),
            "{err}"
        );
        // Nested counted repetition blows up the compiled program: refused, not built.
        assert!(compile_subscription_regex("((a{100}){100}){100}").is_err());
        assert!(compile_subscription_regex(&"a".repeat(MAX_REGEX_LEN + 1)).is_err());
    }

    #[test]
    fn re2_rules_apply() {
        for bad in [
            "a**",
            "a++",
            "a{2}{3}",
            "a{1001}",
            "a{2,1001}",
            "x{2,1}",
            "[z-a]",
        ] {
            assert!(compile_subscription_regex(bad).is_err(), "{bad}");
        }
        for good in ["(a*)*", "a{1000}", "a*?", "t-[0-9]+"] {
            assert!(compile_subscription_regex(good).is_ok(), "{good}");
        }
        let re = compile_subscription_regex("\\Qkip848.a\\E.*").unwrap();
        assert!(re.is_match("kip848.a-1"));
        assert!(!re.is_match("kip848xa-1"), "\\Q...\\E quotes the dot");
        let re = compile_subscription_regex("x\\Q+").unwrap();
        assert!(re.is_match("x+"));
    }

    #[test]
    fn metadata_hash_follows_ids_and_partition_counts() {
        let subscribed: BTreeSet<String> = ["orders".to_string(), "missing".to_string()].into();
        let a = image();
        let h = a.metadata_hash(&subscribed);
        assert_ne!(h, 0);
        assert_eq!(h, image().metadata_hash(&subscribed));
        let more_partitions =
            TopicsImage::new([("orders".to_string(), Uuid::from_u64_pair(1, 1), 4)]);
        assert_ne!(more_partitions.metadata_hash(&subscribed), h);
        let recreated = TopicsImage::new([("orders".to_string(), Uuid::from_u64_pair(9, 9), 3)]);
        assert_ne!(recreated.metadata_hash(&subscribed), h);
        assert_eq!(TopicsImage::default().metadata_hash(&subscribed), 0);
    }
}
