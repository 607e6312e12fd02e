#!/usr/bin/env bash
# test.sh: builds and runs every test layer, then prints one line "N passed, N failed" counting them
# all. Layers: unit (GoogleTest via ctest), regress (pg_regress on a temporary instance that
# preloads squaresync), contract (the fake Square server against Square's schemas), e2e (pytest
# against real clusters and the fake Square). `--only LAYER` runs one of them.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ONLY=""
[ "${1:-}" = "--only" ] && ONLY=${2:-}
PY=/usr/bin/python3
OUT=/tmp/squaresync-test-results
rm -rf "$OUT" && mkdir -p "$OUT" && chmod 777 "$OUT"

# A layer that runs is listed in $OUT/expected: count_results.py counts one that leaves no result as
# a failure, and a pytest that ends for another reason than failed tests (exit status above 1: an
# internal or usage error, an interruption, no tests collected) leaves a <layer>.failed marker.
run_layer() {
  if [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; then echo "$1" >> "$OUT/expected"; return 0; fi
  return 1
}
pytest_layer() {  # name, directory, lines of output to show
  $PY -m pytest -q -p no:cacheprovider --timeout=300 "$2" --junitxml="$OUT/$1.xml" 2>&1 | tail -"$3"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -le 1 ] || echo "pytest exited with status $rc" > "$OUT/$1.failed"
}

bash scripts/deps.sh || { echo "0 passed, 1 failed"; exit 1; }
if ! { make -s -j2 >"$OUT/build.log" 2>&1 && make -s install >>"$OUT/build.log" 2>&1; }; then
  cat "$OUT/build.log"; echo "build failed"; echo "0 passed, 1 failed"; exit 1
fi

if run_layer unit; then
  echo "== unit (GoogleTest)"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake.log" 2>&1 && cmake --build build -j2 >>"$OUT/cmake.log" 2>&1 \
    || { cat "$OUT/cmake.log"; echo "unit build failed" > "$OUT/unit.failed"; }
  [ -f "$OUT/unit.failed" ] || (cd build && ctest --output-on-failure --output-junit "$OUT/unit.xml" | tail -5)
fi

if run_layer regress; then
  echo "== regress (pg_regress)"
  bash scripts/regress.sh "$OUT" | tee "$OUT/regress.log" | tail -30
fi

if run_layer contract; then
  echo "== contract (fake Square vs Square's schemas)"
  pytest_layer contract test/contract 15
fi

if run_layer e2e; then
  echo "== e2e (clusters + fake Square)"
  pytest_layer e2e test/e2e 30
fi

$PY scripts/count_results.py "$OUT"
