#!/usr/bin/env bash
# Everything CI checks, in CI's order: services, set-up, lint, types, the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/services.sh
source scripts/setup.sh
echo "== ruff" >&2
.venv/bin/ruff check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== pytest" >&2
# Two workers: the suite is mostly real processes and sockets waiting on each other, and
# every test has its own database, Redis prefix, ports and data directory.
exec .venv/bin/pytest -n "${PYTEST_WORKERS:-2}" "$@"
