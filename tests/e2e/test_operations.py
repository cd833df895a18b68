"""Operations (issue 13, item 5): rag.status() shows a queued file, a failed file and stale vectors, each
created here, to an administrator's role (rag_admin, not the superuser). The database is one the background
worker does not serve, so a queued file stays queued until rag.process_queue takes it."""
import psycopg
import pytest

from conftest import ROOT, extension_database

FIX = ROOT / "tests" / "fixtures" / "formats"


@pytest.fixture
def ops_db(cluster):
    with extension_database(cluster, "ops_status") as base:
        admin_url = base.replace("postgresql://ragbench@", "postgresql://app_admin@", 1) + "/ops_status"
        writer_url = base.replace("postgresql://ragbench@", "postgresql://app_writer@", 1) + "/ops_status"
        with psycopg.connect(admin_url, autocommit=True) as admin, psycopg.connect(writer_url, autocommit=True) as app:
            yield admin, app


def status(conn):
    return {(s, m): (v, d) for s, m, v, d in conn.execute("SELECT * FROM rag.status()")}


def test_status_shows_queued_and_failed_files_and_stale_vectors(ops_db):
    admin, app = ops_db
    s = status(admin)
    assert s[("queue", "messages")][0] == 0 and s[("queue", "files failed")][0] == 0
    assert s[("worker", "processes")][0] == 0  # no worker serves this database

    # a failed file: a truncated PDF, processed here
    app.execute("SELECT rag.upload(ARRAY['truncated.pdf'], ARRAY[%s::bytea])", ((FIX / "truncated.pdf").read_bytes(),))
    assert admin.execute("SELECT rag.process_queue(10)").fetchone()[0] == 1
    s = status(admin)
    assert s[("queue", "files failed")][0] == 1
    age, detail = s[("worker", "last failure age s")]
    assert age is not None and age >= 0 and detail.startswith("truncated.pdf: ") and "damaged or truncated" in detail
    assert s[("queue", "messages")][0] == 0  # its message is archived

    # a queued file: uploaded, nobody has processed it yet
    app.execute("SELECT rag.upload(ARRAY['queued.txt'], ARRAY[convert_to('A queued note about WAL.', 'UTF8')])")
    s = status(admin)
    assert s[("queue", "messages")][0] == 1 and s[("queue", "files pending")][0] == 1
    assert s[("queue", "oldest message age s")][0] >= 0

    # stale vectors: a document embedded with the built-in model, then another model configured
    app.execute("SELECT rag.ingest_document('fresh.txt', 'Checkpoints write dirty pages to disk.')")
    s = status(admin)
    chunks = s[("documents", "chunks")][0]
    assert chunks >= 1 and s[("vectors", "stale")][0] == 0 and s[("vectors", "missing")][0] == 0
    assert s[("vectors", "model builtin/all-MiniLM-L6-v2")][0] == chunks
    admin.execute("SET rag.embedding_provider = 'ollama'")
    admin.execute("SET rag.embedding_model = 'other-model'")
    s = status(admin)
    assert s[("vectors", "configured model")][1] == "ollama/other-model"
    assert s[("vectors", "stale")][0] == chunks
    assert s[("indexes", "bm25 segments")][0] >= 1

    # an application role may not call it
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT * FROM rag.status()")
