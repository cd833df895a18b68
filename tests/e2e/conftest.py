"""End-to-end fixtures: a real cluster (scripts/cluster.sh) with `shared_preload_libraries =
'ragbench, pg_search'`, the extension created with CASCADE (vector, pg_search, pgmq). Started once per
test session, stopped at the end."""
import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = Path("/usr/share/doc/postgresql-doc-15/html")


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
        return psycopg.connect(self.url, autocommit=True, **kw)


@pytest.fixture(scope="session")
def cluster():
    c = Cluster()
    c.ctl("start")
    yield c
    c.ctl("stop")


@pytest.fixture
def db(cluster):
    """A connection to a database with no documents left by other tests."""
    with cluster.connect() as conn:
        conn.execute("DELETE FROM rag.document_files")
        yield conn


def doc_page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def unique():
    return uuid.uuid4().hex
