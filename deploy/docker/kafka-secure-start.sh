#!/usr/bin/env bash
# Entrypoint of the secure Kafka (docker-compose.secure.yml), in the apache/kafka image: on the
# first start, format the storage with the SCRAM users (admin, scanner, worker, subscriber) of
# the secrets volume, then run the image's own start script (/etc/kafka/docker/run).
#
# The image formats the storage itself, but without --add-scram; it tolerates a storage that is
# already formatted (as on every restart), so formatting it here first is enough. The format
# needs the broker's whole configuration: the secret part (/mnt/shared/config/server.properties,
# made by secure-secrets.sh) followed by the KAFKA_* variables turned into properties the way
# the image does it (KAFKA_ dropped, lower case, `_` -> `.`, `___` -> `-`, `__` -> `_`).
# --add-scram gets salted hashes (scram-args), never a password.
set -euo pipefail

CONFIG_DIR=/mnt/shared/config
DATA_DIR=${KAFKA_LOG_DIRS:-/var/lib/kafka/data}

if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
    properties=$(mktemp)
    trap 'rm -f "$properties"' EXIT
    cat "$CONFIG_DIR/server.properties" >"$properties"
    while IFS= read -r line; do
        name=${line%%=*}
        value=${line#*=}
        case "$name" in
            KAFKA_VERSION | KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_LOG4J_* | KAFKA_JMX_* | \
                KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_GC_LOG_OPTS | KAFKA_TOOLS_LOG4J_LOGLEVEL) ;;
            KAFKA_*)
                key=$(printf '%s' "${name#KAFKA_}" | tr '[:upper:]' '[:lower:]' |
                    sed -e 's/_/./g' -e 's/\.\.\./-/g' -e 's/\.\./_/g')
                printf '\n%s=%s' "$key" "$value" >>"$properties"
                ;;
        esac
    done < <(env)
    echo >>"$properties"
    scram=()
    while IFS= read -r value; do
        [[ -n "$value" ]] && scram+=(--add-scram "$value")
    done <"$CONFIG_DIR/scram-args"
    echo "bordermon: formatting $DATA_DIR with ${#scram[@]} SCRAM arguments" >&2
    /opt/kafka/bin/kafka-storage.sh format --cluster-id "$CLUSTER_ID" --config "$properties" \
        "${scram[@]}"
    rm -f "$properties"
fi

exec /etc/kafka/docker/run "$@"
