//! `ottla format` and `ottla random-uuid`: Kafka's `kafka-storage format` and
//! `kafka-storage random-uuid`, with the same flags, so a script written for Kafka's
//! tools needs only the binary's name changed.
//!
//! Formatting writes `meta.properties` (node id, cluster id, a directory id) into every
//! log directory. A node of a controller quorum refuses to start on a directory that was
//! not formatted, or that belongs to another cluster or node; the first change the
//! quorum commits records the formatted cluster id. A single embedded node
//! (no `controller.quorum.voters`) needs no format step and formats itself.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ottla_protocol::kafka_uuid::{decode_topic_id, encode_topic_id};

use crate::broker::META_PROPERTIES;
use crate::config::properties;

/// `kafka-storage format`'s options (the `ottla format` command line).
#[derive(Debug, Default, clap::Args)]
pub struct FormatOptions {
    /// The cluster id (`ottla random-uuid` makes one).
    #[arg(
        short = 't',
        long = "cluster-id",
        value_name = "ID",
        allow_hyphen_values = true
    )]
    pub cluster_id: String,
    /// The node's server.properties.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set a config key, overriding the file.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Skip directories that are already formatted instead of failing.
    #[arg(short = 'g', long)]
    pub ignore_formatted: bool,
    /// Accepted for Kafka's scripts; the quorum comes from controller.quorum.voters.
    #[arg(short = 's', long)]
    pub standalone: bool,
    /// Accepted for Kafka's scripts; the quorum comes from controller.quorum.voters.
    #[arg(short = 'I', long, value_name = "VOTERS")]
    pub initial_controllers: Option<String>,
    /// Accepted for Kafka's scripts; the quorum comes from controller.quorum.voters.
    #[arg(short = 'N', long)]
    pub no_initial_controllers: bool,
    /// Accepted for Kafka's scripts.
    #[arg(short = 'r', long, value_name = "VERSION")]
    pub release_version: Option<String>,
    /// Accepted for Kafka's scripts.
    #[arg(short = 'f', long = "feature", value_name = "FEATURE=LEVEL")]
    pub features: Vec<String>,
}

/// A new cluster id, as `kafka-storage random-uuid` prints it: like Kafka's
/// `Uuid.randomUuid`, never one starting with '-', which command lines would take for
/// an option.
pub fn random_uuid() -> String {
    loop {
        let id = encode_topic_id(uuid::Uuid::new_v4());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// Format every log directory of the configured node.
pub fn format(options: FormatOptions) -> anyhow::Result<()> {
    let config = crate::load_config(options.config.clone(), options.overrides.clone())?;
    if decode_topic_id(&options.cluster_id).is_none() {
        anyhow::bail!(
            "Cluster ID string {} does not appear to be a valid UUID: expected the 22 characters of a base64-encoded UUID (see `ottla random-uuid`)",
            options.cluster_id
        );
    }
    if options.standalone || options.initial_controllers.is_some() || options.no_initial_controllers
    {
        // Kafka's dynamic quorum (KIP-853) is not built: the voters come from
        // controller.quorum.voters, as with Kafka's static quorums.
        println!(
            "Ignoring --standalone/--initial-controllers/--no-initial-controllers: Ottla's quorum is static (controller.quorum.voters)."
        );
    }
    if let Some(version) = &options.release_version {
        println!("Ignoring --release-version {version}: Ottla has one metadata version.");
    }
    for feature in &options.features {
        println!("Ignoring --feature {feature}: Ottla has no feature levels to set.");
    }
    let mut formatted = 0;
    for dir in &config.log_dirs {
        let path = dir.join(META_PROPERTIES);
        if path.exists() {
            if options.ignore_formatted {
                continue;
            }
            anyhow::bail!(
                "Log directory {} is already formatted. Use --ignore-formatted to ignore this directory and format the others.",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create log dir {}", dir.display()))?;
        write_meta_properties(dir, config.node_id, &options.cluster_id)?;
        println!(
            "Formatting {} with cluster id {} for node {}.",
            dir.display(),
            options.cluster_id,
            config.node_id
        );
        formatted += 1;
    }
    if formatted == 0 {
        println!("All of the log directories are already formatted.");
    }
    Ok(())
}

/// Kafka's `meta.properties` (version 1, with a directory id).
pub fn write_meta_properties(dir: &Path, node_id: i32, cluster_id: &str) -> anyhow::Result<()> {
    let text = format!(
        "#\n#Written by Ottla\nnode.id={node_id}\ndirectory.id={}\nversion=1\ncluster.id={cluster_id}\n",
        encode_topic_id(uuid::Uuid::new_v4())
    );
    let path = dir.join(META_PROPERTIES);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// A log dir's `meta.properties` as (node.id, cluster.id), each if present; `None`
/// when the dir has none.
fn read_meta_properties(dir: &Path) -> anyhow::Result<Option<(Option<String>, Option<String>)>> {
    let path = dir.join(META_PROPERTIES);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let props = properties::parse(&text);
            let field = |key: &str| props.get(key).map(|s| s.trim().to_string());
            Ok(Some((field("node.id"), field("cluster.id"))))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn node_id_mismatch(dir: &Path, stored: Option<&str>, node_id: i32) -> anyhow::Error {
    anyhow::anyhow!(
        "Stored node id {} in {} doesn't match the configured node.id {node_id}",
        stored.unwrap_or("(none)"),
        dir.join(META_PROPERTIES).display()
    )
}

/// Create `meta.properties` in a new log dir (the embedded single node formats itself),
/// or check an existing one belongs to this node and cluster (Kafka refuses to start on
/// a log dir of another node).
pub fn check_meta_properties(dir: &Path, node_id: i32, cluster_id: &str) -> anyhow::Result<()> {
    let Some((stored_node, stored_cluster)) = read_meta_properties(dir)? else {
        return write_meta_properties(dir, node_id, cluster_id);
    };
    if stored_node
        .as_ref()
        .is_some_and(|n| *n != node_id.to_string())
    {
        return Err(node_id_mismatch(dir, stored_node.as_deref(), node_id));
    }
    if let Some(stored) = stored_cluster.filter(|c| c != cluster_id) {
        anyhow::bail!(
            "Invalid cluster.id in {}: expected {cluster_id}, found {stored}; the log dir belongs to another cluster",
            dir.join(META_PROPERTIES).display()
        );
    }
    Ok(())
}

/// The cluster id every log dir of a quorum node was formatted with; a directory not
/// formatted, or formatted for another cluster or node, stops start-up.
pub fn formatted_cluster_id(log_dirs: &[PathBuf], node_id: i32) -> anyhow::Result<String> {
    let mut cluster_id: Option<String> = None;
    for dir in log_dirs {
        let Some((stored_node, stored_cluster)) = read_meta_properties(dir)? else {
            anyhow::bail!(
                "No `meta.properties` found in {} (have you run `ottla format` to format the directory?)",
                dir.display()
            );
        };
        if stored_node.as_deref() != Some(node_id.to_string().as_str()) {
            return Err(node_id_mismatch(dir, stored_node.as_deref(), node_id));
        }
        let path = dir.join(META_PROPERTIES);
        let Some(id) = stored_cluster else {
            anyhow::bail!("{} has no cluster.id", path.display());
        };
        match &cluster_id {
            Some(first) if *first != id => anyhow::bail!(
                "Invalid cluster.id in {}: expected {first}, found {id}; the log dirs belong to different clusters",
                path.display()
            ),
            _ => cluster_id = Some(id),
        }
    }
    cluster_id.context("no log dir")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_writes_meta_properties_once_and_start_up_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let id = random_uuid();
        let options = || FormatOptions {
            cluster_id: id.clone(),
            overrides: vec![format!("log.dirs={}", data.display()), "node.id=3".into()],
            ..Default::default()
        };
        assert!(
            formatted_cluster_id(std::slice::from_ref(&data), 3)
                .unwrap_err()
                .to_string()
                .contains("have you run `ottla format`"),
            "an unformatted dir is refused"
        );
        format(options()).unwrap();
        let text = std::fs::read_to_string(data.join(META_PROPERTIES)).unwrap();
        assert!(
            text.contains("node.id=3\n") && text.contains(&format!("cluster.id={id}\n")),
            "{text}"
        );
        assert_eq!(
            formatted_cluster_id(std::slice::from_ref(&data), 3).unwrap(),
            id
        );
        assert!(
            formatted_cluster_id(std::slice::from_ref(&data), 4).is_err(),
            "another node's dir"
        );
        let again = format(options()).unwrap_err().to_string();
        assert!(again.contains("already formatted"), "{again}");
        format(FormatOptions {
            ignore_formatted: true,
            ..options()
        })
        .unwrap();
        let bad = format(FormatOptions {
            cluster_id: "not-a-uuid".into(),
            ..options()
        })
        .unwrap_err()
        .to_string();
        assert!(bad.contains("does not appear to be a valid UUID"), "{bad}");
    }
}
