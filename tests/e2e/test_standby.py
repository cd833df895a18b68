"""Read replicas (issue 13, item 6): a hot standby made with pg_basebackup on loopback. The tables and the
vector leg follow the primary through WAL; community pg_search 0.21.14 does not WAL-log its BM25 index, so the
standby's BM25 leg only knows the rows present when the standby was made, and says so with a WARNING. Writes
fail with PostgreSQL's read-only error, and no ragbench worker runs on the standby."""
import shutil
import time
import uuid

import psycopg
import pytest

from conftest import PG_BIN, ROOT, RUN_USER, as_run_user as as_user, stop_server

PORT = "55433"


@pytest.fixture
def standby(cluster):
    root = ROOT / ".stack" / "standby-test"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.chown(root, RUN_USER)
    data, log = root / "pgdata", root / "server.log"
    as_user([str(PG_BIN / "pg_basebackup"), "-D", str(data), "-R", "-X", "stream", "-c", "fast",
             "-h", "127.0.0.1", "-p", cluster.env["PGPORT"], "-U", RUN_USER])
    as_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
             "-o", f"-c port={PORT} -c hot_standby=on", "start"])
    try:
        yield cluster.url.replace(f":{cluster.env['PGPORT']}/", f":{PORT}/"), log
    finally:
        stop_server(data)
        shutil.rmtree(root, ignore_errors=True)


def wait_replayed(primary, standby_url, timeout=60):
    lsn = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.time() + timeout
    with psycopg.connect(standby_url, autocommit=True) as s:
        while time.time() < deadline:
            if s.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
                return
            time.sleep(0.2)
    raise AssertionError("the standby did not replay the primary's WAL in time")


def test_standby_reads(cluster, su, standby):
    standby_url, log = standby
    marker = uuid.uuid4().hex[:8]
    with cluster.connect_as("app_writer") as app:
        doc = app.execute("SELECT rag.ingest_document('after.txt', %s)",
                          (f"The dirigible{marker} was written after the standby was made.",)).fetchone()[0]
        sid = uuid.uuid4()
        app.execute("SELECT rag.chat_append(%s, 'user', 'a question asked on the primary')", (sid,))
    wait_replayed(su, standby_url)
    reader_url = standby_url.replace("postgresql://ragbench@", "postgresql://app_writer@", 1)
    with psycopg.connect(reader_url, autocommit=True) as s:
        assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        # the tables follow: the document, its chunks and the chat history are there
        assert s.execute("SELECT count(*) FROM rag.documents WHERE id = %s", (doc,)).fetchone()[0] == 1
        assert s.execute("SELECT count(*) FROM rag.chat_history(%s)", (sid,)).fetchone()[0] == 1
        # the vector leg follows (HNSW is WAL-logged)
        hits = [r[0] for r in s.execute("SELECT document_id FROM rag.vector_search(%s, 3)", (f"dirigible{marker}",))]
        assert doc in hits
        # BM25 cannot run here (its index is not WAL-logged in community pg_search): a clear error for
        # rag.bm25_search, and the hybrid answers from its vector leg with a WARNING that says why
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="hot standby"):
            s.execute("SELECT * FROM rag.bm25_search(%s, 5)", (f"dirigible{marker}",))
        notices = []
        s.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        hybrid = s.execute("SELECT document_id, bm25_rank, vector_rank FROM rag.hybrid_search(%s, 5)",
                           (f"dirigible{marker}",)).fetchall()
        assert doc in [r[0] for r in hybrid] and all(r[1] is None for r in hybrid)
        assert any("hot standby" in n and "vector leg only" in n for n in notices), notices
        # writes fail with the read-only error, and store nothing
        for sql in ("SELECT rag.ingest_document('x.txt', 'text on a standby')",
                    "SELECT rag.upload(ARRAY['x.txt'], ARRAY['text'::bytea])",
                    f"SELECT rag.delete_document('{doc}')",
                    "SELECT rag.chat_append(gen_random_uuid(), 'user', 'hello')",
                    "SELECT rag.create_session('on a standby')",
                    "SELECT rag.ask(gen_random_uuid(), 'what is a dirigible?')"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                s.execute(sql)
    with psycopg.connect(standby_url, autocommit=True) as s:
        assert s.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ragbench worker'").fetchone()[0] == 0


def test_searches_take_no_transaction_id(cluster, su):
    """A search only reads: it must not assign a transaction id (pgrx's Spi::get_one* do; on a primary that
    consumed one id per search, on a standby it was an error)."""
    with cluster.connect_as("app_writer") as app:
        app.execute("SELECT rag.ingest_document('xid.txt', 'Transaction ids are a finite resource.')")
        with app.transaction():
            for sql in ("SELECT * FROM rag.hybrid_search('transaction ids', 3)",
                        "SELECT * FROM rag.vector_search('transaction ids', 3)",
                        "SELECT * FROM rag.bm25_search('transaction ids', 3)"):
                app.execute(sql).fetchall()
            assert app.execute("SELECT txid_current_if_assigned()").fetchone()[0] is None
