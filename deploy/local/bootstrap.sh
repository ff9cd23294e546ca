# Sourced by run-demo.sh and run-tests.sh: makes .venv with bordermon installed, once, with the
# local dev stack (deploy/local/devstack: the `bordermon stack` command, not part of the product).
# Safe to repeat: it reinstalls only when either pyproject.toml changed since the last install.
# Needs: Python >= 3.11 (python3.11 or python3), and network access to PyPI the first time.

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv="$repo_root/.venv"

find_python() {
  for candidate in "${BORDERMON_PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if [ ! -x "$venv/bin/python" ]; then
  python=$(find_python) || {
    echo "bordermon: Python 3.11 or newer is needed (apt-get install python3 python3-venv)" >&2
    exit 2
  }
  echo "bootstrap: creating $venv with $($python --version)" >&2
  "$python" -m venv "$venv" || {
    echo "bordermon: could not create a virtualenv; on Debian: apt-get install python3-venv" >&2
    exit 2
  }
fi

stamp="$venv/.bordermon-installed"
devstack="$repo_root/deploy/local/devstack"
if [ ! -f "$stamp" ] || [ "$repo_root/pyproject.toml" -nt "$stamp" ] ||
  [ "$devstack/pyproject.toml" -nt "$stamp" ] ||
  ! "$venv/bin/python" -c 'import importlib.metadata as m; m.distribution("bordermon-devstack")' \
    2>/dev/null; then
  echo "bootstrap: installing bordermon and its dev tools into .venv (first run takes a minute)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  # Both editable, in one run: the dev stack imports this checkout's bordermon.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e "$repo_root[dev]" -e "$devstack" >&2
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
