#!/usr/bin/env bash
# deps.sh: installs, from Debian's archive, whatever the build, the tests and the demo need and the
# machine lacks. Idempotent: does nothing when everything is there.
set -euo pipefail
PG_MAJOR=${PG_MAJOR:-15}
PACKAGES=(
  g++ make cmake pkg-config openssl ca-certificates
  "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" "postgresql-$PG_MAJOR-cron"
  libcurl4-openssl-dev nlohmann-json3-dev libsimdjson-dev libgtest-dev
  python3 python3-pytest python3-pytest-timeout python3-psycopg python3-jsonschema
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: run as root (or install these packages): ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
