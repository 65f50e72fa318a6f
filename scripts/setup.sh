#!/usr/bin/env bash
# Create .venv and install opsctl with its dev tools; re-install only when pyproject.toml changes.
# Sourced by scripts/run.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: opsctl needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.opsctl-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x .venv/bin/opsctl ]; then
  echo "setup: installing opsctl and its dependencies into .venv" >&2
  # This machine's pip configuration names local indexes that may be absent; pip warns about
  # each one, which buries real errors, so those lines alone are filtered out.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$want" > "$stamp"
fi
