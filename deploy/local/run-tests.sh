#!/usr/bin/env bash
# Every check bordermon has, on real services: the one command CI runs (.ci/run calls it).
#
#   deploy/local/run-tests.sh              lint, types, unit, contract and integration tests,
#                                          then the short chaos suite (tests/chaos/run.py)
#   deploy/local/run-tests.sh -k replay    extra arguments go to pytest (and skip the chaos run)
#
# It installs what is missing (a .venv with bordermon; Kafka jars through Maven; redis-server
# and prometheus through apt) and starts the local stack unless BORDERMON_KAFKA_BOOTSTRAP and
# BORDERMON_REDIS_URL point at services already running. Under CI=true a service that cannot
# be reached fails the run instead of skipping tests. tests/integration/test_security.py starts
# its own secure stack (`bordermon stack up --secure`: TLS, SCRAM, ACLs) in a private run folder
# on free ports, reusing the plaintext stack's Kafka jars, and stops it at the end.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$repo_root"

echo "== lint and types" >&2
ruff check services tests deploy/grafana deploy/local/devstack
ruff format --check services tests deploy/grafana deploy/local/devstack
mypy

if [ -z "${BORDERMON_KAFKA_BOOTSTRAP:-}" ] || [ -z "${BORDERMON_REDIS_URL:-}" ]; then
  echo "== local stack" >&2
  bordermon stack up
fi

echo "== tests" >&2
python -m pytest "$@"

# SPEC §6 under faults (workers killed and paused, Redis and Kafka killed, poison messages), on a
# private stack of its own, with an exact reconciliation at the end. About two minutes.
if [ "$#" -eq 0 ] && [ "${BORDERMON_SKIP_CHAOS:-}" != "1" ]; then
  echo "== chaos suite (short)" >&2
  python tests/chaos/run.py --short
fi
