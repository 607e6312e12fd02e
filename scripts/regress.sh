#!/usr/bin/env bash
# regress.sh: pg_regress on a temporary instance that preloads squaresync. The server runs as the
# postgres OS user, so the tests are copied where that user can read them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/squaresync-test-results}
WORK=/tmp/squaresync-regress
PGXS_DIR=$(dirname "$(pg_config --pgxs)")
PG_REGRESS="$PGXS_DIR/../test/regress/pg_regress"
BINDIR=$(pg_config --bindir)
[ -x "$BINDIR/initdb" ] || BINDIR=/usr/lib/postgresql/$(pg_config --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')/bin

rm -rf "$WORK" && mkdir -p "$WORK"
cp -r sql expected test/regress/schedule test/regress/regress.conf "$WORK"/
# Every test file in sql/ (install scripts aside) must be in the schedule.
for f in sql/*.sql; do
  t=$(basename "$f" .sql)
  case "$t" in squaresync--*) continue ;; esac
  grep -qw "$t" test/regress/schedule || { echo "not ok 0 - sql/$t.sql is not in test/regress/schedule"; }
done
as_pg=()
[ "$(id -u)" -eq 0 ] && { chown -R postgres:postgres "$WORK"; as_pg=(runuser -u postgres --); }
cd "$WORK"
"${as_pg[@]}" "$PG_REGRESS" --temp-instance="$WORK/tmp_check" --temp-config="$WORK/regress.conf" \
  --bindir="$BINDIR" --inputdir="$WORK" --outputdir="$WORK" --schedule="$WORK/schedule" \
  --dbname=contrib_regression 2>&1
rc=$?
if [ $rc -ne 0 ] && [ -f "$WORK/regression.diffs" ]; then
  head -100 "$WORK/regression.diffs"
fi
exit $rc
