//! Config keys from environment variables (`ottla serve --config-env-prefix OTTLA_`),
//! the way Apache Kafka's image takes `KAFKA_*` ones (its `KafkaDockerWrapper`, and
//! Confluent's `env_to_props` before it): the name after the prefix, lower-cased, with
//! `_` read as `.`, `__` as `_` and `___` as `-`:
//!
//! | variable                                                          | key                                                     |
//! |-------------------------------------------------------------------|---------------------------------------------------------|
//! | `OTTLA_LOG_RETENTION_HOURS`                                       | `log.retention.hours`                                   |
//! | `OTTLA_LISTENER_NAME_SASL__SSL_SSL_KEY_PASSWORD`                  | `listener.name.sasl_ssl.ssl.key.password`               |
//! | `OTTLA_LISTENER_NAME_SASL__SSL_SCRAM___SHA___256_SASL_JAAS_CONFIG` | `listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config` |
//!
//! Not config, so never mapped whatever the prefix: `OTTLA_BIN` (the binary the tests
//! run), `OTTLA_CONFIG_FILE` (the old image entrypoint's properties file) and
//! `OTTLA_FAULT_*` (fault injection). [`layer`] merges the sources of `ottla serve`.

use std::collections::BTreeMap;
use std::ffi::OsString;

use anyhow::Context;

/// Variables that are never config keys, whatever `--config-env-prefix` is.
const NOT_CONFIG: &[&str] = &["OTTLA_BIN", "OTTLA_CONFIG_FILE"];
/// Prefixes of variables that are never config keys.
const NOT_CONFIG_PREFIXES: &[&str] = &["OTTLA_FAULT_"];

/// One config key an environment variable sets. `Debug` leaves the value out: it may
/// be a password.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvSetting {
    /// The variable, e.g. `OTTLA_LOG_RETENTION_HOURS`.
    pub variable: String,
    /// The config key it names, e.g. `log.retention.hours`.
    pub key: String,
    pub value: String,
}

impl std::fmt::Debug for EnvSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvSetting")
            .field("variable", &self.variable)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The config key a variable's name after the prefix stands for: ASCII lower case,
/// then `_` → `.`, `...` → `-`, `..` → `_` (Kafka's order of replacements).
pub fn config_key(name: &str) -> String {
    name.to_ascii_lowercase()
        .replace('_', ".")
        .replace("...", "-")
        .replace("..", "_")
}

/// The config keys this process's environment sets (see [`settings_from`]).
pub fn settings(prefix: &str) -> anyhow::Result<Vec<EnvSetting>> {
    settings_from(prefix, std::env::vars_os())
}

/// The config keys the variables named `<prefix><NAME>` set, ordered by variable name
/// (so that of two variables naming one key, e.g. `OTTLA_LOG_DIRS` and
/// `OTTLA_log_dirs`, the same one wins every time). A prefixed variable whose name or
/// value is not UTF-8 is an error (its value is not shown).
pub fn settings_from<I>(prefix: &str, vars: I) -> anyhow::Result<Vec<EnvSetting>>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    anyhow::ensure!(
        !prefix.is_empty(),
        "--config-env-prefix must not be empty (every variable would be a config key)"
    );
    let mut out = Vec::new();
    for (name, value) in vars {
        if !name.as_encoded_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        let variable = name.into_string().map_err(|name| {
            anyhow::anyhow!(
                "environment variable {} is not valid UTF-8",
                name.to_string_lossy()
            )
        })?;
        let rest = &variable[prefix.len()..];
        if rest.is_empty()
            || NOT_CONFIG.contains(&variable.as_str())
            || NOT_CONFIG_PREFIXES.iter().any(|p| variable.starts_with(p))
        {
            continue;
        }
        let value = value
            .into_string()
            .map_err(|_| anyhow::anyhow!("the value of {variable} is not valid UTF-8"))?;
        out.push(EnvSetting {
            key: config_key(rest),
            variable,
            value,
        });
    }
    out.sort_by(|a, b| a.variable.cmp(&b.variable));
    Ok(out)
}

/// A `--default` or `--override` argument, `KEY=VALUE` (the key trimmed).
pub fn parse_assignment(flag: &str, arg: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = arg
        .split_once('=')
        .with_context(|| format!("{flag} {arg}: expected KEY=VALUE"))?;
    Ok((key.trim().to_string(), value.to_string()))
}

/// The config values of `ottla serve`, lowest precedence first: the properties
/// file's, `--default`s (an image's own settings), the environment's, `--override`s.
/// Within one source a later value of a key wins.
pub fn layer(
    file: BTreeMap<String, String>,
    defaults: &[String],
    env: &[EnvSetting],
    overrides: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = file;
    for d in defaults {
        let (key, value) = parse_assignment("--default", d)?;
        values.insert(key, value);
    }
    for s in env {
        values.insert(s.key.clone(), s.value.clone());
    }
    for o in overrides {
        let (key, value) = parse_assignment("--override", o)?;
        values.insert(key, value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn keys(settings: &[EnvSetting]) -> Vec<(&str, &str)> {
        settings
            .iter()
            .map(|s| (s.key.as_str(), s.value.as_str()))
            .collect()
    }

    #[test]
    fn names_map_to_keys_as_in_apache_kafkas_image() {
        // Variables of Apache Kafka's image documentation and Kafka keys with
        // underscores and dashes in them, with the KAFKA_ prefix swapped.
        let table = [
            ("LOG_RETENTION_HOURS", "log.retention.hours"),
            ("NODE_ID", "node.id"),
            ("PROCESS_ROLES", "process.roles"),
            ("ADVERTISED_LISTENERS", "advertised.listeners"),
            (
                "LISTENER_SECURITY_PROTOCOL_MAP",
                "listener.security.protocol.map",
            ),
            ("CONTROLLER_QUORUM_VOTERS", "controller.quorum.voters"),
            (
                "OFFSETS_TOPIC_REPLICATION_FACTOR",
                "offsets.topic.replication.factor",
            ),
            ("METRICS_LISTENER", "metrics.listener"),
            ("OTTLA_LOG_FORMAT", "ottla.log.format"),
            (
                "LISTENER_NAME_SASL__SSL_SCRAM___SHA___256_SASL_JAAS_CONFIG",
                "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config",
            ),
            ("SOME__KEY", "some_key"),
            ("A___B_C", "a-b.c"),
            // Runs longer than three: the shell entrypoint's reading ("___" then "__"
            // then "_", left to right) and Kafka's agree.
            ("A____B", "a-.b"),
            ("A_____B", "a-_b"),
            ("A______B", "a--b"),
            // Lower case in the name is taken as it is.
            ("log_Dirs", "log.dirs"),
        ];
        for (name, key) in table {
            assert_eq!(config_key(name), key, "{name}");
        }
    }

    #[test]
    fn prefixed_variables_are_mapped_in_name_order() {
        let env = vars(&[
            ("PATH", "/usr/bin"),
            ("OTTLA_LOG_RETENTION_HOURS", "24"),
            ("KAFKA_LOG_RETENTION_HOURS", "1"),
            ("OTTLA_A___B_C", "dash"),
            ("OTTLA_log_dirs", "/lower"),
            ("OTTLA_LOG_DIRS", "/upper"),
            ("OTTLA_", "no name"),
            ("XOTTLA_NODE_ID", "2"),
            ("OTTLA_EMPTY", ""),
        ]);
        let s = settings_from("OTTLA_", env).unwrap();
        assert_eq!(
            keys(&s),
            [
                ("a-b.c", "dash"),
                ("empty", ""),
                ("log.dirs", "/upper"),
                ("log.retention.hours", "24"),
                // Byte order: lower case after upper case, so it wins in `layer`.
                ("log.dirs", "/lower"),
            ]
        );
        assert_eq!(s[0].variable, "OTTLA_A___B_C");
        let kafka = settings_from("KAFKA_", vars(&[("KAFKA_LOG_RETENTION_HOURS", "1")]));
        assert_eq!(keys(&kafka.unwrap()), [("log.retention.hours", "1")]);
    }

    #[test]
    fn ottlas_own_variables_are_not_config() {
        let env = vars(&[
            ("OTTLA_BIN", "/usr/local/bin/ottla"),
            ("OTTLA_CONFIG_FILE", "/etc/ottla/custom.properties"),
            ("OTTLA_FAULT_CRASH_AFTER_CLEANER_SWAP", "1"),
            ("OTTLA_FAULT_CRASH_BEFORE_TXN_MARKERS", "1"),
            // Only those names: these are config keys.
            ("OTTLA_BINARY", "x"),
            ("OTTLA_FAULTY", "y"),
            ("OTTLA_CONFIG_FILES", "z"),
        ]);
        let s = settings_from("OTTLA_", env).unwrap();
        assert_eq!(
            keys(&s),
            [("binary", "x"), ("config.files", "z"), ("faulty", "y")]
        );
        // With another prefix they are not mapped either (they do not carry it).
        let s = settings_from("OTTLA", vars(&[("OTTLA_BIN", "b"), ("OTTLAX", "1")]));
        assert_eq!(keys(&s.unwrap()), [("x", "1")]);
    }

    #[test]
    fn an_empty_prefix_and_non_utf8_are_refused_without_the_value() {
        assert!(settings_from("", vars(&[("PATH", "/bin")])).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let bad = OsString::from_vec(b"hunter\xff2".to_vec());
            let e = settings_from("OTTLA_", [(OsString::from("OTTLA_SASL_PASSWORD"), bad)])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("OTTLA_SASL_PASSWORD") && !e.contains("hunter"),
                "{e}"
            );
            let name = OsString::from_vec(b"OTTLA_\xffX".to_vec());
            assert!(settings_from("OTTLA_", [(name, OsString::from("1"))]).is_err());
            // Unprefixed variables are not looked at, whatever they hold.
            let other = OsString::from_vec(b"\xff".to_vec());
            assert!(settings_from("OTTLA_", [(other.clone(), other)])
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn debug_output_leaves_the_value_out() {
        let s = settings_from("OTTLA_", vars(&[("OTTLA_SSL_KEY_PASSWORD", "hunter2")]));
        let text = format!("{:?}", s.unwrap());
        assert!(
            text.contains("ssl.key.password") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn file_then_defaults_then_environment_then_overrides() {
        let file: BTreeMap<String, String> = [
            ("a", "file"),
            ("b", "file"),
            ("c", "file"),
            ("d", "file"),
            ("only.file", "file"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let defaults = [
            "b=default",
            "c=default",
            "d=default",
            "only.default=default",
        ]
        .map(String::from);
        let env = settings_from(
            "OTTLA_",
            vars(&[
                ("OTTLA_C", "env"),
                ("OTTLA_D", "env"),
                ("OTTLA_ONLY_ENV", "env"),
            ]),
        )
        .unwrap();
        let overrides = ["d=override", " only.override = x=y"].map(String::from);
        let values = layer(file, &defaults, &env, &overrides).unwrap();
        let got: Vec<(&str, &str)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "file"),
                ("b", "default"),
                ("c", "env"),
                ("d", "override"),
                ("only.default", "default"),
                ("only.env", "env"),
                ("only.file", "file"),
                // The key trimmed, the value kept as given after the first '='.
                ("only.override", " x=y"),
            ]
        );
    }

    #[test]
    fn a_later_value_within_a_source_wins_and_malformed_flags_are_named() {
        let defaults = ["k=1", "k=2"].map(String::from);
        let values = layer(BTreeMap::new(), &defaults, &[], &[]).unwrap();
        assert_eq!(values["k"], "2");
        let e = layer(BTreeMap::new(), &["novalue".into()], &[], &[]).unwrap_err();
        assert_eq!(e.to_string(), "--default novalue: expected KEY=VALUE");
        let e = layer(BTreeMap::new(), &[], &[], &["x".into()]).unwrap_err();
        assert_eq!(e.to_string(), "--override x: expected KEY=VALUE");
    }
}
