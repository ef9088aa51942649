#!/usr/bin/env bash
# Starts Debian's PostgreSQL cluster on 127.0.0.1 and makes sure role and database `mugaika`
# (password `mugaika`) exist, for the quarantine tests' PostgreSQL index
# (MUGAIKA_TEST_POSTGRES=postgres://mugaika:mugaika@127.0.0.1/mugaika). Installs nothing (.ci/run
# runs `apt-get install postgresql` first). Idempotent: safe to run again on a running cluster.
# Runs as root (uses `runuser -u postgres`) or as the postgres user.
set -euo pipefail

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# The newest installed cluster (Debian: pg_lsclusters "VER NAME PORT STATUS ...").
read -r ver name port status _ < <(pg_lsclusters --no-header | sort -V | tail -n 1) || {
  echo "postgres.sh: no PostgreSQL cluster (apt-get install postgresql)" >&2
  exit 1
}
if [ "$status" != online ]; then
  echo "== starting PostgreSQL $ver/$name on port $port"
  pg_ctlcluster "$ver" "$name" start
fi

# Wait until it accepts connections (a fresh start takes a moment).
for _ in $(seq 1 60); do
  if as_postgres pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
  sleep 0.5
done
as_postgres pg_isready -h 127.0.0.1 -p "$port" >/dev/null

psql_pg() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" "$@"; }

psql_pg -d postgres <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mugaika') THEN
    CREATE ROLE mugaika LOGIN PASSWORD 'mugaika';
  ELSE
    ALTER ROLE mugaika LOGIN PASSWORD 'mugaika';
  END IF;
END
$$;
SQL
if ! psql_pg -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'mugaika'" | grep -q 1; then
  psql_pg -d postgres -c "CREATE DATABASE mugaika OWNER mugaika"
fi
# The tests make a schema of their own per run; the role owns the database, so it may.
psql_pg -d mugaika -c "GRANT ALL ON DATABASE mugaika TO mugaika"

# Debian's pg_hba.conf allows password (scram) logins from 127.0.0.1: check it really works.
PGPASSWORD=mugaika psql -X -q -h 127.0.0.1 -p "$port" -U mugaika -d mugaika -tAc "SELECT 1" >/dev/null
echo "== PostgreSQL $ver/$name ready on 127.0.0.1:$port (mugaika/mugaika)"
