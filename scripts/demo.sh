#!/usr/bin/env bash
# demo.sh: `make demo`. Installs what is missing, builds and installs squaresync, starts a
# throwaway cluster (as the postgres OS user) that preloads it, starts the bundled fake Square with
# its demo dataset, runs a foundation sync, a seller's day of changes, an incremental sync, and
# prints squaresync.sync_state. Everything is stopped and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make -s -j2
make -s install
exec /usr/bin/python3 scripts/demo.py
