#!/usr/bin/env bash
# Ottla's benchmark (issues 4, 12 and 14). Not a test: it prints figures and never fails
# on them.
#
#   scripts/bench.sh            full run (BENCH_RUNS runs, about 160 s each at BENCH_SCALE=1
#                               on 2 vCPUs, 50 s of which the replication scenarios, plus
#                               about 4.5 minutes of the rebalance scenario, which
#                               BENCH_SCALE does not shorten)
#   scripts/bench.sh --smoke    a tiny run that only checks the harness works (seconds;
#                               the rebalance scenario with 3 members and 6 partitions,
#                               once, see below); it exits 1 if a scenario failed
#   scripts/bench.sh --scale    only the scale scenario (issue 11, see run_scale below):
#                               10,000 partitions, and SCALE_GB (50) GB in 1 GiB and in
#                               16 MiB segments; its own table. SCALE_TOPICS=100 topics
#                               of 100 partitions; SCALE_DATA=0 skips the data part.
#                               About 10 minutes at 50 GB.
#
# It builds the release broker and `ottla-bench` (a librdkafka load generator, see
# crates/bench), then for each run: times broker start to first Metadata answer on a
# fresh temp dir; starts a fresh broker on a free port and runs, through librdkafka,
#   - produce 1 KiB records, acks=1, 8 partitions          (throughput)
#   - produce 100 B records, acks=all, 1 partition          (throughput)
#   - fill a 1-partition topic with 1 KiB records, then consume it from offset 0
#   - broker peak RSS (VmHWM) after those, and broker CPU (utime+stime) per GiB produced
#     and per GiB consumed
#   - produce latency per delivery report at a fixed rate (1 KiB, acks=all)
#   - end-to-end latency (produce to consume) at the same rate
#   - transactional produce (a transactional.id, so idempotent and acks=all): 1 KiB
#     records to 1 partition in transactions of 1,000, committed one after another for
#     20 s: committed records/s and MB/s, transactions/s, commit_transaction latency
#     (no Kafka 4.1 reference: Kafka could not be run on the machine measured)
# then the 1 KiB acks=1 produce (3 million records) on two more fresh brokers, one
# serving metrics.listener and scraped once a second, one without, in alternating
# order: the throughput with metrics on against off (issue 15's target: under 2 %
# apart);
# then the same produce on two more fresh brokers, one with Kafka's StandardAuthorizer
# denying by default (allow.everyone.if.no.acl.found=false) and the bench client
# (User:ANONYMOUS on PLAINTEXT, no super user) granted real ACLs beforehand, one without,
# again in alternating order: what checking ACLs on every request costs (issue 13:
# "checks cost no measurable throughput"; taken as under 2 % apart, as for metrics);
# then (BENCH_SECURITY=1 only, see below), on one more fresh broker with PLAINTEXT, SSL
# and SASL_SSL (PLAIN) listeners (certificates made with openssl for the run), the 1 KiB
# produce, a fill and the consume over each listener: what TLS and SASL cost;
# then the rebalance scenario (issue 14, `ottla-bench rebalance`, see
# crates/bench/src/rebalance.rs), on one fresh broker per protocol: 10 librdkafka
# consumers in one group over a 100-partition topic; once the group is stable (every
# partition owned exactly once, judged from the members' own rebalance callbacks and
# assignment(), and no callback for an 8 s settle window), one member closes (a clean
# leave) at a random moment up to 15 s later (the members heartbeat in step after the
# group forms; a fixed wait would always hit the same point of their cycle), and the
# figure is the time from the close call to the last assignment change of the other 9,
# once they again own all 100 partitions exactly once with no callback for the settle
# window (the window is not counted). BENCH_REBALANCE_REPEATS (3) fresh groups per
# broker and run; the rows take every repetition of every run. Rows:
#   - classic protocol, partition.assignment.strategy=cooperative-sticky (incremental
#     and sticky like KIP-848's uniform assignor, so the protocols are compared rather
#     than eager against incremental rebalancing)
#   - KIP-848 (group.protocol=consumer), the broker's default assignor (uniform)
#   - KIP-848 with the broker's heartbeat interval at 1 s (group.consumer.heartbeat.
#     interval.ms and group.consumer.min.heartbeat.interval.ms overridden to 1000)
# and the time the same group took to form. Client settings are librdkafka's defaults
# (classic: heartbeat.interval.ms 3000, session.timeout.ms 45000), broker settings
# Ottla's (= Kafka's) defaults: group.initial.rebalance.delay.ms 3000 (classic),
# group.consumer.heartbeat.interval.ms 5000 (KIP-848); these, not the broker's speed,
# dominate the figures. No Kafka reference (Kafka cannot be run on this machine).
# --smoke runs it with 3 members, 6 partitions, one repetition, a 2 s settle window, no
# random wait, group.initial.rebalance.delay.ms=0 and KIP-848 only at 1 s (the classic
# and the 1 s rows): about 15 s, figures meaningless;
# and, for context, the page-cache write bandwidth of the machine (dd of 1 GiB to a new
# file, then the same again over the file's resident pages);
# then the same produce scenarios against `ottla-bench null-broker`, a server that
# acknowledges produce requests without storing anything (the ceiling for this machine
# and client);
# then the cost of replication (issue 12), on a fresh single broker and on a fresh
# three-node cluster on this machine (config/cluster.properties: combined
# broker+controller nodes, min.insync.replicas=2; own cluster id, formatted nodes,
# free loopback ports), each with 8-partition topics of replication factor 1 and 3:
#   - produce 1 KiB records, acks=all, 8 partitions         (throughput, and broker CPU
#                                                            per GiB: the sum of the
#                                                            three nodes for the cluster)
#   - produce latency per delivery report at the fixed rate (1 KiB, acks=all, 8 partitions)
# The three nodes are stopped together (SIGTERM to all, SIGKILL after 30 s): they are a
# quorum, and the last one stopped alone could wait for a quorum that is gone.
# At the end it prints the machine and ONE markdown table: median and min–max over
# runs (over every repetition of every run for the rebalance rows), fraction of the null broker (or of the single node, for the three-node rows),
# Kafka 4.1's reference (none for the replication rows: no Kafka cluster was measured
# here) and the targets.
#
# Environment:
#   BENCH_RUNS=3              runs (medians are over runs)
#   BENCH_SCALE=1             multiplies record counts and durations (0.2 for a quick look)
#   BENCH_RATE=20000          msg/s for the latency scenarios
#   BENCH_LATENCY_LINGER_MS=0 producer linger.ms in the latency scenarios (librdkafka's
#                             default of 5 ms would add ~2.5 ms to every figure)
#   BENCH_NULL=1              0 skips the null-broker reference
#   BENCH_CLUSTER=1           0 skips the replication scenarios (single node RF 1 and
#                             three nodes RF 3)
#   BENCH_METRICS=1           0 skips the metrics-on produce scenario
#   BENCH_ACL=1               0 skips the authorizer on/off produce pair
#   BENCH_REBALANCE=1         0 skips the rebalance scenario
#   BENCH_REBALANCE_REPEATS=3 fresh groups per broker and run in the rebalance scenario
#                             (about 30 s each; BENCH_SCENARIO_TIMEOUT bounds the lot)
#   BENCH_REBALANCE_HB1S=1    0 drops its KIP-848 row with a 1 s heartbeat interval
#   BENCH_SECURITY=0          1 runs the PLAINTEXT / SSL / SASL_SSL scenarios. They need
#                             the openssl CLI (certificates) and an ottla-bench whose
#                             librdkafka has TLS: its cargo feature `tls` (off by default,
#                             so that building the workspace needs no OpenSSL headers),
#                             which links the system OpenSSL. The build step then installs
#                             what is missing of openssl, libssl-dev and pkg-config (apt;
#                             sudo when not root) and builds `-p ottla-bench --features
#                             ottla-bench/tls` into the usual target/release: that
#                             ottla-bench (TLS linked in) is the one every scenario of the
#                             run uses, and a later plain `cargo build --release` puts the
#                             default one back (both stay in target/, so switching back
#                             and forth is cheap after the first time).
#                             With BENCH_BUILD=0, build it yourself first:
#                               cargo build --release -p ottla -p ottla-bench --features ottla-bench/tls
#                             or the SSL rows fail with "OpenSSL not available at build time".
#   BENCH_ONLY=               `security`: only the PLAINTEXT / SSL / SASL_SSL scenarios
#                             and the authorizer on/off pair (implies BENCH_SECURITY=1;
#                             BENCH_ACL=0 still drops the pair; skips the page-cache dd,
#                             start-up, the load scenarios, metrics, null broker,
#                             rebalance and replication; their rows in the table stay empty). E.g. a
#                             quick look at what TLS, SASL and ACLs cost:
#                               BENCH_ONLY=security BENCH_RUNS=1 BENCH_SCALE=0.1 scripts/bench.sh
#                             `acl`: only the authorizer on/off pair (no TLS build needed).
#                             `rebalance`: only the rebalance scenario (classic against
#                             KIP-848), e.g. BENCH_ONLY=rebalance BENCH_RUNS=3 scripts/bench.sh
#   BENCH_BROKER_OVERRIDES    extra broker settings, space-separated KEY=VALUE (every
#                             broker, the cluster's nodes included)
#   BENCH_SCENARIO_TIMEOUT=600  seconds before one scenario is abandoned
#   BENCH_KEEP=0              1 keeps the work dir (broker logs, the cluster's node
#                             logs in cluster-runN/node-N.log, raw JSON results)
#   BENCH_BUILD=1             0 skips `cargo build` and uses target/release as it is
#
# The binaries are copied into the work dir first, so a rebuild in the same tree
# during a run does not change what is measured.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SMOKE=0
SCALE_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        --scale) SCALE_ONLY=1 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

RUNS="${BENCH_RUNS:-3}"
SCALE="${BENCH_SCALE:-1}"
RATE="${BENCH_RATE:-20000}"
LINGER="${BENCH_LATENCY_LINGER_MS:-0}"
RUN_NULL="${BENCH_NULL:-1}"
RUN_CLUSTER="${BENCH_CLUSTER:-1}"
RUN_METRICS="${BENCH_METRICS:-1}"
RUN_ACL="${BENCH_ACL:-1}"
RUN_SECURITY="${BENCH_SECURITY:-0}"
RUN_REBALANCE="${BENCH_REBALANCE:-1}"
RUN_BASE=1 # dd, start-up and the load scenarios on one fresh broker
case "${BENCH_ONLY:-}" in
    "") ;;
    security) RUN_BASE=0; RUN_METRICS=0; RUN_NULL=0; RUN_CLUSTER=0; RUN_SECURITY=1; RUN_REBALANCE=0 ;;
    acl) RUN_BASE=0; RUN_METRICS=0; RUN_NULL=0; RUN_CLUSTER=0; RUN_SECURITY=0; RUN_ACL=1; RUN_REBALANCE=0 ;;
    rebalance) RUN_BASE=0; RUN_METRICS=0; RUN_NULL=0; RUN_CLUSTER=0; RUN_SECURITY=0; RUN_ACL=0; RUN_REBALANCE=1 ;;
    *) echo "bench.sh: unknown BENCH_ONLY=${BENCH_ONLY} (only: security, acl, rebalance)" >&2; exit 2 ;;
esac
EXTRA_LISTENERS=""
TLS_DIR=""
SCENARIO_TIMEOUT="${BENCH_SCENARIO_TIMEOUT:-600}"
read -r -a BROKER_OVERRIDES <<<"${BENCH_BROKER_OVERRIDES:-}"

scaled() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s); if (v < 1) v = 1; print v }'; }
scaled_s() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = n * s; if (v < 0.5) v = 0.5; printf "%.2f", v }'; }

# The rebalance scenario (issue 14): not scaled by BENCH_SCALE (its figures are times,
# not amounts). REB_VARIANTS: one fresh broker each; consumer_hb1s is KIP-848 with the
# broker's heartbeat interval lowered to 1 s. REB_BROKER: overrides for those brokers.
REB_MEMBERS=10; REB_PARTITIONS=100; REB_REPEATS="${BENCH_REBALANCE_REPEATS:-3}"; REB_SETTLE_S=8; REB_JITTER_S=15
REB_VARIANTS="classic consumer"
[ "${BENCH_REBALANCE_HB1S:-1}" = 1 ] && REB_VARIANTS="$REB_VARIANTS consumer_hb1s"
REB_BROKER=()
if [ "$SMOKE" = 1 ]; then
    RUNS=1
    N_1K=20000; N_METRICS=20000; N_ACL=20000; N_100B=100000; N_CONSUME=20000; N_REPL=20000; LAT_S=1; E2E_S=1; TXN_S=1; DD_MIB=64
    # A small group, one repetition, no random wait, no initial rebalance delay, and
    # KIP-848 only at a 1 s heartbeat interval: the code paths in seconds, not figures.
    REB_MEMBERS=3; REB_PARTITIONS=6; REB_REPEATS=1; REB_SETTLE_S=2; REB_JITTER_S=0
    REB_VARIANTS="classic consumer_hb1s"
    REB_BROKER=(--override group.initial.rebalance.delay.ms=0)
else
    N_1K=$(scaled 1000000)       # produce 1 KiB, acks=1, 8 partitions
    N_METRICS=$(scaled 3000000)  # the same, metrics on and off
    N_ACL=$(scaled 3000000)      # the same, authorizer on and off
    N_100B=$(scaled 5000000)     # produce 100 B, acks=all, 1 partition
    N_CONSUME=$(scaled 2000000)  # fill, then consume, 1 KiB, 1 partition
    N_REPL=$(scaled 1000000)     # produce 1 KiB, acks=all, 8 partitions, RF 1 and RF 3
    LAT_S=$(scaled_s 20)         # produce latency at RATE
    E2E_S=$(scaled_s 20)         # end-to-end latency at RATE
    TXN_S=$(scaled_s 20)         # transactional produce, 1,000 records per transaction
    DD_MIB=$(scaled 1024)        # dd to the page cache, for context
fi
LAT_N=$(awk -v r="$RATE" -v s="$LAT_S" 'BEGIN { v = int(r * s); if (v < 1) v = 1; print v }')

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# ---------------------------------------------------------------------------
# apt_install PACKAGE...: as in scripts/test.sh (sudo when not root and available)
apt_install() {
    local sudo=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "bench.sh: apt-get is not available: install these yourself: $*" >&2
        return 1
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

if [ "${BENCH_BUILD:-1}" = 1 ]; then
    BUILD_ARGS=(--release -p ottla -p ottla-bench)
    if [ "$RUN_SECURITY" = 1 ]; then
        # ottla-bench's `tls` feature: librdkafka with the system OpenSSL, which the
        # openssl-sys crate finds through pkg-config; the openssl CLI makes the
        # certificates below.
        pkgs=()
        command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
        command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
        { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; } || pkgs+=(libssl-dev)
        if [ ${#pkgs[@]} -gt 0 ]; then
            say "installing ${pkgs[*]} (for BENCH_SECURITY=1)"
            apt_install "${pkgs[@]}" || echo "bench.sh: could not install ${pkgs[*]}; the TLS build may fail" >&2
        fi
        BUILD_ARGS+=(--features ottla-bench/tls)
    fi
    say "building (cargo build ${BUILD_ARGS[*]})"
    if ! cargo build "${BUILD_ARGS[@]}"; then
        echo "bench.sh: build failed" >&2
        exit 1
    fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ottla-bench.XXXXXX")"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
BPID=""
NPID=""
CPIDS=()  # the three-node cluster's node pids
CPORTS=() # its client and CONTROLLER ports (see cluster_node_args)
CDIR=""   # its data and logs
mkdir -p "$WORK/bin"
for b in ottla ottla-bench; do
    cp "$ROOT/target/release/$b" "$WORK/bin/$b" || { echo "bench.sh: no $ROOT/target/release/$b" >&2; rm -rf "$WORK"; exit 1; }
done
OTTLA="$WORK/bin/ottla"
BENCH="$WORK/bin/ottla-bench"

stop_pid() { # pid: SIGTERM, wait up to 30 s, then SIGKILL
    local pid="$1" i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && { echo "    (pid $pid ignored SIGTERM for 30 s; killing)" >&2; kill -KILL "$pid" 2>/dev/null; }
    wait "$pid" 2>/dev/null
    return 0
}
# stop_cluster [RUN]: SIGTERM to the three nodes at once (stopping them one by one
# could leave the last without a quorum to finish its controlled shutdown), wait up to
# 30 s for all, then SIGKILL; with RUN, record the shutdown time, or an error.
stop_cluster() {
    local run="${1:-}" pid i left t0 t1 killed=""
    [ "${#CPIDS[@]}" -gt 0 ] || return 0
    t0=$(date +%s.%N)
    for pid in "${CPIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for i in $(seq 300); do
        left=0
        for pid in "${CPIDS[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    t1=$(date +%s.%N)
    for i in "${!CPIDS[@]}"; do
        pid="${CPIDS[$i]}"
        if kill -0 "$pid" 2>/dev/null; then
            echo "    (cluster node $((i + 1)), pid $pid, ignored SIGTERM for 30 s; killing)" >&2
            kill -KILL "$pid" 2>/dev/null
            killed="$killed $((i + 1))"
        fi
    done
    for pid in "${CPIDS[@]}"; do wait "$pid" 2>/dev/null; done
    CPIDS=()
    if [ -n "$run" ]; then
        if [ -n "$killed" ]; then
            emit_error "$run" cluster shutdown "node(s)$killed did not exit within 30 s of SIGTERM; killed"
        else
            awk -v a="$t0" -v b="$t1" 'BEGIN { printf "    cluster stopped in %.2f s\n", b - a }' >&2
        fi
    fi
    return 0
}
cleanup() {
    stop_pid "$BPID"; BPID=""
    stop_pid "$NPID"; NPID=""
    stop_cluster
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        rm -rf "$WORK/bin"
        echo "work dir kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

json_escape() { sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\000-\037'; }

emit() { # run target scenario json-fields...
    local run="$1" target="$2" scenario="$3"; shift 3
    printf '{"run":%s,"target":"%s","scenario":"%s"%s}\n' "$run" "$target" "$scenario" "$*" >>"$RESULTS"
}
emit_error() { # run target scenario message
    emit "$1" "$2" "$3" ",\"error\":\"$(printf '%s' "$4" | json_escape)\""
}

CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"
cpu_ticks() { # utime + stime of a pid, or the sum over comma-separated pids, in clock
    # ticks (fields 14 and 15 of /proc/pid/stat)
    local pid rest sum=0 pids
    IFS=, read -r -a pids <<<"$1"
    for pid in "${pids[@]}"; do
        rest="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null)" || continue
        sum=$(awk -v s="$sum" '{ print s + $12 + $13 }' <<<"$rest")
    done
    echo "$sum"
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }

# Run one bench subcommand and record its JSON line. CPU-PIDS: one pid or a
# comma-separated list whose CPU time is summed.
#   scenario RUN TARGET NAME [cpu-pids] -- ottla-bench args...
scenario() {
    local run="$1" target="$2" name="$3"; shift 3
    local cpu_pid=""
    if [ "$1" != "--" ]; then cpu_pid="$1"; shift; fi
    shift # --
    local out="$WORK/$target-$name-run$run.json" err="$WORK/$target-$name-run$run.err"
    local t0 t1 rc
    say "run $run/$RUNS · $target · $name"
    [ -n "$cpu_pid" ] && t0="$(cpu_ticks "$cpu_pid")"
    timeout --signal=TERM --kill-after=10 "$SCENARIO_TIMEOUT" "$BENCH" "$@" >"$out" 2> >(tee "$err" | sed 's/^/    /' >&2)
    rc=$?
    [ -n "$cpu_pid" ] && t1="$(cpu_ticks "$cpu_pid")"
    local line
    line="$(tail -n 1 "$out" 2>/dev/null)"
    if [ "$rc" -eq 0 ] && [ -n "$line" ]; then
        local cpu=""
        [ -n "$cpu_pid" ] && cpu=",\"broker_cpu_s\":$(awk -v a="$t0" -v b="$t1" -v h="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / h }')"
        emit "$run" "$target" "$name" "$cpu,\"result\":$line"
    else
        sleep 0.2 # let tee finish
        local why
        why="$(grep -v '^\s*$' "$err" 2>/dev/null | tail -n 1)"
        [ "$rc" -eq 124 ] && why="timed out after ${SCENARIO_TIMEOUT}s; $why"
        echo "    (failed, exit $rc; carrying on)" >&2
        emit_error "$run" "$target" "$name" "exit $rc: $why"
    fi
}

broker_alive() { [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; }
broker_ready() { # bootstrap: up to 60 s for a Metadata answer, giving up if the broker exits
    local i
    for i in $(seq 60); do
        broker_alive || return 1
        "$BENCH" wait --bootstrap "$1" --timeout-s 1 >/dev/null 2>&1 && return 0
    done
    return 1
}

log_problems() { # run target logfile: record WARN/ERROR lines of a server log
    local n first
    n="$(grep -cE ' (WARN|ERROR) |panicked|^\[null-broker\] closing' "$3" 2>/dev/null)" || n=0
    if [ "${n:-0}" -gt 0 ]; then
        first="$(grep -m1 -E ' (WARN|ERROR) |panicked|^\[null-broker\] closing' "$3" | cut -c1-300)"
        echo "    $3: $n warning/error line(s), first: $first" >&2
        emit_error "$1" "$2" "server-log" "$n WARN/ERROR line(s) in the server log; first: $first"
    fi
}

SET_LAT=(--set "linger.ms=$LINGER")

OVERRIDES=()
for o in "${BROKER_OVERRIDES[@]}"; do OVERRIDES+=(--override "$o"); done

# scrape_every_second PORT PID OUT: GET /metrics once a second while PID lives (bash's
# /dev/tcp, no curl needed); one line in OUT per answered scrape.
scrape_every_second() {
    local port="$1" pid="$2" out="$3"
    : >"$out"
    while kill -0 "$pid" 2>/dev/null; do
        if exec 3<>"/dev/tcp/127.0.0.1/$port"; then
            printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
            head -n 1 <&3 >>"$out"
            cat <&3 >/dev/null
            exec 3<&-
        fi
        sleep 1
    done
}

# start_broker RUN DATA LOG: a fresh single broker on a free port; sets BPID and BOOT.
# Fails (recording why) if it does not answer Metadata.
start_broker() {
    local run="$1" data="$2" log="$3" port
    port="$("$BENCH" free-port)"
    BOOT="127.0.0.1:$port"
    "$OTTLA" serve --override "log.dirs=$data" --override "listeners=PLAINTEXT://$BOOT${EXTRA_LISTENERS:+,$EXTRA_LISTENERS}" "${OVERRIDES[@]}" 2>"$log" &
    BPID=$!
    say "run $run/$RUNS · broker pid $BPID on $BOOT, data in $data"
    if ! broker_ready "$BOOT"; then
        emit_error "$run" ottla broker "broker did not answer Metadata: $(tail -n 3 "$log" | tr '\n' ' ')"
        stop_pid "$BPID"; BPID=""
        return 1
    fi
}

cluster_alive() { # all three nodes running
    local pid
    [ "${#CPIDS[@]}" = 3 ] || return 1
    for pid in "${CPIDS[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}
cluster_tail() { # the last lines of every node's log, on one line
    local n
    for n in 1 2 3; do printf 'node %s: %s ' "$n" "$(tail -n 2 "$CDIR/node-$n.log" 2>/dev/null | tr '\n' ' ')"; done
}

# cluster_node_args N: node N's settings (NUL-separated), for format and serve alike:
# config/cluster.properties with its own node.id, data dir and listeners, and the
# quorum on this run's CONTROLLER ports (CPORTS: client and CONTROLLER port of node 1,
# then node 2, then node 3).
cluster_node_args() {
    local n="$1"
    printf '%s\0' --config "$ROOT/config/cluster.properties" --override "node.id=$n" \
        --override "log.dirs=$CDIR/node-$n" \
        --override "listeners=PLAINTEXT://127.0.0.1:${CPORTS[$((2 * n - 2))]},CONTROLLER://127.0.0.1:${CPORTS[$((2 * n - 1))]}" \
        --override "controller.quorum.voters=1@127.0.0.1:${CPORTS[1]},2@127.0.0.1:${CPORTS[3]},3@127.0.0.1:${CPORTS[5]}" \
        "${OVERRIDES[@]}"
}

# start_cluster RUN: format and start three nodes (config/cluster.properties) on six
# free loopback ports, data and logs in $WORK/cluster-runRUN; sets CPIDS, CDIR and
# CBOOT (the three client listeners). Waits until every node's Metadata names three
# brokers. Fails (recording why) otherwise.
start_cluster() {
    local run="$1" ports=() p n i id voters
    CDIR="$WORK/cluster-run$run"
    mkdir -p "$CDIR"
    for i in $(seq 50); do
        [ "${#ports[@]}" -ge 6 ] && break
        p="$("$BENCH" free-port)" || continue
        case " ${ports[*]} " in *" $p "*) ;; *) ports+=("$p") ;; esac
    done
    if [ "${#ports[@]}" -lt 6 ]; then
        emit_error "$run" cluster start "could not find six free ports"
        return 1
    fi
    CPORTS=("${ports[@]}")
    voters="1@127.0.0.1:${ports[1]},2@127.0.0.1:${ports[3]},3@127.0.0.1:${ports[5]}"
    CBOOT="127.0.0.1:${ports[0]},127.0.0.1:${ports[2]},127.0.0.1:${ports[4]}"
    id="$("$OTTLA" random-uuid)" || { emit_error "$run" cluster start "ottla random-uuid failed"; return 1; }
    local args
    for n in 1 2 3; do
        mapfile -d '' args < <(cluster_node_args "$n")
        if ! "$OTTLA" format -t "$id" "${args[@]}" >>"$CDIR/node-$n.log" 2>&1; then
            emit_error "$run" cluster start "ottla format failed for node $n: $(tail -n 2 "$CDIR/node-$n.log" | tr '\n' ' ')"
            return 1
        fi
    done
    for n in 1 2 3; do
        mapfile -d '' args < <(cluster_node_args "$n")
        "$OTTLA" serve "${args[@]}" >>"$CDIR/node-$n.log" 2>&1 &
        CPIDS+=($!)
    done
    say "run $run/$RUNS · cluster pids ${CPIDS[*]} on $CBOOT (controllers $voters), data in $CDIR"
    # Every node answers Metadata naming three (registered, unfenced) brokers.
    local t0 ready
    t0=$(date +%s)
    for n in 1 2 3; do
        ready=0
        while [ $(( $(date +%s) - t0 )) -lt 60 ]; do
            cluster_alive || break
            if "$BENCH" wait --bootstrap "127.0.0.1:${CPORTS[$((2 * n - 2))]}" --brokers 3 --timeout-s 1 >/dev/null 2>&1; then
                ready=1
                break
            fi
        done
        if [ "$ready" = 0 ]; then
            emit_error "$run" cluster start "node $n's Metadata did not name 3 brokers within 60 s$(cluster_alive || echo ' (a node exited)'); $(cluster_tail)"
            return 1
        fi
    done
    echo "    all three nodes name three brokers, $(( $(date +%s) - t0 )) s after start" >&2
}

# timed_dd RUN SCENARIO LABEL [DD_ARGS...]: write DD_MIB MiB of zeros to $WORK/dd.tmp,
# print and record the rate; fails if dd does.
timed_dd() {
    local run="$1" scenario="$2" label="$3" t0 t1 mb
    shift 3
    t0=$(date +%s.%N)
    dd if=/dev/zero of="$WORK/dd.tmp" bs=1M count="$DD_MIB" status=none "$@" 2>/dev/null || return 1
    t1=$(date +%s.%N)
    mb=$(awk -v n="$DD_MIB" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n * 1048576 / 1e6 / (b - a) }')
    echo "    $label: $mb MB/s" >&2
    emit "$run" machine "$scenario" ",\"result\":{\"mb_per_s\":$mb}"
}

# ---------------------------------------------------------------------------
# --scale (issue 11): what a broker costs at size, not speed. Per run:
#   - partitions: a fresh broker creates SCALE_TOPICS topics of 100 partitions in one
#     CreateTopics request (time), its RSS and open descriptors with them, then a clean
#     stop and a timed start on the same data (first Metadata answer: a single node
#     answers only once every log is open) with the RSS then;
#   - data: once per segment size (1 GiB, 16 MiB), a fresh broker is filled with
#     SCALE_GB GB of 1 KiB records in one partition (acks=1), its RSS then, a clean stop
#     and a timed start on the same data with the RSS then. Needs SCALE_GB of free disk
#     (the data of one size is deleted before the next).
run_scale() {
    local topics="${SCALE_TOPICS:-100}" gb="${SCALE_GB:-50}" run seg data log out records
    records=$(awk -v g="$gb" 'BEGIN { printf "%d", g * 1e9 / 1024 }')
    for run in $(seq "$RUNS"); do
        data="$WORK/scale-parts-run$run"; log="$WORK/scale-parts-run$run.log"
        start_broker "$run" "$data" "$log" || continue
        scenario "$run" scale create_partitions "$BPID" -- create-topics --bootstrap "$BOOT" \
            --prefix scale --count "$topics" --partitions 100
        emit "$run" scale partitions_rss ",\"result\":{\"rss_mb\":$(( $(status_kb "$BPID" VmRSS) / 1024 )),\"fds\":$(ls "/proc/$BPID/fd" | wc -l)}"
        stop_pid "$BPID"; BPID=""
        scenario "$run" scale partitions_startup -- startup --bin "$OTTLA" --data-dir "$data" "${OVERRIDES[@]}"
        log_problems "$run" scale "$log"
        # Kept until every run is done: ext4 skips inodes freed in the last minutes
        # when it allocates new ones, so deleting 50,000 files just before the next
        # run would measure the file system's recovery from that, not the broker.
    done
    rm -rf "$WORK"/scale-parts-run*
    for seg in $([ "${SCALE_DATA:-1}" = 1 ] && echo 1073741824 16777216); do
        data="$WORK/scale-data-$seg"; log="$WORK/scale-data-$seg.log"
        OVERRIDES+=(--override "log.segment.bytes=$seg")
        if start_broker 1 "$data" "$log"; then
            scenario 1 scale "fill_${seg}" "$BPID" -- produce --bootstrap "$BOOT" --topic scale-data \
                --partitions 1 --record-size 1024 --records "$records" --acks 1
            emit 1 scale "data_rss_${seg}" ",\"result\":{\"rss_mb\":$(( $(status_kb "$BPID" VmRSS) / 1024 )),\"segments\":$(ls "$data"/scale-data-0/*.log | wc -l)}"
            stop_pid "$BPID"; BPID=""
            for run in $(seq "$RUNS"); do
                scenario "$run" scale "data_startup_${seg}" -- startup --bin "$OTTLA" --data-dir "$data" "${OVERRIDES[@]}"
            done
            log_problems 1 scale "$log"
        fi
        unset 'OVERRIDES[${#OVERRIDES[@]}-1]' 'OVERRIDES[${#OVERRIDES[@]}-2]'
        rm -rf "$data"
    done
    echo
    echo "## Ottla at scale ($(nproc) CPU(s), $(git rev-parse --short HEAD 2>/dev/null), $RUNS run(s), medians with min-max)"
    echo
    python3 - "$RESULTS" "$topics" "$gb" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
topics, gb = int(sys.argv[2]), sys.argv[3]
def fig(scenario, field):
    vals = [r["result"][field] for r in rows
            if r.get("scenario") == scenario and "result" in r and r["result"].get(field) is not None]
    if not vals:
        errs = [r.get("error", "") for r in rows if r.get("scenario") == scenario and "error" in r]
        return "failed: " + errs[0][:80] if errs else "n/a"
    med = statistics.median(vals)
    return f"{med:g}" if len(vals) == 1 else f"{med:g} ({min(vals):g}-{max(vals):g})"
parts = topics * 100
print("| Scenario | Ottla | Target |")
print("|---|---|---|")
print(f"| create {parts:,} partitions (one CreateTopics), ms | {fig('create_partitions', 'created_ms')} | < 5,000 |")
print(f"| RSS with {parts:,} partitions, MB | {fig('partitions_rss', 'rss_mb')} | < 100 |")
print(f"| open descriptors with {parts:,} partitions | {fig('partitions_rss', 'fds')} | |")
print(f"| start-up after a clean shutdown, {parts:,} partitions, ms | {fig('partitions_startup', 'startup_ms')} | < 1000 |")
print(f"| RSS after that start-up, MB | {fig('partitions_startup', 'rss_mb')} | < 100 |")
for seg, name in ((1073741824, "1 GiB"), (16777216, "16 MiB")):
    print(f"| {gb} GB of 1 KiB records, {name} segments: segments | {fig('data_rss_%d' % seg, 'segments')} | |")
    print(f"| ... RSS after writing them, MB | {fig('data_rss_%d' % seg, 'rss_mb')} | < 100 |")
    print(f"| ... start-up after a clean shutdown, ms | {fig('data_startup_%d' % seg, 'startup_ms')} | |")
    print(f"| ... RSS after that start-up, MB | {fig('data_startup_%d' % seg, 'rss_mb')} | < 100 |")
PY
}

if [ "$SCALE_ONLY" = 1 ]; then
    run_scale
    exit 0
fi

# A CA and a server certificate for the SSL and SASL_SSL scenarios (made here, never
# kept): the broker's key store is the key and the certificate in one PEM file.
if [ "$RUN_SECURITY" = 1 ]; then
    if command -v openssl >/dev/null 2>&1; then
        TLS_DIR="$WORK/tls"
        mkdir -p "$TLS_DIR"
        if openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" \
                -days 2 -subj "/CN=ottla-bench-ca" 2>/dev/null &&
            openssl req -newkey rsa:2048 -nodes -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" \
                -subj "/CN=localhost" 2>/dev/null &&
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$TLS_DIR/ext.cnf" &&
            openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
                -CAcreateserial -out "$TLS_DIR/server.pem" -days 2 -extfile "$TLS_DIR/ext.cnf" 2>/dev/null; then
            cat "$TLS_DIR/server.key" "$TLS_DIR/server.pem" >"$TLS_DIR/keystore.pem"
        else
            echo "    could not make test certificates with openssl: skipping the SSL scenarios" >&2
            TLS_DIR=""
        fi
    else
        echo "    no openssl: skipping the SSL and SASL_SSL scenarios" >&2
    fi
fi

start_time=$(date +%s)
for run in $(seq "$RUNS"); do
    # dd, start-up and the load scenarios (BENCH_ONLY=security skips them; `continue`
    # below still ends this run when the broker does not start)
    if [ "$RUN_BASE" = 1 ]; then
        # --- the machine's page-cache write bandwidth: the ceiling for any broker that
        # stores what it is sent (Kafka and Ottla both write through the page cache)
        say "run $run/$RUNS · machine · page-cache write (dd ${DD_MIB} MiB)"
        # The second dd writes the same bytes again over the file's pages, already in the
        # page cache: the copy alone. Far above the first figure on a VM whose fresh pages
        # cost a hypervisor fault (free page reporting), where the first figure, not the
        # broker, can cap the 1 KiB produce scenario.
        timed_dd "$run" pagecache_write "into a new file" &&
            timed_dd "$run" pagecache_rewrite "over its resident pages" conv=notrunc
        rm -f "$WORK/dd.tmp"

        # --- start-up time, on its own fresh dir and port
        scenario "$run" ottla startup -- startup --bin "$OTTLA"

        # --- a fresh broker for the load scenarios
        DATA="$WORK/data-run$run"
        BLOG="$WORK/broker-run$run.log"
        start_broker "$run" "$DATA" "$BLOG" || continue

        scenario "$run" ottla produce_1k_acks1_8p "$BPID" -- produce --bootstrap "$BOOT" --topic bench-1k-8p \
            --partitions 8 --record-size 1024 --records "$N_1K" --acks 1
        broker_alive && scenario "$run" ottla produce_100b_acksall_1p "$BPID" -- produce --bootstrap "$BOOT" \
            --topic bench-100b-1p --partitions 1 --record-size 100 --records "$N_100B" --acks all
        broker_alive && scenario "$run" ottla fill_1k_1p "$BPID" -- produce --bootstrap "$BOOT" --topic bench-consume \
            --partitions 1 --record-size 1024 --records "$N_CONSUME" --acks 1
        broker_alive && scenario "$run" ottla consume_1k_1p "$BPID" -- consume --bootstrap "$BOOT" --topic bench-consume \
            --partition 0 --records "$N_CONSUME"
        if broker_alive; then
            hwm="$(status_kb "$BPID" VmHWM)"; anon="$(status_kb "$BPID" RssAnon)"; file="$(status_kb "$BPID" RssFile)"
            echo "    broker VmHWM ${hwm:-?} kB, RssAnon ${anon:-?} kB, RssFile ${file:-?} kB" >&2
            emit "$run" ottla memory ",\"result\":{\"vm_hwm_kb\":${hwm:-null},\"rss_anon_kb\":${anon:-null},\"rss_file_kb\":${file:-null}}"
        fi
        broker_alive && scenario "$run" ottla latency_1k_acksall -- produce --bootstrap "$BOOT" --topic bench-latency \
            --partitions 1 --record-size 1024 --records "$LAT_N" --rate "$RATE" --acks all "${SET_LAT[@]}"
        broker_alive && scenario "$run" ottla e2e_1k_acksall -- e2e --bootstrap "$BOOT" --topic bench-e2e \
            --partitions 1 --record-size 1024 --rate "$RATE" --seconds "$E2E_S" --acks all "${SET_LAT[@]}"
        broker_alive && scenario "$run" ottla txn_1k_1000pertxn "$BPID" -- txn --bootstrap "$BOOT" --topic bench-txn \
            --partitions 1 --record-size 1024 --per-txn 1000 --seconds "$TXN_S" --transactional-id "bench-txn-run$run"
        if ! broker_alive; then
            echo "    the broker died during run $run: $(tail -n 3 "$BLOG" | tr '\n' ' ')" >&2
            emit_error "$run" ottla broker "broker process died; log tail: $(tail -n 3 "$BLOG" | tr '\n' ' ')"
        fi
        stop_pid "$BPID"; BPID=""
        log_problems "$run" ottla "$BLOG"
        du -sh "$DATA" 2>/dev/null | awk '{ print "    data written: " $1 }' >&2
        rm -rf "$DATA"
    fi

    # --- the cost of metrics (issue 15): 1 KiB acks=1 produce on two fresh brokers,
    # one serving metrics.listener and scraped every second meanwhile (as Prometheus
    # would), one without; their order alternates between runs so that neither always
    # follows the other's page-cache and disk work
    if [ "$RUN_METRICS" = 1 ]; then
        if [ $((run % 2)) = 1 ]; then order="off on"; else order="on off"; fi
        for mode in $order; do
            DATA="$WORK/data-metrics-$mode-run$run"
            BLOG="$WORK/broker-metrics-$mode-run$run.log"
            saved=("${OVERRIDES[@]}")
            if [ "$mode" = on ]; then
                MPORT="$("$BENCH" free-port)"
                OVERRIDES+=(--override "metrics.listener=http://127.0.0.1:$MPORT/metrics")
            fi
            if start_broker "$run" "$DATA" "$BLOG"; then
                SCRAPER=""
                if [ "$mode" = on ]; then
                    scrape_every_second "$MPORT" "$BPID" "$WORK/scrapes-run$run.txt" &
                    SCRAPER=$!
                fi
                scenario "$run" "metrics_$mode" produce_1k_acks1_8p "$BPID" -- produce --bootstrap "$BOOT" \
                    --topic bench-1k-8p --partitions 8 --record-size 1024 --records "$N_METRICS" --acks 1
                if [ -n "$SCRAPER" ]; then
                    kill "$SCRAPER" 2>/dev/null; wait "$SCRAPER" 2>/dev/null
                    echo "    $(wc -l <"$WORK/scrapes-run$run.txt") scrapes answered during the scenario" >&2
                fi
                stop_pid "$BPID"; BPID=""
                log_problems "$run" "metrics_$mode" "$BLOG"
                rm -rf "$DATA"
                sync
            fi
            OVERRIDES=("${saved[@]}")
        done
    fi

    # --- the cost of the authorizer (issue 13: "Authorization decisions are cached per
    # principal and resource so that checks cost no measurable throughput"): the 1 KiB
    # acks=1 produce on two fresh brokers, in alternating order as for metrics. "on":
    # Kafka's StandardAuthorizer with allow.everyone.if.no.acl.found=false, and the
    # bench client, User:ANONYMOUS on PLAINTEXT and no super user, allowed by real ACLs
    # (topic WRITE, DESCRIBE, CREATE; cluster CREATE, which CreateTopics checks first),
    # so that every request is decided from the ACLs. The pair has no consume (the
    # metrics pair has none), so no READ or group ACL. The ACLs are granted before the
    # scenario by User:admin, the only super user, over a SASL_PLAINTEXT (PLAIN)
    # listener: with deny-by-default nobody else may create the first ones. The tool is
    # `ottla-bench create-acls` (crates/bench/src/acl.rs: a raw-protocol CreateAcls),
    # because the rdkafka crate has no ACL admin call (librdkafka's is reachable only
    # through unsafe FFI, which the workspace forbids) and bench.sh uses no Python
    # client. It then waits until DescribeAcls lists them all: a quiet check (a probe
    # as User:ANONYMOUS would log denials while they are not applied), and Ottla's
    # broker hands ACL changes to its authorizer before DescribeAcls can see them.
    # "off": the same listeners and SASL settings, no authorizer.
    # A "Denied" line in the "on" broker's log means the ACLs were incomplete and its
    # figure is not the cost of allowed checks: it is recorded as a problem.
    if [ "$RUN_ACL" = 1 ]; then
        if [ $((run % 2)) = 1 ]; then order="off on"; else order="on off"; fi
        for mode in $order; do
            DATA="$WORK/data-acl-$mode-run$run"
            BLOG="$WORK/broker-acl-$mode-run$run.log"
            saved=("${OVERRIDES[@]}")
            ADMIN_PORT="$("$BENCH" free-port)"
            EXTRA_LISTENERS="SASL_PLAINTEXT://127.0.0.1:$ADMIN_PORT"
            OVERRIDES+=(--override "sasl.enabled.mechanisms=PLAIN"
                --override "listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_admin=\"bench-admin-secret\";")
            if [ "$mode" = on ]; then
                OVERRIDES+=(--override "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
                    --override "allow.everyone.if.no.acl.found=false" --override "super.users=User:admin")
            fi
            if start_broker "$run" "$DATA" "$BLOG"; then
                acls_ok=1
                if [ "$mode" = on ]; then
                    "$BENCH" create-acls --bootstrap "127.0.0.1:$ADMIN_PORT" --sasl-plain admin:bench-admin-secret \
                        --principal User:ANONYMOUS --acl topic:bench-1k-8p:write,describe,create \
                        --acl cluster:kafka-cluster:create --timeout-s 60 \
                        >/dev/null 2> >(sed 's/^/    /' >&2) || {
                        acls_ok=0
                        emit_error "$run" acl_on create-acls "could not grant User:ANONYMOUS its ACLs; scenario skipped"
                    }
                fi
                [ "$acls_ok" = 1 ] && scenario "$run" "acl_$mode" produce_1k_acks1_8p "$BPID" -- produce --bootstrap "$BOOT" \
                    --topic bench-1k-8p --partitions 8 --record-size 1024 --records "$N_ACL" --acks 1
                stop_pid "$BPID"; BPID=""
                log_problems "$run" "acl_$mode" "$BLOG"
                denied="$(grep -c ' is Denied operation ' "$BLOG" 2>/dev/null)" || denied=0
                if [ "${denied:-0}" -gt 0 ]; then
                    first="$(grep -m1 ' is Denied operation ' "$BLOG" | cut -c1-300)"
                    echo "    $BLOG: $denied authorizer denial(s), first: $first" >&2
                    emit_error "$run" "acl_$mode" denials "$denied denial(s) in the broker log (ACLs incomplete, figure not comparable); first: $first"
                fi
                rm -rf "$DATA"
                sync
            fi
            EXTRA_LISTENERS=""
            OVERRIDES=("${saved[@]}")
        done
    fi

    # --- the cost of TLS and SASL (issue 13): one fresh broker with PLAINTEXT, SSL and
    # SASL_SSL (PLAIN) listeners; the 1 KiB produce and the consume over each, on the
    # same broker, so that the protocols differ and nothing else
    if [ "$RUN_SECURITY" = 1 ] && [ -n "$TLS_DIR" ]; then
        DATA="$WORK/data-security-run$run"
        BLOG="$WORK/broker-security-run$run.log"
        saved=("${OVERRIDES[@]}")
        SSL_PORT="$("$BENCH" free-port)"; SASL_PORT="$("$BENCH" free-port)"
        SEC_LISTENERS="SSL://127.0.0.1:$SSL_PORT,SASL_SSL://127.0.0.1:$SASL_PORT"
        OVERRIDES+=(--override "ssl.keystore.type=PEM" --override "ssl.keystore.location=$TLS_DIR/keystore.pem"
            --override "sasl.enabled.mechanisms=PLAIN"
            --override "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_bench=\"bench-secret\";")
        EXTRA_LISTENERS="$SEC_LISTENERS"
        if start_broker "$run" "$DATA" "$BLOG"; then
            for proto in plaintext ssl sasl_ssl; do
                case "$proto" in
                    plaintext) boot="$BOOT"; sec=() ;;
                    ssl) boot="127.0.0.1:$SSL_PORT"; sec=(--set security.protocol=SSL --set "ssl.ca.location=$TLS_DIR/ca.pem") ;;
                    sasl_ssl) boot="127.0.0.1:$SASL_PORT"; sec=(--set security.protocol=SASL_SSL --set "ssl.ca.location=$TLS_DIR/ca.pem"
                        --set sasl.mechanisms=PLAIN --set sasl.username=bench --set sasl.password=bench-secret) ;;
                esac
                for t in "bench-sec-$proto-8p:8" "bench-sec-$proto-consume:1"; do
                    "$BENCH" create-topic --bootstrap "$BOOT" --topic "${t%%:*}" --partitions "${t##*:}" --replication-factor 1 \
                        --timeout-s 60 >/dev/null 2> >(sed 's/^/    /' >&2) ||
                        emit_error "$run" "sec_$proto" create-topic "could not create ${t%%:*}"
                done
                broker_alive && scenario "$run" "sec_$proto" produce_1k_acks1_8p "$BPID" -- produce --bootstrap "$boot" \
                    --topic "bench-sec-$proto-8p" --partitions 8 --record-size 1024 --records "$N_1K" --acks 1 --no-create "${sec[@]}"
                broker_alive && scenario "$run" "sec_$proto" fill_1k_1p "$BPID" -- produce --bootstrap "$boot" \
                    --topic "bench-sec-$proto-consume" --partitions 1 --record-size 1024 --records "$N_CONSUME" --acks 1 --no-create "${sec[@]}"
                broker_alive && scenario "$run" "sec_$proto" consume_1k_1p "$BPID" -- consume --bootstrap "$boot" \
                    --topic "bench-sec-$proto-consume" --partition 0 --records "$N_CONSUME" "${sec[@]}"
            done
            stop_pid "$BPID"; BPID=""
            log_problems "$run" security "$BLOG"
            rm -rf "$DATA"
        fi
        EXTRA_LISTENERS=""
        OVERRIDES=("${saved[@]}")
    fi

    # --- rebalance (issue 14): a group of REB_MEMBERS librdkafka consumers over a topic
    # of REB_PARTITIONS partitions; once it is stable, one member closes (a clean leave)
    # and `ottla-bench rebalance` times the close call to the last assignment change of
    # the others, once they own every partition exactly once with no rebalance callback
    # for REB_SETTLE_S (not counted); REB_REPEATS fresh groups per broker, each leave
    # after a random wait below REB_JITTER_S so that it falls at a random point of the
    # members' heartbeat cycles (see crates/bench/src/rebalance.rs). One fresh broker per
    # protocol, broker and client settings at their defaults: classic with the
    # cooperative-sticky assignor (incremental and sticky like KIP-848's uniform, so the
    # protocols are compared, not eager against incremental), client heartbeat 3 s;
    # KIP-848 with the broker's default assignor (uniform) and heartbeat interval (5 s);
    # consumer_hb1s the same with group.consumer.heartbeat.interval.ms=1000 (and its
    # min) on the broker.
    if [ "$RUN_REBALANCE" = 1 ]; then
        for variant in $REB_VARIANTS; do
            DATA="$WORK/data-rebalance-$variant-run$run"
            BLOG="$WORK/broker-rebalance-$variant-run$run.log"
            saved=("${OVERRIDES[@]}")
            OVERRIDES+=("${REB_BROKER[@]}")
            case "$variant" in
                classic) proto=classic ;;
                consumer) proto=consumer ;;
                consumer_hb1s) proto=consumer
                    OVERRIDES+=(--override group.consumer.heartbeat.interval.ms=1000
                        --override group.consumer.min.heartbeat.interval.ms=1000) ;;
            esac
            if start_broker "$run" "$DATA" "$BLOG"; then
                scenario "$run" ottla "rebalance_$variant" "$BPID" -- rebalance --bootstrap "$BOOT" \
                    --protocol "$proto" --members "$REB_MEMBERS" --partitions "$REB_PARTITIONS" \
                    --topic bench-rebalance --repeats "$REB_REPEATS" --settle-s "$REB_SETTLE_S" --jitter-s "$REB_JITTER_S"
                if ! broker_alive; then
                    emit_error "$run" "rebalance_$variant" broker "broker process died; log tail: $(tail -n 3 "$BLOG" | tr '\n' ' ')"
                fi
                stop_pid "$BPID"; BPID=""
                log_problems "$run" "rebalance_$variant" "$BLOG"
                rm -rf "$DATA"
            fi
            OVERRIDES=("${saved[@]}")
        done
    fi

    # --- the same produce scenarios against the null broker
    if [ "$RUN_NULL" = 1 ]; then
        NLOG="$WORK/null-run$run.log"
        PORT="$("$BENCH" free-port)"
        NBOOT="127.0.0.1:$PORT"
        "$BENCH" null-broker --listen "$NBOOT" >"$WORK/null-run$run.json" 2>"$NLOG" &
        NPID=$!
        if "$BENCH" wait --bootstrap "$NBOOT" --timeout-s 30 >/dev/null; then
            scenario "$run" null produce_1k_acks1_8p -- produce --bootstrap "$NBOOT" --topic bench-1k-8p \
                --partitions 8 --record-size 1024 --records "$N_1K" --acks 1
            scenario "$run" null produce_100b_acksall_1p -- produce --bootstrap "$NBOOT" --topic bench-100b-1p \
                --partitions 1 --record-size 100 --records "$N_100B" --acks all
            scenario "$run" null latency_1k_acksall -- produce --bootstrap "$NBOOT" --topic bench-latency \
                --partitions 1 --record-size 1024 --records "$LAT_N" --rate "$RATE" --acks all "${SET_LAT[@]}"
        else
            emit_error "$run" null broker "null broker did not answer: $(tail -n 3 "$NLOG" | tr '\n' ' ')"
        fi
        stop_pid "$NPID"; NPID=""
        log_problems "$run" null "$NLOG"
    fi

    # --- the cost of replication: 1 KiB, acks=all, 8 partitions, on a fresh single
    # broker (replication factor 1), then on a fresh three-node cluster (factor 3)
    if [ "$RUN_CLUSTER" = 1 ]; then
        DATA="$WORK/data-repl-run$run"
        BLOG="$WORK/broker-repl-run$run.log"
        if start_broker "$run" "$DATA" "$BLOG"; then
            for t in bench-1k-8p-rf1 bench-latency-8p-rf1; do
                "$BENCH" create-topic --bootstrap "$BOOT" --topic "$t" --partitions 8 --replication-factor 1 \
                    --timeout-s 60 >/dev/null 2> >(sed 's/^/    /' >&2) ||
                    emit_error "$run" ottla create-topic "could not create $t (8 partitions, RF 1)"
            done
            broker_alive && scenario "$run" ottla produce_1k_acksall_8p "$BPID" -- produce --bootstrap "$BOOT" \
                --topic bench-1k-8p-rf1 --partitions 8 --record-size 1024 --records "$N_REPL" --acks all
            broker_alive && scenario "$run" ottla latency_1k_acksall_8p -- produce --bootstrap "$BOOT" \
                --topic bench-latency-8p-rf1 --partitions 8 --record-size 1024 --records "$LAT_N" --rate "$RATE" \
                --acks all "${SET_LAT[@]}"
            if ! broker_alive; then
                emit_error "$run" ottla broker "broker process died; log tail: $(tail -n 3 "$BLOG" | tr '\n' ' ')"
            fi
            stop_pid "$BPID"; BPID=""
            log_problems "$run" ottla "$BLOG"
            rm -rf "$DATA"
        fi

        if start_cluster "$run"; then
            # Creating a replication-factor-3 topic succeeds only once three brokers are
            # registered; create-topic retries until then (60 s at most) and waits for
            # every partition's leader and full ISR.
            topics_ok=1
            for t in bench-1k-8p-rf3 bench-latency-8p-rf3; do
                if ! "$BENCH" create-topic --bootstrap "$CBOOT" --topic "$t" --partitions 8 --replication-factor 3 \
                    --timeout-s 60 >/dev/null 2> >(sed 's/^/    /' >&2); then
                    emit_error "$run" cluster create-topic "could not create $t (8 partitions, RF 3); $(cluster_tail)"
                    topics_ok=0
                fi
            done
            CPU_PIDS="$(IFS=,; echo "${CPIDS[*]}")"
            if [ "$topics_ok" = 1 ]; then
                cluster_alive && scenario "$run" cluster produce_1k_acksall_8p "$CPU_PIDS" -- produce \
                    --bootstrap "$CBOOT" --topic bench-1k-8p-rf3 --partitions 8 --replication-factor 3 \
                    --record-size 1024 --records "$N_REPL" --acks all --no-create
                cluster_alive && scenario "$run" cluster latency_1k_acksall_8p -- produce --bootstrap "$CBOOT" \
                    --topic bench-latency-8p-rf3 --partitions 8 --replication-factor 3 --record-size 1024 \
                    --records "$LAT_N" --rate "$RATE" --acks all --no-create "${SET_LAT[@]}"
            fi
            if ! cluster_alive; then
                echo "    a cluster node died during run $run: $(cluster_tail)" >&2
                emit_error "$run" cluster node "a node exited during the run; $(cluster_tail)"
            fi
        fi
        stop_cluster "$run"
        for n in 1 2 3; do
            [ -f "$CDIR/node-$n.log" ] && log_problems "$run" cluster "$CDIR/node-$n.log"
        done
        du -sh "$CDIR" 2>/dev/null | awk '{ print "    cluster data written: " $1 }' >&2
        [ -n "$CDIR" ] && rm -rf "$CDIR"/node-[123]
    fi
done
elapsed=$(( $(date +%s) - start_time ))

# ---------------------------------------------------------------------------
model="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)"
ram="$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD 2>/dev/null || commit="$commit (with local changes)"
echo
echo "## Ottla benchmark"
echo
echo "Machine: $(nproc) CPU(s), ${model:-unknown CPU}, ${ram:-? GiB} RAM; $(uname -sr); $(date -u '+%Y-%m-%d %H:%M UTC')."
echo "Ottla $commit; client librdkafka (rdkafka crate, bundled); $RUNS run(s) in ${elapsed}s$([ "$SMOKE" = 1 ] && echo ', SMOKE RUN (tiny sizes, figures meaningless)')."
if [ "$RUN_BASE" = 1 ]; then
    echo "Sizes: produce 1 KiB × $N_1K, produce 100 B × $N_100B, consume 1 KiB × $N_CONSUME; latency $RATE msg/s for ${LAT_S}s and ${E2E_S}s with linger.ms=$LINGER (otherwise librdkafka defaults); transactional 1 KiB, 1,000 per transaction, for ${TXN_S}s (librdkafka defaults; no Kafka 4.1 reference, Kafka could not be run here); dd ${DD_MIB} MiB."
else
    case "${BENCH_ONLY:-}" in
        acl) echo "BENCH_ONLY=acl: only the authorizer on/off pair ran (the other rows are empty)." ;;
        rebalance) echo "BENCH_ONLY=rebalance: only the rebalance scenario ran (the other rows are empty)." ;;
        *) echo "BENCH_ONLY=${BENCH_ONLY:-}: only the PLAINTEXT / SSL / SASL_SSL scenarios$([ "$RUN_ACL" = 1 ] && echo ' and the authorizer pair') ran (the other rows are empty)." ;;
    esac
fi
[ "$RUN_SECURITY" = 1 ] && echo "Security: one broker with PLAINTEXT, SSL and SASL_SSL (PLAIN) listeners (rustls, RSA 2048 certificate); over each, produce 1 KiB × $N_1K (acks=1, 8 partitions), fill and consume 1 KiB × $N_CONSUME (1 partition); client librdkafka with the system OpenSSL (ottla-bench's \`tls\` feature$(command -v openssl >/dev/null 2>&1 && printf ', %s' "$(openssl version | cut -d' ' -f1-2)"))."
[ "$RUN_ACL" = 1 ] && echo "Authorizer: produce 1 KiB × $N_ACL (acks=1, 8 partitions) on two fresh brokers in alternating order, one with StandardAuthorizer, allow.everyone.if.no.acl.found=false and the client (User:ANONYMOUS, PLAINTEXT) allowed by ACLs (topic WRITE, DESCRIBE, CREATE; cluster CREATE), one without."
if [ "$RUN_REBALANCE" = 1 ]; then
    echo "Rebalance: $REB_MEMBERS members, one topic of $REB_PARTITIONS partitions, $REB_REPEATS fresh group(s) per broker and run, one fresh broker per row ($REB_VARIANTS); one member closes (clean leave) at a random moment up to ${REB_JITTER_S}s after the group is stable, then the time to the others' last assignment change, with a ${REB_SETTLE_S}s settle window (not counted). Client: librdkafka defaults (classic: session.timeout.ms=45000, heartbeat.interval.ms=3000, partition.assignment.strategy=cooperative-sticky; KIP-848: group.protocol=consumer, the broker's assignor), enable.auto.commit=false. Broker: defaults, group.initial.rebalance.delay.ms=3000 (classic), group.consumer.heartbeat.interval.ms=5000 (KIP-848)$(case " $REB_VARIANTS " in *" consumer_hb1s "*) printf '; the 1 s row overrides group.consumer.heartbeat.interval.ms and group.consumer.min.heartbeat.interval.ms to 1000' ;; esac)$([ "$SMOKE" = 1 ] && printf '; smoke: group.initial.rebalance.delay.ms=0'). No Kafka reference (Kafka cannot be run here)."
fi
[ "$RUN_CLUSTER" = 1 ] && echo "Replication: produce 1 KiB × $N_REPL and latency $RATE msg/s for ${LAT_S}s, acks=all, 8 partitions, on one fresh broker (RF 1) and on a fresh three-node cluster on this machine (RF 3, min.insync.replicas=2, config/cluster.properties); Kafka 4.1 was not measured for these (no Kafka cluster here)."
echo
"$BENCH" report --results "$RESULTS" || { echo "(report failed; raw results in $RESULTS)"; [ "$SMOKE" = 1 ] && exit 1; }
# A full run never fails on a figure; a smoke run exists to check the harness, so a
# scenario that failed fails it, and so do WARN/ERROR lines in a server's log.
if [ "$SMOKE" = 1 ] && grep -q '"error"' "$RESULTS"; then
    echo "bench.sh --smoke: some scenarios failed (see the table)" >&2
    exit 1
fi
exit 0
