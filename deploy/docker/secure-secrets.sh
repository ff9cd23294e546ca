#!/usr/bin/env bash
# Secrets of the secure Docker stack (docker-compose.secure.yml), run by its one-shot `secrets`
# service in the bordermon image, as root, on the `secrets` volume (mounted at /secrets):
#
#   secure-secrets.sh                 make what is missing, then hand out the copies (default)
#   secure-secrets.sh rotate USER     a new password for USER (Kafka users: set on the cluster)
#   secure-secrets.sh add-user USER   a new Kafka user (e.g. scanner-aktau) with its own folder
#
# The passwords come from bordermon.admin.credentials (the same generator, SCRAM hashes and Redis ACL
# file as `bordermon stack up --secure`); TLS is the same openssl recipe, with the compose host
# names in the certificate. Nothing secret is ever printed. Layout of the volume:
#
#   secrets/<name>.password   the masters (root, 0600 in 0700): admin scanner worker subscriber
#                             (Kafka), bordermon redis-admin (Redis), keystore, added users
#   tls/                      the CA (ca.pem, ca.key) and the server certificate (root only)
#   kafka/                    Kafka's /mnt/shared/config (uid KAFKA_UID): server.properties
#                             with the keystore and admin passwords, server.p12, ca.pem,
#                             scram-args (salted hashes for `kafka-storage format --add-scram`),
#                             admin-client.properties (its healthcheck)
#   redis/                    Redis's (uid REDIS_UID): server.pem, server.key, ca.pem, users.acl
#                             (SHA-256 hashes only)
#   client-<user>/            one per Kafka user (uid CLIENT_UID): kafka.password, ca.pem, and
#                             for worker redis.password; each service mounts only its own
#
# Every file is mode 0600 and every folder 0700, owned by the one user that reads it.
set -euo pipefail
umask 077

OUT=${SECRETS_DIR:-/secrets}
KAFKA_UID=${KAFKA_UID:-1000}   # appuser in apache/kafka
REDIS_UID=${REDIS_UID:-999}    # redis in the redis image (redis-server drops to it)
CLIENT_UID=${CLIENT_UID:-10001} # bordermon in deploy/docker/Dockerfile
NAME_PATTERN='^[A-Za-z0-9._-]{1,128}$'
NOT_KAFKA_USERS=" bordermon redis-admin keystore "

say() { echo "secrets: $*" >&2; }

master() { echo "$OUT/secrets/$1.password"; }

make_passwords() {
    python - "$OUT" <<'EOF'
import sys
from pathlib import Path

from bordermon.admin.credentials import ensure_secrets

ensure_secrets(Path(sys.argv[1]))
EOF
}

make_tls() {
    local tls="$OUT/tls"
    if [[ -s "$tls/ca.pem" && -s "$tls/server.p12" ]]; then
        return
    fi
    say "making a CA and the server certificate (kafka, redis, localhost, 127.0.0.1)"
    mkdir -p "$tls"
    chmod 700 "$tls"
    cat >"$tls/server.ext" <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:kafka,DNS:redis,DNS:localhost,IP:127.0.0.1
EOF
    {
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
            -keyout "$tls/ca.key" -out "$tls/ca.pem" -subj /CN=bordermon-local-CA \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        # CN bordermon-local: the broker's principal on the controller listener (super user).
        openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$tls/server.key" \
            -out "$tls/server.csr" -subj /CN=bordermon-local
        openssl x509 -req -sha256 -days 825 -CAcreateserial -in "$tls/server.csr" \
            -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -out "$tls/server.pem" -extfile "$tls/server.ext"
        openssl pkcs12 -export -in "$tls/server.pem" -inkey "$tls/server.key" \
            -certfile "$tls/ca.pem" -name server -out "$tls/server.p12" \
            -passout "file:$(master keystore)"
    } >"$tls/openssl.log" 2>&1 || {
        say "openssl failed; see $tls/openssl.log"
        exit 1
    }
    chmod 600 "$tls"/*
}

kafka_users() {
    local file name
    for file in "$OUT"/secrets/*.password; do
        name=$(basename "$file" .password)
        [[ "$NOT_KAFKA_USERS" == *" $name "* ]] || echo "$name"
    done
}

# Render the files that hold passwords (from the masters, by bordermon.admin.credentials).
render() {
    mkdir -p "$OUT/kafka" "$OUT/redis"
    python - "$OUT" <<'EOF'
import os
import sys
from pathlib import Path

from bordermon.admin.credentials import kafka_format_args, read_password, redis_acl

out = Path(sys.argv[1])


def private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


keystore = read_password(out, "keystore")
admin = read_password(out, "admin")
jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required"
# The secret part of Kafka's configuration; the rest is in docker-compose.secure.yml. The image
# copies this file (its /mnt/shared/config/server.properties) and appends the KAFKA_* variables.
private(
    out / "kafka" / "server.properties",
    "# Made by deploy/docker/secure-secrets.sh: the passwords of the broker's configuration.\n"
    f"ssl.keystore.password={keystore}\n"
    f"ssl.key.password={keystore}\n"
    f'listener.name.client.scram-sha-512.sasl.jaas.config={jaas} username="admin"'
    f' password="{admin}";\n',
)
private(
    out / "kafka" / "admin-client.properties",
    "security.protocol=SASL_SSL\n"
    "sasl.mechanism=SCRAM-SHA-512\n"
    f'sasl.jaas.config={jaas} username="admin" password="{admin}";\n'
    "ssl.truststore.type=PEM\n"
    "ssl.truststore.location=/mnt/shared/config/ca.pem\n",
)
# One `--add-scram` value a line: salted hashes, never the passwords.
args = kafka_format_args(out)
private(out / "kafka" / "scram-args", "".join(f"{value}\n" for value in args[1::2]))
private(out / "redis" / "users.acl", redis_acl(out))
EOF
}

# Copy each consumer's files into its folder and give the folder to the consumer's uid.
hand_out() {
    local user dir
    install -m 600 "$OUT/tls/ca.pem" "$OUT/tls/server.p12" "$OUT/kafka/"
    install -m 600 "$OUT/tls/ca.pem" "$OUT/tls/server.pem" "$OUT/tls/server.key" "$OUT/redis/"
    chown -R "$KAFKA_UID:$KAFKA_UID" "$OUT/kafka"
    chown -R "$REDIS_UID:$REDIS_UID" "$OUT/redis"
    for user in $(kafka_users); do
        dir="$OUT/client-$user"
        mkdir -p "$dir"
        install -m 600 "$(master "$user")" "$dir/kafka.password"
        install -m 600 "$OUT/tls/ca.pem" "$dir/ca.pem"
        if [[ "$user" == worker ]]; then
            install -m 600 "$(master bordermon)" "$dir/redis.password"
        fi
        chown -R "$CLIENT_UID:$CLIENT_UID" "$dir"
    done
    chmod 700 "$OUT" "$OUT"/secrets "$OUT"/tls "$OUT"/kafka "$OUT"/redis "$OUT"/client-*
    chown root:root "$OUT" "$OUT/secrets" "$OUT/tls"
}

# A new password for a Kafka user is set on the cluster (as admin, with the current admin
# password) before it replaces the master, so a failure changes nothing.
set_on_cluster() {
    local user=$1 file=$2
    if [[ "$NOT_KAFKA_USERS" == *" $user "* ]]; then
        return
    fi
    bordermon users set-password "$user" --password-file "$file"
}

new_password() {
    local user=$1 exists=$2
    [[ "$user" =~ $NAME_PATTERN ]] || {
        say "$user is not a user name (letters, digits, '.', '_', '-')"
        exit 2
    }
    if [[ "$user" == keystore ]]; then
        say "the keystore password goes with the certificate: remove the volume to renew both"
        exit 2
    fi
    local file
    file=$(master "$user")
    if [[ "$exists" == yes && ! -s "$file" ]]; then
        say "no user $user (add one with: add-user $user)"
        exit 2
    fi
    if [[ "$exists" == no && -e "$file" ]]; then
        say "user $user exists (rotate its password with: rotate $user)"
        exit 2
    fi
    python -c 'import secrets, sys; print(secrets.token_urlsafe(32))' >"$file.new"
    chmod 600 "$file.new"
    set_on_cluster "$user" "$file.new" || {
        rm -f "$file.new"
        say "the cluster refused the new password of $user; nothing changed"
        exit 1
    }
    mv "$file.new" "$file"
}

case "${1:-init}" in
    init)
        make_passwords
        make_tls
        render
        hand_out
        say "ready in the secrets volume (never printed)"
        ;;
    rotate | add-user)
        [[ $# -eq 2 ]] || {
            say "usage: $0 $1 USER"
            exit 2
        }
        make_passwords
        new_password "$2" "$([[ $1 == rotate ]] && echo yes || echo no)"
        render
        hand_out
        case "$2" in
            admin) say "admin rotated: restart kafka and topics" ;;
            bordermon | redis-admin) say "$2 rotated: restart redis and worker" ;;
            *) say "$2 set on the cluster: (re)start the services that log in as $2" ;;
        esac
        ;;
    *)
        say "usage: $0 [init | rotate USER | add-user USER]"
        exit 2
        ;;
esac
