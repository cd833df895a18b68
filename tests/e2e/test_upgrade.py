"""Upgrades: `ALTER EXTENSION ragbench UPDATE` from every released version must give exactly what a fresh
`CREATE EXTENSION` of the current version gives. The released install scripts are kept in
tests/fixtures/upgrade/ (as cargo pgrx generated them at release); the upgrade scripts are sql/."""
import subprocess
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
RELEASED = sorted((ROOT / "tests" / "fixtures" / "upgrade").glob("ragbench--*.sql"))

# Everything that makes up the extension's interface, in comparable text form.
EXTENSION_OBJECTS = """
SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'ragbench' AND d.deptype = 'e'
ORDER BY 1"""
FUNCTIONS = """
SELECT p.oid::regprocedure::text, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
       p.prosrc, p.provolatile, p.proparallel, p.proisstrict, p.prosecdef, coalesce(obj_description(p.oid, 'pg_proc'), '')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'rag' ORDER BY 1"""
COLUMNS = """
SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
WHERE n.nspname = 'rag' ORDER BY 1, 3"""
INDEXES = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'rag' ORDER BY 1"
POLICIES = "SELECT tablename, policyname, roles::text, cmd, qual, coalesce(with_check, '') FROM pg_policies WHERE schemaname = 'rag' ORDER BY 1, 2"
PRIVILEGES = """
SELECT c.relname, coalesce(c.relacl::text, ''), c.relrowsecurity FROM pg_class c
WHERE c.relnamespace = 'rag'::regnamespace ORDER BY 1"""
ROUTINE_PRIVILEGES = """
SELECT p.oid::regprocedure::text, coalesce(p.proacl::text, ''), coalesce(array_to_string(p.proconfig, ','), '')
FROM pg_proc p WHERE p.pronamespace = 'rag'::regnamespace ORDER BY 1"""

# Rows written by an older version, as plain SQL (today's library cannot run an old version's functions).
OLD_DATA = """
INSERT INTO rag.document_files (id, file_name, file_type, file_size_bytes, file_hash)
VALUES ('11111111-1111-1111-1111-111111111111', 'old.txt', 'text', 40, 'old-hash');
INSERT INTO rag.chunks (document_id, chunk_index, content, content_with_context)
VALUES ('11111111-1111-1111-1111-111111111111', 0, 'Zeppelinology of the old release.', 'old.txt > Zeppelinology of the old release.');
INSERT INTO rag.chat_sessions (id, title) VALUES ('22222222-2222-2222-2222-222222222222', 'old session');
INSERT INTO rag.chat_messages (session_id, role, content) VALUES ('22222222-2222-2222-2222-222222222222', 'user', 'old question');
INSERT INTO rag.job_batches (id, total_tasks) VALUES ('33333333-3333-3333-3333-333333333333', 0);
"""


def snapshot(url):
    with psycopg.connect(url, autocommit=True) as conn:
        return {name: conn.execute(sql).fetchall()
                for name, sql in [("objects", EXTENSION_OBJECTS), ("functions", FUNCTIONS),
                                  ("columns", COLUMNS), ("indexes", INDEXES), ("policies", POLICIES),
                                  ("privileges", PRIVILEGES), ("routine privileges", ROUTINE_PRIVILEGES)]}


def current_version():
    for line in (ROOT / "Cargo.toml").read_text().splitlines():
        if line.startswith("version"):
            return line.split('"')[1]
    raise AssertionError("no version in Cargo.toml")


@pytest.mark.parametrize("script", RELEASED, ids=lambda p: p.stem)
def test_update_from_released_version_equals_fresh_install(cluster, script):
    version = script.stem.split("--")[1]
    sharedir = subprocess.run([str(ROOT / ".stack" / "pg" / "bin" / "pg_config"), "--sharedir"],
                              capture_output=True, text=True, check=True).stdout.strip()
    installed = Path(sharedir) / "extension" / script.name
    copied = not installed.exists()
    installed.write_bytes(script.read_bytes())  # a stale one from an older build may be there
    base = cluster.url.rsplit("/", 1)[0]
    try:
        with cluster.connect() as admin:
            for db in ("upgrade_old", "upgrade_new"):
                admin.execute(f"DROP DATABASE IF EXISTS {db}")
                admin.execute(f"CREATE DATABASE {db}")
        with psycopg.connect(f"{base}/upgrade_old", autocommit=True) as old:
            old.execute(f"CREATE EXTENSION ragbench VERSION '{version}' CASCADE")
            old.execute(OLD_DATA)
            old.execute("ALTER EXTENSION ragbench UPDATE")
            assert old.execute("SELECT extversion FROM pg_extension WHERE extname = 'ragbench'").fetchone()[0] \
                == current_version()
        with psycopg.connect(f"{base}/upgrade_new", autocommit=True) as new:
            new.execute("CREATE EXTENSION ragbench CASCADE")
        upgraded, fresh = snapshot(f"{base}/upgrade_old"), snapshot(f"{base}/upgrade_new")
        for part in fresh:
            missing = sorted(set(fresh[part]) - set(upgraded[part]))
            extra = sorted(set(upgraded[part]) - set(fresh[part]))
            assert not missing and not extra, f"{part}: missing after upgrade {missing}, extra {extra}"
        # and the upgraded database works: a function added by the upgrade runs
        with psycopg.connect(f"{base}/upgrade_old", autocommit=True) as old:
            n = old.execute("SELECT count(*) FROM rag.embed_many(ARRAY['one', 'two'], 'document')").fetchone()[0]
            assert n == 2
            # existing rows belong to the extension's owner, with no tenant, and BM25 still finds them
            for table in ("document_files", "chunks", "chat_sessions", "chat_messages", "job_batches"):
                assert old.execute(f"SELECT owner, tenant FROM rag.{table}").fetchall() == [("ragbench", "")], table
            assert [r[0] for r in old.execute("SELECT file_name FROM rag.bm25_search('zeppelinology', 5)")] == ["old.txt"]
        # an administrator's role sees them; an application's role does not
        with psycopg.connect(cluster.url_as("app_admin").rsplit("/", 1)[0] + "/upgrade_old", autocommit=True) as adm:
            assert adm.execute("SELECT count(*) FROM rag.documents").fetchone()[0] == 1
            assert adm.execute("SELECT count(*) FROM rag.chat_history('22222222-2222-2222-2222-222222222222')").fetchone()[0] == 1
        with psycopg.connect(cluster.url_as("app_writer").rsplit("/", 1)[0] + "/upgrade_old", autocommit=True) as app:
            assert app.execute("SELECT count(*) FROM rag.documents").fetchone()[0] == 0
            assert app.execute("SELECT count(*) FROM rag.bm25_search('zeppelinology', 5)").fetchone()[0] == 0
    finally:
        with cluster.connect() as admin:
            for db in ("upgrade_old", "upgrade_new"):
                admin.execute(f"DROP DATABASE IF EXISTS {db}")
        if copied:
            installed.unlink()
