#!/usr/bin/env bash
# run.sh: the squaresync benchmark (issue 9); `make bench` runs it. Builds and installs the
# extension, builds bench/floor_download, then runs bench/bench.py: a fresh cluster, the fake Square
# on loopback, every figure of docs/benchmarks.md. Reports figures against their targets; never
# fails on a timing (it fails only when something does not run).
#
#   bash bench/run.sh [--quick] [--scale F] [--repeat N] [--skip-scale10] [--skip-latency] [--skip-oldway]
#                     [--no-profile] [--fake-nodelay] [--out DIR] [--no-install]
#   --quick          smoke run (seed dataset at scale 0.05; no scale 10, no profile), about a minute
#   --scale F        the main dataset's scale (default 1: the seed dataset)
#   --skip-scale10   leave out the scale-10 foundation (it needs ~2 GB and a few minutes)
#   --repeat N       seed foundations and floor copies measured, the median reported (default 3)
#   --fake-nodelay   run the fake with TCP_NODELAY (bench/fake_nodelay.py; see docs/benchmarks.md)
#   --out DIR        where results.json, report.md and the perf output go (default: a fresh dir under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=""
INSTALL=1
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --scale|--scale10|--repeat) ARGS+=("$1" "$2"); shift 2 ;;
    --quick|--skip-scale10|--skip-latency|--skip-oldway|--no-profile|--fake-nodelay) ARGS+=("$1"); shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-$(mktemp -d /tmp/squaresync-bench.XXXXXX)}"
mkdir -p "$OUT"
BUILD="${BENCH_BUILD_DIR:-/tmp/squaresync-bench-build}"

if [ "$INSTALL" = 1 ]; then
  echo "building and installing the extension" >&2
  make -s -j2 >"$OUT/build.log" 2>&1 && make -s install >>"$OUT/build.log" 2>&1 \
    || { cat "$OUT/build.log" >&2; echo "run.sh: build failed" >&2; exit 1; }
fi
echo "building bench/floor_download in $BUILD" >&2
cmake -S bench -B "$BUILD" >"$OUT/cmake.log" 2>&1 && cmake --build "$BUILD" -j2 >>"$OUT/cmake.log" 2>&1 \
  || { cat "$OUT/cmake.log" >&2; echo "run.sh: floor_download build failed" >&2; exit 1; }
"$BUILD/floor_download" --dump-tables >"$OUT/tables.json"

CMD="bash bench/run.sh${*:+ $*}"
[ ${#ARGS[@]} -gt 0 ] && CMD="bash bench/run.sh ${ARGS[*]}"
/usr/bin/python3 bench/bench.py "${ARGS[@]}" --floor-bin "$BUILD/floor_download" --tables-json "$OUT/tables.json" \
  --out "$OUT" --command "$CMD"
echo "results: $OUT/results.json, report: $OUT/report.md" >&2
