#!/usr/bin/env bash
# Runs once, at the first start of an empty data directory (docker-entrypoint-initdb.d).
# Creates the extension in POSTGRES_DB and points the ingestion worker at that database
# (rag.worker_databases defaults to 'postgres'; the setting is read at the server start that follows init).
set -euo pipefail
psql -v ON_ERROR_STOP=1 -v db="$POSTGRES_DB" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE EXTENSION IF NOT EXISTS ragbench CASCADE;
ALTER SYSTEM SET rag.worker_databases = :'db';
SQL
