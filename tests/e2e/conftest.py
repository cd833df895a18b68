"""End-to-end fixtures: a real cluster (scripts/cluster.sh) with `shared_preload_libraries =
'ragbench, pg_search'`, the extension created with CASCADE (vector, pg_search, pgmq). Started once per
test session, stopped at the end.

Tests that act as an application connect as ordinary LOGIN roles that are granted one of the extension's
group roles and nothing else (APP_ROLES); the superuser only configures the server and inspects it."""
import contextlib
import os
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = Path("/usr/share/doc/postgresql-doc-15/html")
PG_BIN = Path(os.environ.get("PG_BIN", ROOT / ".stack" / "pg" / "bin"))
RUN_USER = "ragbench"  # the OS user that runs the test servers (PostgreSQL refuses root)

# LOGIN role -> the one group role it is granted. app_reader also reads what app_writer ingests (role
# membership without inherited rights or SET ROLE: the documented way to share a corpus).
APP_ROLES = {"app_reader": "rag_reader", "app_writer": "rag_writer", "app_admin": "rag_admin"}


class Cluster:
    def __init__(self):
        self.env = dict(
            os.environ,
            PGDATA=os.environ.get("E2E_PGDATA", str(ROOT / ".stack" / "e2e-pgdata")),
            PGPORT=os.environ.get("E2E_PGPORT", "55418"),
            DB="ragbench",
            # short visibility timeout so crash tests see re-delivery quickly; fast polling
            EXTRA_CONF="rag.visibility_timeout = 5\nrag.worker_poll_interval_ms = 200",
        )
        self.url = f"postgresql://ragbench@127.0.0.1:{self.env['PGPORT']}/ragbench"

    def ctl(self, *args, **extra):
        env = dict(self.env, **extra)
        subprocess.run(["bash", str(ROOT / "scripts" / "cluster.sh"), *args], check=True, env=env)

    def connect(self, **kw):
        """The superuser: server configuration and inspection."""
        return psycopg.connect(self.url, autocommit=True, **kw)

    def url_as(self, role):
        return self.url.replace("postgresql://ragbench@", f"postgresql://{role}@", 1)

    def connect_as(self, role, **kw):
        return psycopg.connect(self.url_as(role), autocommit=True, **kw)

    def create_app_roles(self):
        with self.connect() as su:
            for role, group in APP_ROLES.items():
                if not su.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    su.execute(f"CREATE ROLE {role} LOGIN")
                su.execute(f"GRANT {group} TO {role}")
            su.execute("GRANT app_writer TO app_reader WITH INHERIT FALSE, SET FALSE")


@pytest.fixture(scope="session")
def cluster():
    c = Cluster()
    c.ctl("start")
    c.create_app_roles()
    yield c
    c.ctl("stop")


@pytest.fixture
def su(cluster):
    """A superuser connection (configuration, inspection), on a database with no documents left by other tests."""
    with cluster.connect() as conn:
        conn.execute("DELETE FROM rag.document_files")
        yield conn


@pytest.fixture
def db(su, cluster):
    """The application's connection: app_writer (granted rag_writer only), no documents left by other tests."""
    with cluster.connect_as("app_writer") as conn:
        yield conn


def as_run_user(cmd, check=True):
    """Run a server command (initdb, pg_ctl, pg_basebackup) as RUN_USER."""
    prefix = ["sudo", "-u", RUN_USER, "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + cmd, check=check, capture_output=True, text=True)


def stop_server(data):
    """Stop a test server of our own at once, whatever state it is in."""
    as_run_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], check=False)


@contextlib.contextmanager
def extension_database(cluster, name):
    """A fresh database `name` with the extension (one the background worker does not serve); yields the
    URL without its database name, dropped afterwards."""
    with cluster.connect() as su:
        su.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        su.execute(f"CREATE DATABASE {name}")
    base = cluster.url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/{name}", autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        conn.execute("CREATE EXTENSION ragbench CASCADE")
    try:
        yield base
    finally:
        with cluster.connect() as su:
            su.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def reply_json(handler, status: int, body: bytes):
    """Answer an HTTP request of a stand-in provider (Ollama/OpenAI wire format) with a JSON body."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def doc_page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def unique():
    return uuid.uuid4().hex


@contextlib.contextmanager
def system_settings(cluster, **settings):
    """ALTER SYSTEM for the block (the worker sees it after the reload), reset afterwards, on
    connections of their own (the block may crash the server)."""
    try:
        with reconnect(cluster) as conn:
            for k, v in settings.items():
                conn.execute(f"ALTER SYSTEM SET rag.{k} = '{v}'")
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(1.0)
        yield
    finally:
        with reconnect(cluster) as conn:
            for k in settings:
                conn.execute(f"ALTER SYSTEM RESET rag.{k}")
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)


def reconnect(cluster, timeout=120):
    deadline = time.time() + timeout
    while True:
        try:
            conn = cluster.connect()
            conn.execute("SELECT 1")
            return conn
        except psycopg.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def wait_for(conn, sql, params=(), timeout=180):
    """Poll until `sql` returns a row whose first column is not NULL; that row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(sql, params).fetchone()
        if row and row[0] is not None:
            return row
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for: {sql}")
