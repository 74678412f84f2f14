#!/bin/sh
# Ottla's container entrypoint: configuration from the environment, the way Apache
# Kafka's image takes it. Every OTTLA_<NAME> variable becomes `--override <key>=<value>`
# where <key> is <NAME> lower-cased with "___" read as "-", "__" as "_" and "_" as ".":
#   OTTLA_LOG_RETENTION_HOURS=24          -> log.retention.hours=24
#   OTTLA_METRICS_LISTENER=http://:9308   -> metrics.listener=http://:9308
# Not mapped: OTTLA_BIN (the binary), OTTLA_CONFIG_FILE (the properties file, default
# /etc/ottla/server.properties) and OTTLA_FAULT_* (test fault injection). The image's
# own defaults come first (data in /var/lib/ottla/data, clients on 0.0.0.0:9092), the
# environment next, arguments given to `docker run` last: a later value wins.
set -eu

bin="${OTTLA_BIN:-/usr/local/bin/ottla}"
config="${OTTLA_CONFIG_FILE:-/etc/ottla/server.properties}"

# The key an OTTLA_ variable names (see above).
config_key() {
    printf '%s' "${1#OTTLA_}" | tr 'A-Z' 'a-z' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g'
}

overrides=$(mktemp)
trap 'rm -f "$overrides"' EXIT
# One variable per line (values with newlines are not supported), sorted so the
# resulting command is the same whatever the environment's order.
env | LC_ALL=C sort | while IFS= read -r line; do
    name=${line%%=*}
    value=${line#*=}
    case "$name" in
        OTTLA_BIN | OTTLA_CONFIG_FILE | OTTLA_FAULT_*) continue ;;
        OTTLA_?*) printf '%s=%s\n' "$(config_key "$name")" "$value" >>"$overrides" ;;
    esac
done

# Arguments: the image's defaults, then the environment, then what `docker run` gave
# (a later --override of a key wins). Built in place to keep every argument intact:
# append the environment's, move the original arguments behind them, prepend defaults.
given=$#
while IFS= read -r kv; do
    set -- "$@" --override "$kv"
done <"$overrides"
i=0
while [ "$i" -lt "$given" ]; do
    arg=$1
    shift
    set -- "$@" "$arg"
    i=$((i + 1))
done
set -- --override "log.dirs=/var/lib/ottla/data" \
    --override "listeners=PLAINTEXT://0.0.0.0:9092" \
    "$@"
rm -f "$overrides"
trap - EXIT
echo "ottla-entrypoint: $bin serve --config $config $*" >&2
exec "$bin" serve --config "$config" "$@"
