//! `report`: turn the JSON lines `scripts/bench.sh` collected into one markdown table
//! (median and min–max over runs, the fraction of the null broker, Kafka 4.1's figures
//! from issue 4 and Ottla's targets; for the replication scenarios of issue 12, the
//! three-node cluster against a single node; for the transactional scenario, committed
//! throughput and commit latency, with no Kafka reference; for the rebalance scenario of
//! issue 14, classic against KIP-848 over every repetition, with no Kafka reference),
//! followed by notes on anything that went wrong.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The JSON-lines file written by scripts/bench.sh.
    #[arg(long)]
    pub results: PathBuf,
}

/// One collected line.
struct Entry {
    run: u64,
    target: String,
    scenario: String,
    cpu_s: Option<f64>,
    result: Option<Value>,
    error: Option<String>,
}

fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Entry {
            run: v["run"].as_u64().unwrap_or(0),
            target: v["target"].as_str().unwrap_or("ottla").to_string(),
            scenario: v["scenario"].as_str().unwrap_or("?").to_string(),
            cpu_s: v["broker_cpu_s"].as_f64(),
            result: Some(v["result"].clone()).filter(|r| r.is_object()),
            error: v["error"].as_str().map(str::to_string),
        })
        .collect()
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn values(entries: &[Entry], target: &str, scenario: &str, path: &str) -> Vec<f64> {
    entries
        .iter()
        .filter(|e| e.target == target && e.scenario == scenario)
        .filter_map(|e| e.result.as_ref())
        .filter_map(|r| lookup(r, path).and_then(Value::as_f64))
        .filter(|x| x.is_finite())
        .collect()
}

/// Like `values`, with arrays (one figure per repetition) flattened: every repetition of
/// every run.
fn values_flat(entries: &[Entry], target: &str, scenario: &str, path: &str) -> Vec<f64> {
    entries
        .iter()
        .filter(|e| e.target == target && e.scenario == scenario)
        .filter_map(|e| e.result.as_ref())
        .filter_map(|r| lookup(r, path))
        .flat_map(|v| match v {
            Value::Array(a) => a.iter().filter_map(Value::as_f64).collect::<Vec<_>>(),
            v => v.as_f64().into_iter().collect(),
        })
        .filter(|x| x.is_finite())
        .collect()
}

/// The first string (or number, as text) at `path` among the results of `scenario`;
/// `key`, when given, is then looked up as one key (broker setting names have dots).
fn first_text(entries: &[Entry], scenario: &str, path: &str, key: Option<&str>) -> Option<String> {
    entries
        .iter()
        .filter(|e| e.scenario == scenario)
        .filter_map(|e| e.result.as_ref())
        .filter_map(|r| lookup(r, path))
        .filter_map(|v| match key {
            Some(k) => v.get(k),
            None => Some(v),
        })
        .find_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

pub(crate) fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn fmt(x: f64, unit: &str) -> String {
    match unit {
        "msg/s" => thousands(x),
        "ms" if x < 10.0 => format!("{x:.2}"),
        "ms" | "MB" | "MB/s" => {
            if x >= 1000.0 {
                thousands(x)
            } else {
                format!("{x:.1}")
            }
        }
        _ => format!("{x:.2}"),
    }
}

enum Goal {
    None,
    /// At least this, and (when the null broker ran) at least this fraction of it.
    AtLeast(f64, Option<f64>),
    Below(f64),
    /// At least this fraction of the reference figure (`null`, named by `vs_name`).
    FractionOf(f64),
}

struct Row {
    label: String,
    unit: &'static str,
    values: Vec<f64>,
    null: Option<f64>,
    /// Show the null broker's own figure instead of a fraction (latencies).
    null_as_value: bool,
    /// What `null` is the figure of: "null" (the null broker) or "single node".
    vs_name: &'static str,
    reference: &'static str,
    goal: Goal,
}

impl Row {
    fn render(&self) -> String {
        let med = median(&self.values);
        let (median_s, range) = match med {
            None => ("n/a".to_string(), "n/a".to_string()),
            Some(m) => {
                let min = self.values.iter().copied().fold(f64::INFINITY, f64::min);
                let max = self
                    .values
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max);
                (
                    fmt(m, self.unit),
                    format!("{}–{}", fmt(min, self.unit), fmt(max, self.unit)),
                )
            }
        };
        let ratio = match (med, self.null) {
            (Some(m), Some(n)) if n > 0.0 && !self.null_as_value => Some(m / n),
            _ => None,
        };
        let vs_null = match (self.null_as_value, self.null, ratio) {
            (true, Some(n), _) => format!("{}: {}", self.vs_name, fmt(n, self.unit)),
            (false, _, Some(r)) if self.vs_name == "null" => format!("{:.0} %", r * 100.0),
            (false, _, Some(r)) => format!("{:.0} % of {}", r * 100.0, self.vs_name),
            _ => "—".to_string(),
        };
        let target = match &self.goal {
            Goal::None => "—".to_string(),
            Goal::AtLeast(min, frac) => {
                let mut t = format!("≥ {}", goal_fmt(*min));
                if let Some(f) = frac {
                    t.push_str(&format!(" and ≥ {:.0} % of null", f * 100.0));
                }
                let met =
                    med.map(|m| m >= *min && frac.is_none_or(|f| ratio.is_none_or(|r| r >= f)));
                format!("{t}{}", verdict(met))
            }
            Goal::Below(max) => {
                format!("< {}{}", goal_fmt(*max), verdict(med.map(|m| m < *max)))
            }
            Goal::FractionOf(frac) => format!(
                "≥ {:.0} % of {}{}",
                frac * 100.0,
                self.vs_name,
                verdict(ratio.map(|r| r >= *frac))
            ),
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            self.label, median_s, range, self.unit, vs_null, self.reference, target
        )
    }
}

/// A threshold as written in the issue: thousands separators, no needless decimals.
fn goal_fmt(x: f64) -> String {
    if x.fract() == 0.0 {
        thousands(x)
    } else {
        format!("{x:.1}")
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => " (met)",
        Some(false) => " (not met)",
        None => "",
    }
}

const P1K: &str = "produce_1k_acks1_8p";
const P100: &str = "produce_100b_acksall_1p";
const CONSUME: &str = "consume_1k_1p";
const LAT: &str = "latency_1k_acksall";
const E2E: &str = "e2e_1k_acksall";
const FILL: &str = "fill_1k_1p";
/// The replication scenarios: the same on a single node (target "ottla", replication
/// factor 1) and on three nodes (target "cluster", replication factor 3).
const REPL_P: &str = "produce_1k_acksall_8p";
const REPL_LAT: &str = "latency_1k_acksall_8p";
const KAFKA_CLUSTER: &str = "not measured here";
/// Transactional produce on the single node; Kafka 4.1 could not be run on the machine
/// the figures were taken on, so it has no reference.
const TXN: &str = "txn_1k_1000pertxn";
const KAFKA_NOT_RUN: &str = "not run here";

/// Per run, broker CPU over `scenarios` of `target` / the bytes they moved, in s/GiB.
fn cpu_per_gib(entries: &[Entry], target: &str, scenarios: &[&str]) -> Vec<f64> {
    let mut cpu_by_run: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.target == target && scenarios.contains(&e.scenario.as_str()))
    {
        if let (Some(cpu), Some(r)) = (e.cpu_s, &e.result) {
            if let Some(bytes) = r["bytes"].as_f64() {
                let slot = cpu_by_run.entry(e.run).or_default();
                slot.0 += cpu;
                slot.1 += bytes;
            }
        }
    }
    cpu_by_run
        .values()
        .filter(|(_, b)| *b > 0.0)
        .map(|(c, b)| c / b * (1u64 << 30) as f64)
        .collect()
}

/// Rows for the transactional scenario: committed throughput, transactions per second,
/// the duration of the commit (the wait for in-flight records, then the
/// commit_transaction call) and of its EndTxn part alone.
fn txn_rows(entries: &[Entry], rows: &mut Vec<Row>) {
    let per_txn = median(&values(entries, "ottla", TXN, "per_txn")).unwrap_or(1000.0);
    let partitions = median(&values(entries, "ottla", TXN, "partitions")).unwrap_or(1.0);
    let what = format!(
        "transactional produce 1 KiB, {} records per transaction, {} partition{}",
        thousands(per_txn),
        thousands(partitions),
        if partitions == 1.0 { "" } else { "s" }
    );
    let row = |label: String, unit: &'static str, path: &str| Row {
        label,
        unit,
        values: values(entries, "ottla", TXN, path),
        null: None,
        null_as_value: false,
        vs_name: "null",
        reference: KAFKA_NOT_RUN,
        goal: Goal::None,
    };
    rows.push(row(
        format!("{what} (committed records)"),
        "msg/s",
        "msgs_per_s",
    ));
    rows.push(row(
        format!("{what} (committed records)"),
        "MB/s",
        "mb_per_s",
    ));
    rows.push(row(
        format!("{what}: transactions committed"),
        "txn/s",
        "txns_per_s",
    ));
    for (path, p) in [
        ("commit_latency.p50_ms", "p50"),
        ("commit_latency.p99_ms", "p99"),
        ("commit_latency.max_ms", "max"),
    ] {
        rows.push(row(
            format!("commit (drain + commit_transaction) {p}, same scenario"),
            "ms",
            path,
        ));
    }
    for (path, p) in [
        ("end_txn_latency.p50_ms", "p50"),
        ("end_txn_latency.p99_ms", "p99"),
    ] {
        rows.push(row(
            format!("of which commit_transaction once drained (EndTxn) {p}"),
            "ms",
            path,
        ));
    }
}

/// The rebalance scenario (issue 14): one member of a group leaves, time until the
/// rest are stable again; classic protocol, KIP-848 with the broker's default heartbeat
/// interval, and (when run) KIP-848 with a 1 s interval. Each figure is one repetition
/// (a fresh group); the rows take every repetition of every run. The group forming is
/// shown as well.
const REB_CLASSIC: &str = "rebalance_classic";
const REB_CONSUMER: &str = "rebalance_consumer";
const REB_CONSUMER_HB1S: &str = "rebalance_consumer_hb1s";

fn seconds_text(ms: Option<String>) -> String {
    match ms.and_then(|m| m.parse::<f64>().ok()) {
        Some(ms) => format!("{} s", goal_fmt(ms / 1000.0)),
        None => "?".into(),
    }
}

fn rebalance_rows(entries: &[Entry], rows: &mut Vec<Row>) {
    const HB: &str = "group.consumer.heartbeat.interval.ms";
    let any = |scenario: &str| entries.iter().any(|e| e.scenario == scenario);
    let members = median(&values(entries, "ottla", REB_CLASSIC, "members"))
        .or_else(|| median(&values(entries, "ottla", REB_CONSUMER, "members")))
        .or_else(|| median(&values(entries, "ottla", REB_CONSUMER_HB1S, "members")))
        .unwrap_or(10.0);
    let partitions = median(&values(entries, "ottla", REB_CLASSIC, "partitions"))
        .or_else(|| median(&values(entries, "ottla", REB_CONSUMER, "partitions")))
        .or_else(|| median(&values(entries, "ottla", REB_CONSUMER_HB1S, "partitions")))
        .unwrap_or(100.0);
    let variants = [
        (
            REB_CLASSIC,
            format!(
                "classic, {} (client heartbeat 3 s)",
                first_text(entries, REB_CLASSIC, "assignor", None).unwrap_or_else(|| "?".into())
            ),
            format!(
                "classic, group.initial.rebalance.delay.ms {}",
                seconds_text(first_text(
                    entries,
                    REB_CLASSIC,
                    "broker",
                    Some("group.initial.rebalance.delay.ms")
                ))
            ),
        ),
        (
            REB_CONSUMER,
            format!(
                "KIP-848, {}, broker heartbeat interval {}",
                first_text(entries, REB_CONSUMER, "assignor", None).unwrap_or_else(|| "?".into()),
                seconds_text(first_text(entries, REB_CONSUMER, "broker", Some(HB)))
            ),
            format!(
                "KIP-848, heartbeat interval {}",
                seconds_text(first_text(entries, REB_CONSUMER, "broker", Some(HB)))
            ),
        ),
        (
            REB_CONSUMER_HB1S,
            format!(
                "KIP-848, {}, broker heartbeat interval {} (overridden)",
                first_text(entries, REB_CONSUMER_HB1S, "assignor", None)
                    .unwrap_or_else(|| "?".into()),
                seconds_text(first_text(entries, REB_CONSUMER_HB1S, "broker", Some(HB)))
            ),
            format!(
                "KIP-848, heartbeat interval {}",
                seconds_text(first_text(entries, REB_CONSUMER_HB1S, "broker", Some(HB)))
            ),
        ),
    ];
    let classic = median(&values_flat(entries, "ottla", REB_CLASSIC, "times_ms"));
    let classic_formed = median(&values_flat(entries, "ottla", REB_CLASSIC, "formation_ms"));
    for (scenario, what, _) in &variants {
        if !any(scenario) {
            continue;
        }
        rows.push(Row {
            label: format!(
                "rebalance: 1 of {} members leaves ({} partitions), until the rest are stable again: {what}",
                thousands(members),
                thousands(partitions)
            ),
            unit: "ms",
            values: values_flat(entries, "ottla", scenario, "times_ms"),
            null: if *scenario == REB_CLASSIC { None } else { classic },
            null_as_value: false,
            vs_name: "classic",
            reference: KAFKA_NOT_RUN,
            goal: Goal::None,
        });
    }
    for (scenario, _, what) in &variants {
        if !any(scenario) {
            continue;
        }
        rows.push(Row {
            label: format!(
                "the same group forming ({} members subscribe, until stable): {what}",
                thousands(members)
            ),
            unit: "ms",
            values: values_flat(entries, "ottla", scenario, "formation_ms"),
            null: if *scenario == REB_CLASSIC {
                None
            } else {
                classic_formed
            },
            null_as_value: false,
            vs_name: "classic",
            reference: KAFKA_NOT_RUN,
            goal: Goal::None,
        });
    }
}

/// Rows comparing the three-node cluster (replication factor 3) with a single node on
/// the same scenarios: each single-node row followed by its three-node row.
fn replication_rows(entries: &[Entry], rows: &mut Vec<Row>) {
    let single = |label: String, unit: &'static str, values: Vec<f64>| Row {
        label: format!("{label}: single node (RF 1)"),
        unit,
        values,
        null: None,
        null_as_value: false,
        vs_name: "null",
        reference: KAFKA_CLUSTER,
        goal: Goal::None,
    };
    let three = |label: String, unit: &'static str, values: Vec<f64>, single: &Row, value| Row {
        label: format!("{label}: three nodes (RF 3)"),
        unit,
        values,
        null: median(&single.values),
        null_as_value: value,
        vs_name: "single node",
        reference: KAFKA_CLUSTER,
        goal: Goal::None,
    };
    let label = "produce 1 KiB, acks=all, 8 partitions";
    for (path, unit) in [("msgs_per_s", "msg/s"), ("mb_per_s", "MB/s")] {
        let s = single(label.into(), unit, values(entries, "ottla", REPL_P, path));
        let t = three(
            label.into(),
            unit,
            values(entries, "cluster", REPL_P, path),
            &s,
            false,
        );
        rows.push(s);
        rows.push(t);
    }
    let rate = median(&values(entries, "cluster", REPL_LAT, "rate"))
        .or_else(|| median(&values(entries, "ottla", REPL_LAT, "rate")))
        .unwrap_or(20_000.0);
    for (path, p) in [
        ("latency.p50_ms", "p50"),
        ("latency.p99_ms", "p99"),
        ("latency.p999_ms", "p99.9"),
    ] {
        let label = format!(
            "produce latency {p}, {} msg/s of 1 KiB, acks=all, 8 partitions",
            thousands(rate)
        );
        let s = single(
            label.clone(),
            "ms",
            values(entries, "ottla", REPL_LAT, path),
        );
        let t = three(
            label,
            "ms",
            values(entries, "cluster", REPL_LAT, path),
            &s,
            true,
        );
        rows.push(s);
        rows.push(t);
    }
    let label = "broker CPU (user+sys) per GiB produced, 1 KiB, acks=all, 8 partitions";
    let s = single(
        label.into(),
        "s/GiB",
        cpu_per_gib(entries, "ottla", &[REPL_P]),
    );
    let mut t = three(
        label.into(),
        "s/GiB",
        cpu_per_gib(entries, "cluster", &[REPL_P]),
        &s,
        true,
    );
    t.label = format!("{label}: three nodes (RF 3), sum of the 3 brokers");
    rows.push(s);
    rows.push(t);
}

pub fn run(args: ReportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.results)
        .with_context(|| format!("reading {}", args.results.display()))?;
    let entries = parse(&text);
    let runs = entries.iter().map(|e| e.run).max().unwrap_or(0);
    let mut rows: Vec<Row> = Vec::new();
    let rate = median(&values(&entries, "ottla", LAT, "rate")).unwrap_or(20_000.0);

    let throughput = |rows: &mut Vec<Row>,
                      label: &str,
                      scenario: &str,
                      ref_msgs: &'static str,
                      ref_mb: &'static str,
                      goal_msgs: f64,
                      goal_mb: f64| {
        for (path, unit, reference, goal) in [
            ("msgs_per_s", "msg/s", ref_msgs, goal_msgs),
            ("mb_per_s", "MB/s", ref_mb, goal_mb),
        ] {
            rows.push(Row {
                label: label.to_string(),
                unit,
                values: values(&entries, "ottla", scenario, path),
                null: median(&values(&entries, "null", scenario, path)),
                null_as_value: false,
                vs_name: "null",
                reference,
                goal: Goal::AtLeast(goal, Some(0.8)),
            });
        }
    };
    throughput(
        &mut rows,
        "produce 1 KiB, acks=1, 8 partitions",
        P1K,
        "205,000",
        "209",
        307_500.0,
        313.5,
    );
    throughput(
        &mut rows,
        "produce 100 B, acks=all, 1 partition",
        P100,
        "1,170,000",
        "117",
        1_755_000.0,
        175.5,
    );
    rows.push(Row {
        label: "consume 1 KiB, 1 partition, from offset 0".into(),
        unit: "MB/s",
        values: values(&entries, "ottla", CONSUME, "mb_per_s"),
        null: None,
        null_as_value: false,
        vs_name: "null",
        reference: "713",
        goal: Goal::AtLeast(1069.5, None),
    });
    rows.push(Row {
        label: "consume 1 KiB, 1 partition, from offset 0".into(),
        unit: "msg/s",
        values: values(&entries, "ottla", CONSUME, "msgs_per_s"),
        null: None,
        null_as_value: false,
        vs_name: "null",
        reference: "—",
        goal: Goal::None,
    });
    for (scenario, what) in [(LAT, "produce latency"), (E2E, "end-to-end latency")] {
        for (path, p, goal) in [
            ("latency.p50_ms", "p50", Goal::None),
            (
                "latency.p99_ms",
                "p99",
                if scenario == LAT {
                    Goal::Below(5.0)
                } else {
                    Goal::None
                },
            ),
            (
                "latency.p999_ms",
                "p99.9",
                if scenario == LAT {
                    Goal::Below(20.0)
                } else {
                    Goal::None
                },
            ),
        ] {
            rows.push(Row {
                label: format!("{what} {p}, {} msg/s of 1 KiB, acks=all", thousands(rate)),
                unit: "ms",
                values: values(&entries, "ottla", scenario, path),
                null: if scenario == LAT {
                    median(&values(&entries, "null", scenario, path))
                } else {
                    None
                },
                null_as_value: true,
                vs_name: "null",
                reference: "—",
                goal,
            });
        }
    }
    if entries.iter().any(|e| e.target == "metrics_on") {
        for (path, unit) in [("msgs_per_s", "msg/s"), ("mb_per_s", "MB/s")] {
            rows.push(Row {
                label: "produce 1 KiB, acks=1, 8 partitions, metrics on, scraped every second"
                    .into(),
                unit,
                values: values(&entries, "metrics_on", P1K, path),
                null: median(&values(&entries, "metrics_off", P1K, path)),
                null_as_value: false,
                vs_name: "metrics off",
                reference: "—",
                goal: Goal::FractionOf(0.98),
            });
        }
        for (path, unit) in [("msgs_per_s", "msg/s"), ("mb_per_s", "MB/s")] {
            rows.push(Row {
                label: "the same, metrics off (its own fresh broker)".into(),
                unit,
                values: values(&entries, "metrics_off", P1K, path),
                null: None,
                null_as_value: false,
                vs_name: "null",
                reference: "—",
                goal: Goal::None,
            });
        }
    }
    // Issue 13: "Authorization decisions are cached per principal and resource so that
    // checks cost no measurable throughput"; the metrics pair's 2 % is the bound taken
    // for "measurable" (the two brokers' run-to-run noise is of that order).
    if entries.iter().any(|e| e.target == "acl_on") {
        for (path, unit) in [("msgs_per_s", "msg/s"), ("mb_per_s", "MB/s")] {
            rows.push(Row {
                label: "produce 1 KiB, acks=1, 8 partitions, authorizer on (ACLs per request)"
                    .into(),
                unit,
                values: values(&entries, "acl_on", P1K, path),
                null: median(&values(&entries, "acl_off", P1K, path)),
                null_as_value: false,
                vs_name: "off",
                reference: "—",
                goal: Goal::FractionOf(0.98),
            });
        }
        for (path, unit) in [("msgs_per_s", "msg/s"), ("mb_per_s", "MB/s")] {
            rows.push(Row {
                label: "the same, authorizer off (its own fresh broker)".into(),
                unit,
                values: values(&entries, "acl_off", P1K, path),
                null: None,
                null_as_value: false,
                vs_name: "null",
                reference: "—",
                goal: Goal::None,
            });
        }
    }
    if entries.iter().any(|e| e.target == "sec_ssl") {
        for (scenario, what, path, unit) in [
            (
                P1K,
                "produce 1 KiB, acks=1, 8 partitions",
                "msgs_per_s",
                "msg/s",
            ),
            (
                P1K,
                "produce 1 KiB, acks=1, 8 partitions",
                "mb_per_s",
                "MB/s",
            ),
            (
                CONSUME,
                "consume 1 KiB, 1 partition, from offset 0",
                "mb_per_s",
                "MB/s",
            ),
        ] {
            let plaintext = median(&values(&entries, "sec_plaintext", scenario, path));
            for (target, protocol) in [
                ("sec_plaintext", "PLAINTEXT"),
                ("sec_ssl", "SSL"),
                ("sec_sasl_ssl", "SASL_SSL (PLAIN)"),
            ] {
                rows.push(Row {
                    label: format!("{what}, {protocol} listener (one broker, three listeners)"),
                    unit,
                    values: values(&entries, target, scenario, path),
                    null: if target == "sec_plaintext" {
                        None
                    } else {
                        plaintext
                    },
                    null_as_value: false,
                    vs_name: "plaintext",
                    reference: "—",
                    goal: Goal::None,
                });
            }
        }
    }
    if entries.iter().any(|e| e.scenario == TXN) {
        txn_rows(&entries, &mut rows);
    }
    let kb_to_mb = |v: Vec<f64>| {
        v.into_iter()
            .map(|kb| kb * 1024.0 / 1e6)
            .collect::<Vec<_>>()
    };
    rows.push(Row {
        label: "broker peak RSS (VmHWM) after the throughput scenarios".into(),
        unit: "MB",
        values: kb_to_mb(values(&entries, "ottla", "memory", "vm_hwm_kb")),
        null: None,
        null_as_value: false,
        vs_name: "null",
        reference: "800",
        goal: Goal::Below(80.0),
    });
    rows.push(Row {
        label: "broker anonymous RSS (RssAnon) at that point".into(),
        unit: "MB",
        values: kb_to_mb(values(&entries, "ottla", "memory", "rss_anon_kb")),
        null: None,
        null_as_value: false,
        vs_name: "null",
        reference: "—",
        goal: Goal::None,
    });
    // CPU per GiB: per run, broker CPU over the produce (or consume) scenarios / bytes
    // they moved.
    for (what, scenarios) in [
        ("produced", &[P1K, P100, FILL][..]),
        ("consumed", &[CONSUME]),
    ] {
        rows.push(Row {
            label: format!("broker CPU (user+sys) per GiB {what}"),
            unit: "s/GiB",
            values: cpu_per_gib(&entries, "ottla", scenarios),
            null: None,
            null_as_value: false,
            vs_name: "null",
            reference: "—",
            goal: Goal::None,
        });
    }
    rows.push(Row {
        label: "start to first Metadata answer".into(),
        unit: "ms",
        values: values(&entries, "ottla", "startup", "startup_ms"),
        null: None,
        null_as_value: false,
        vs_name: "null",
        reference: "3,300",
        goal: Goal::Below(100.0),
    });
    let rebalance_ran = entries.iter().any(|e| e.scenario.starts_with("rebalance_"));
    if rebalance_ran {
        rebalance_rows(&entries, &mut rows);
    }
    if entries
        .iter()
        .any(|e| e.target == "cluster" || e.scenario == REPL_P || e.scenario == REPL_LAT)
    {
        replication_rows(&entries, &mut rows);
    }
    for (scenario, label) in [
        (P1K, "null broker: produce 1 KiB, acks=1, 8 partitions"),
        (P100, "null broker: produce 100 B, acks=all, 1 partition"),
    ] {
        rows.push(Row {
            label: label.into(),
            unit: "msg/s",
            values: values(&entries, "null", scenario, "msgs_per_s"),
            null: None,
            null_as_value: false,
            vs_name: "null",
            reference: "—",
            goal: Goal::None,
        });
    }

    for (scenario, label) in [
        (
            "pagecache_write",
            "machine: page-cache write bandwidth, new file (dd)",
        ),
        (
            "pagecache_rewrite",
            "machine: page-cache rewrite, pages resident (dd)",
        ),
    ] {
        rows.push(Row {
            label: label.into(),
            unit: "MB/s",
            values: values(&entries, "machine", scenario, "mb_per_s"),
            null: None,
            null_as_value: false,
            vs_name: "null",
            reference: "—",
            goal: Goal::None,
        });
    }

    println!(
        "| scenario | median | min–max | unit | vs null broker (or single node) | Kafka 4.1 reference | target |"
    );
    println!("|---|---:|---:|---|---:|---:|---|");
    for row in &rows {
        println!("{}", row.render());
    }
    println!();
    println!(
        "{runs} run(s); MB = 10^6 bytes; latency percentiles are per run (nearest rank), then the median over runs."
    );

    if rebalance_ran {
        let settle = [REB_CLASSIC, REB_CONSUMER, REB_CONSUMER_HB1S]
            .iter()
            .find_map(|s| first_text(&entries, s, "settle_ms", None))
            .and_then(|m| m.parse::<f64>().ok())
            .map_or("?".to_string(), |m| goal_fmt(m / 1000.0));
        println!(
            "Rebalance rows: median and min–max over every repetition (a fresh group each) of every run; \
             the time from the leaving member's close call to the last assignment change of the others, \
             which then stayed unchanged for the {settle} s settle window (not counted); \
             client heartbeat and session settings at librdkafka's defaults; no Kafka reference (not run here)."
        );
        // The leave falls at a random point of the heartbeat cycle, so the figures are
        // spread over about one interval; the mean says more than a median of few.
        let means: Vec<String> = [
            (REB_CLASSIC, "classic"),
            (REB_CONSUMER, "KIP-848"),
            (REB_CONSUMER_HB1S, "KIP-848 at 1 s"),
        ]
        .iter()
        .filter_map(|(scenario, name)| {
            let v = values_flat(&entries, "ottla", scenario, "times_ms");
            (!v.is_empty()).then(|| {
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                format!("{name} {} ms ({} leaves)", fmt(mean, "ms"), v.len())
            })
        })
        .collect();
        println!("Rebalance means: {}.", means.join(", "));
    }

    // Notes: anything that failed or looks wrong.
    let mut notes = Vec::new();
    for e in &entries {
        let tag = format!("run {} {} {}", e.run, e.target, e.scenario);
        if let Some(err) = &e.error {
            notes.push(format!("{tag}: {err}"));
        }
        let Some(r) = &e.result else {
            if e.error.is_none() {
                notes.push(format!("{tag}: no result"));
            }
            continue;
        };
        let errors = r["errors"].as_u64().unwrap_or(0);
        if errors > 0 {
            notes.push(format!(
                "{tag}: {errors} errors (first: {})",
                r["first_error"].as_str().unwrap_or("?")
            ));
        }
        if let (Some(got), Some(wanted)) = (r["records"].as_u64(), r["wanted"].as_u64()) {
            if got < wanted {
                notes.push(format!("{tag}: read {got} of {wanted} records"));
            }
        }
        if let Some(e) = r["shutdown_error"].as_str() {
            notes.push(format!("{tag}: {e}"));
        }
    }
    if !notes.is_empty() {
        println!();
        println!("Problems seen:");
        for n in notes {
            println!("- {n}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebalance_rows_take_every_repetition_of_every_run() {
        let line = |run: u64, scenario: &str, times: &str, hb: &str| {
            format!(
                r#"{{"run":{run},"target":"ottla","scenario":"{scenario}","result":{{"members":10,"partitions":100,"assignor":"uniform (broker default)","times_ms":{times},"formation_ms":[5000.0],"settle_ms":8000,"broker":{{"group.consumer.heartbeat.interval.ms":"{hb}","group.initial.rebalance.delay.ms":"3000"}}}}}}"#
            )
        };
        let text = [
            line(1, REB_CLASSIC, "[1000.0, 3000.0]", "5000"),
            line(2, REB_CLASSIC, "[2000.0]", "5000"),
            line(1, REB_CONSUMER, "[500.0, 1500.0, 1000.0]", "5000"),
        ]
        .join("\n");
        let entries = parse(&text);
        assert_eq!(
            values_flat(&entries, "ottla", REB_CLASSIC, "times_ms"),
            vec![1000.0, 3000.0, 2000.0]
        );
        let mut rows = Vec::new();
        rebalance_rows(&entries, &mut rows);
        // Two leave rows and two forming rows; no 1 s row, as it did not run.
        assert_eq!(rows.len(), 4);
        assert!(rows[1].label.contains("broker heartbeat interval 5 s"));
        assert_eq!(median(&rows[0].values), Some(2000.0));
        assert_eq!(rows[1].null, Some(2000.0));
        let rendered = rows[1].render();
        assert!(rendered.contains("| 1,000 | 500.0–1,500 | ms | 50 % of classic |"));
        assert!(rows[2]
            .label
            .contains("group.initial.rebalance.delay.ms 3 s"));
    }
}
