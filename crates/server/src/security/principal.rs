//! `ssl.principal.mapping.rules`: Kafka's `SslPrincipalMapper`, which turns a client
//! certificate's distinguished name into the name in its `User:` principal.
//!
//! Rules are `DEFAULT` (the whole distinguished name) or
//! `RULE:pattern/replacement/[L|U]`, separated by commas; the first rule whose pattern
//! matches the whole name applies (`$1`-style references in the replacement, `L`/`U`
//! to lower- or upper-case the result). A name no rule matches is refused.

use regex::Regex;

#[derive(Debug)]
enum Rule {
    Default,
    Replace {
        pattern: Regex,
        replacement: String,
        case: Option<Case>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Case {
    Lower,
    Upper,
}

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl PrincipalMapper {
    pub fn parse(text: &str) -> Result<PrincipalMapper, String> {
        let mut rules = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after).ok_or_else(|| {
                    format!("Invalid rule: {rest} (expected RULE:pattern/replacement/[LU])")
                })?;
                let (replacement, after) = until_slash(after).ok_or_else(|| {
                    format!("Invalid rule: {rest} (expected RULE:pattern/replacement/[LU])")
                })?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Some(Case::Lower), &after[1..]),
                    Some('U') => (Some(Case::Upper), &after[1..]),
                    _ => (None, after),
                };
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("Invalid rule pattern {pattern}: {e}"))?;
                rules.push(Rule::Replace {
                    pattern,
                    replacement,
                    case,
                });
                rest = after;
            } else {
                let end = rest.find(',').unwrap_or(rest.len());
                return Err(format!("Invalid rule: {}", &rest[..end]));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(format!("Invalid rule: {rest}")),
            }
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(PrincipalMapper { rules })
    }

    /// The short name for `distinguished_name`, or None when no rule applies (Kafka
    /// refuses such a client).
    pub fn name(&self, distinguished_name: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            Rule::Default => Some(distinguished_name.to_string()),
            Rule::Replace {
                pattern,
                replacement,
                case,
            } => {
                let captures = pattern.captures(distinguished_name)?;
                let mut name = String::new();
                captures.expand(replacement, &mut name);
                Some(match case {
                    Some(Case::Lower) => name.to_lowercase(),
                    Some(Case::Upper) => name.to_uppercase(),
                    None => name,
                })
            }
        })
    }
}

/// Text up to an unescaped '/', unescaping `\/`, and what follows the slash.
fn until_slash(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, '/')) => out.push('/'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '/' => return Some((out, &text[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of Kafka's documentation and `SslPrincipalMapperTest`.
    #[test]
    fn kafka_rules_map_distinguished_names() {
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/, RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            m.name("CN=kafka-server1,OU=ServiceUsers,O=Org,L=City,ST=State,C=US")
                .as_deref(),
            Some("kafka-server1")
        );
        assert_eq!(
            m.name("CN=Duke,OU=JavaSoft,O=Sun Microsystems,L=Santa Clara,ST=CA,C=US")
                .as_deref(),
            Some("duke@javasoft")
        );
        assert_eq!(m.name("cn=duke,o=acme").as_deref(), Some("DUKE"));
        assert_eq!(
            m.name("OU=only").as_deref(),
            Some("OU=only"),
            "DEFAULT last"
        );
        let strict = PrincipalMapper::parse("RULE:^CN=(.*?),O=acme$/$1/").unwrap();
        assert_eq!(strict.name("CN=a,O=other"), None, "no rule applies");
        assert_eq!(
            PrincipalMapper::parse("DEFAULT")
                .unwrap()
                .name("CN=x")
                .as_deref(),
            Some("CN=x")
        );
        assert!(PrincipalMapper::parse("RULE:^CN=(.*)$").is_err());
        assert!(PrincipalMapper::parse("NONSENSE").is_err());
    }
}
