#!/usr/bin/env bash
# Runs once, at the first start of an empty data directory (docker-entrypoint-initdb.d).
# Creates the extension in POSTGRES_DB. Nothing else to configure: the ragbench launcher starts the
# ingestion workers of every database that has the extension (rag.worker_databases may narrow that).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE EXTENSION IF NOT EXISTS ragbench CASCADE;
SQL
