#!/usr/bin/env bash
# The main job on embedded defaults: set up .venv, then run the whole platform on SQLite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
exec .venv/bin/opsctl up "$@"
