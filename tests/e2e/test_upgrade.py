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


def snapshot(url):
    with psycopg.connect(url, autocommit=True) as conn:
        return {name: conn.execute(sql).fetchall()
                for name, sql in [("objects", EXTENSION_OBJECTS), ("functions", FUNCTIONS),
                                  ("columns", COLUMNS), ("indexes", INDEXES)]}


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
    finally:
        with cluster.connect() as admin:
            for db in ("upgrade_old", "upgrade_new"):
                admin.execute(f"DROP DATABASE IF EXISTS {db}")
        if copied:
            installed.unlink()
