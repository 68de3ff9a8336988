#!/usr/bin/env bash
# The project's lint and type checks, as `make test` runs them before the tests:
#   ruff (lint + format check) on every Python folder, mypy on the three packages.
# `scripts/lint.sh --fix` applies ruff's safe fixes and formats instead of checking.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PATHS=(hitsong registry dashboard tests benchmarks tools)
if [ "${1:-}" = "--fix" ]; then
    "$BIN/ruff" check --fix "${PATHS[@]}"
    "$BIN/ruff" format "${PATHS[@]}"
else
    "$BIN/ruff" check "${PATHS[@]}"
    "$BIN/ruff" format --check "${PATHS[@]}"
fi
"$BIN/mypy"
