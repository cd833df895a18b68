"""What a client, a crash or a second consumer can do to the server, on a real cluster with the worker
preloaded (issue 9): malformed queue messages are dead-lettered, a file that kills its worker is given up
on after rag.max_attempts deaths, two consumers of one message make one document, cancel and
statement_timeout stop every long call within seconds, and the BM25 index (not WAL-logged by pg_search
0.21) is healed after a crash and repaired when damaged, with a WARNING while it lasts."""
import contextlib
import json
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from conftest import ROOT, extension_database, reconnect, reply_json, system_settings
from test_queue import upload, worker_pid
from test_queue import wait_done as wait_done_as


def wait_done(cluster, batch, timeout=600):
    """These tests upload as the superuser."""
    return wait_done_as(cluster, batch, timeout, role=None)


class SlowStandIn(BaseHTTPRequestHandler):
    """OpenAI-compatible embeddings (8-d); a request whose input mentions 'slowfile' takes `delay` s."""
    delay = 8.0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if any("slowfile" in t for t in body["input"]):
            time.sleep(SlowStandIn.delay)
        data = [{"object": "embedding", "index": i,
                 "embedding": [float((hash(w) >> k) % 7) + 1.0 for k in range(8) for w in [t.split()[0] if t.split() else t]]}
                for i, t in enumerate(body["input"])]
        out = json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()
        try:
            reply_json(self, 200, out)
        except OSError:
            pass  # the caller gave up (cancelled) meanwhile

    def log_message(self, *a):
        pass


@pytest.fixture
def db(su):
    """These tests point sessions at stand-in providers (rag.embedding_url is superuser-only) and stop
    backends: they run as the superuser. The roles' view is tests/e2e/test_roles.py."""
    return su


@contextlib.contextmanager
def stand_in_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def side_db(cluster):
    """A database the background worker does not serve: rag.process_queue is its only consumer."""
    with extension_database(cluster, "side_queue") as base:
        with psycopg.connect(f"{base}/side_queue", autocommit=True) as conn:
            conn.execute("SET client_min_messages = warning")
            yield conn


# --- the queue ------------------------------------------------------------------------------------

def running_worker(conn, timeout=30):
    deadline = time.time() + timeout
    while not worker_pid(conn):
        assert time.time() < deadline, "no ragbench worker is running"
        time.sleep(0.2)
    return worker_pid(conn)


def test_poison_messages_are_dead_lettered_and_the_worker_goes_on(cluster, db, unique):
    pid = running_worker(db)
    bad = ['{"task_id": "not-a-uuid"}', '{"something": "else"}', '[1, 2, 3]',
           '{"task_id": "00000000-0000-0000-0000-000000000000"}']
    ids = [db.execute("SELECT pgmq.send('rag_documents', %s::jsonb)", (m,)).fetchone()[0] for m in bad]
    batch = upload(db, [("after-poison.txt", f"Checkpoint spreading {unique} smooths the write load.".encode())])
    status, completed, failed, total = wait_done(cluster, batch, timeout=120)
    assert (status, completed, total) == ("completed", 1, 1)
    reasons = dict(db.execute("SELECT msg_id, reason FROM rag.dead_letters WHERE msg_id = ANY(%s)", (ids[:3],)).fetchall())
    assert set(reasons) == set(ids[:3])
    assert "not a uuid" in reasons[ids[0]] and "no task_id" in reasons[ids[1]]
    # nothing of them is left in the queue; all four are archived, not deleted
    assert db.execute("SELECT count(*) FROM pgmq.q_rag_documents WHERE msg_id = ANY(%s)", (ids,)).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM pgmq.a_rag_documents WHERE msg_id = ANY(%s)", (ids,)).fetchone()[0] == 4
    assert worker_pid(db) == pid, "the worker restarted on a poison message"


def test_a_file_that_kills_its_worker_is_given_up_on(cluster, db, unique):
    files = [("ok-one.txt", f"Autovacuum {unique} reclaims dead tuples.".encode()),
             ("killer.txt", f"This file {unique} kills the process that reads it.".encode()),
             ("ok-two.txt", f"Hot standby {unique} serves read-only queries.".encode())]
    with system_settings(cluster, debug_abort_on_file="killer.txt"):
        batch = upload(db, files)
        db.close()
        status, completed, failed, total = wait_done(cluster, batch, timeout=240)
        conn = reconnect(cluster)
        try:
            assert (status, completed, failed, total) == ("partially failed", 2, 1, 3)
            name, attempts, error = conn.execute(
                "SELECT file_name, attempts, error FROM rag.batch_files(%s) WHERE status = 'failed'", (batch,)).fetchone()
            assert name == "killer.txt" and attempts == 3
            assert "died while processing this file 3 times" in error
            ok = conn.execute("SELECT attempts FROM rag.batch_files(%s) WHERE status = 'completed'", (batch,)).fetchall()
            assert all(a <= 2 for (a,) in ok)
        finally:
            conn.close()
    with reconnect(cluster) as conn:
        # the cluster is up, the worker is back, and the killer's message is archived, not re-delivered
        time.sleep(2)
        assert worker_pid(conn)
        assert conn.execute("SELECT count(*) FROM pgmq.q_rag_documents").fetchone()[0] == 0
        hits = {r[0] for r in conn.execute("SELECT file_name FROM rag.bm25_search(%s, 10)", (unique,)).fetchall()}
        assert hits == {"ok-one.txt", "ok-two.txt"}


def test_two_consumers_racing_on_one_message_make_one_document(cluster, db, unique):
    # The worker claims the file, then waits on a slow embedding server past the visibility timeout (5 s);
    # rag.process_queue in this session takes the message over. Only the newer claim may write.
    with stand_in_server() as server, system_settings(
            cluster, embedding_provider="openai", embedding_model="race-8d",
            embedding_url=f"http://127.0.0.1:{server.server_port}"):
        batch = upload(db, [("race.txt", f"slowfile {unique} about the race between two consumers.".encode())])
        deadline = time.time() + 30
        while db.execute("SELECT processing FROM rag.batch_status(%s)", (batch,)).fetchone()[0] == 0:
            assert time.time() < deadline, "the worker never claimed the file"
            time.sleep(0.1)
        time.sleep(6)  # past the visibility timeout while the worker still waits for its vectors
        assert db.execute("SELECT rag.process_queue(1)").fetchone()[0] == 1
        status, completed, failed, total = wait_done(cluster, batch, timeout=60)
        time.sleep(SlowStandIn.delay)  # the stale worker's claim has ended too
        assert (status, completed, failed) == ("completed", 1, 0)
        task = db.execute("SELECT status, attempts, document_id FROM rag.batch_files(%s)", (batch,)).fetchone()
        assert task[0] == "completed" and task[1] == 2
        docs = db.execute("SELECT id FROM rag.document_files WHERE file_name = 'race.txt'").fetchall()
        assert docs == [(task[2],)]
        assert db.execute("SELECT count(*) FROM rag.chunks WHERE document_id = %s", (task[2],)).fetchone()[0] == 1
        assert [r[0] for r in db.execute("SELECT document_id FROM rag.bm25_search(%s, 5)", (unique,))] == [task[2]]
        db.execute("SET rag.embedding_provider = 'openai'")
        db.execute("SET rag.embedding_model = 'race-8d'")
        db.execute(f"SET rag.embedding_url = 'http://127.0.0.1:{server.server_port}'")
        vec = [r[0] for r in db.execute("SELECT document_id FROM rag.vector_search(%s, 5)", (unique,))]
        assert vec == [task[2]]
        for g in ("embedding_provider", "embedding_model", "embedding_url"):
            db.execute(f"RESET rag.{g}")


# --- cancel and statement_timeout ---------------------------------------------------------------

def assert_cancelled_quickly(conn, sql, params=(), bound=3.0):
    t0 = time.time()
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute(sql, params)
    elapsed = time.time() - t0
    assert elapsed < bound, f"cancel took {elapsed:.1f} s"


def test_statement_timeout_stops_a_long_synchronous_ingest(cluster, db, unique):
    text = " ".join(f"Sentence {i} of a long manual about {unique} and write-ahead logging." for i in range(20000))
    db.execute("SET statement_timeout = '1s'")
    assert_cancelled_quickly(db, "SELECT rag.ingest_document('long.txt', %s)", (text,))
    db.execute("RESET statement_timeout")
    assert db.execute("SELECT count(*) FROM rag.document_files WHERE file_name = 'long.txt'").fetchone()[0] == 0


def test_statement_timeout_stops_embed_many(cluster, db):
    db.execute("SELECT rag.embed('warm up the model')")
    db.execute("SET statement_timeout = '1s'")
    texts = [f"passage {i} about replication slots and logical decoding" for i in range(2000)]
    assert_cancelled_quickly(db, "SELECT count(*) FROM rag.embed_many(%s, 'document')", (texts,))
    db.execute("RESET statement_timeout")


def test_cancel_stops_an_http_provider_that_never_answers(cluster, db):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections (the kernel does) and never answers
    try:
        db.execute("SET rag.embedding_provider = 'ollama'")
        db.execute(f"SET rag.embedding_url = 'http://127.0.0.1:{silent.getsockname()[1]}'")
        db.execute("SET rag.embedding_timeout_ms = 600000")
        db.execute("SET statement_timeout = '1s'")
        assert_cancelled_quickly(db, "SELECT rag.embed('never answered')")
        db.execute("RESET statement_timeout")
        # and pg_cancel_backend from another session
        pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]
        with cluster.connect() as other:
            threading.Timer(1.0, lambda: other.execute("SELECT pg_cancel_backend(%s)", (pid,))).start()
            assert_cancelled_quickly(db, "SELECT rag.embed('never answered either')", bound=4.0)
    finally:
        for g in ("embedding_provider", "embedding_url", "embedding_timeout_ms"):
            db.execute(f"RESET rag.{g}")
        silent.close()


def test_process_queue_does_not_swallow_a_timeout(cluster, side_db, unique):
    with stand_in_server() as server:
        batch = side_db.execute("SELECT rag.upload(%s, %s)", (["slow-a.txt", "slow-b.txt"], [
            f"slowfile {unique} first file".encode(), f"slowfile {unique} second file".encode()])).fetchone()[0]
        side_db.execute("SET rag.embedding_provider = 'openai'")
        side_db.execute("SET rag.embedding_model = 'slow-8d'")
        side_db.execute(f"SET rag.embedding_url = 'http://127.0.0.1:{server.server_port}'")
        side_db.execute("SET statement_timeout = '1s'")
        assert_cancelled_quickly(side_db, "SELECT rag.process_queue(10)")
        side_db.execute("RESET statement_timeout")
        # the cancel ended the call: nothing was recorded as a failed file
        rows = side_db.execute("SELECT status, error FROM rag.batch_files(%s)", (batch,)).fetchall()
        assert rows == [("pending", None), ("pending", None)]


# --- the BM25 index after crashes ----------------------------------------------------------------

def bm25_found(conn, terms):
    return conn.execute(
        "SELECT count(*) FROM unnest(%s::text[]) t WHERE EXISTS (SELECT 1 FROM rag.bm25_search(t, 1))",
        (terms,)).fetchone()[0]


def test_bm25_index_heals_after_a_crash(cluster, db, unique):
    terms = [f"u{unique}i{i}" for i in range(300)]
    db.execute("CHECKPOINT")
    for i, t in enumerate(terms):
        db.execute("SELECT rag.ingest_document(%s, %s)",
                   (f"crash-{i}.txt", f"Crash document {i} names the term {t} and nothing else of note."))
    assert bm25_found(db, terms) == 300
    victim = cluster.connect()
    os.kill(victim.execute("SELECT pg_backend_pid()").fetchone()[0], signal.SIGKILL)
    time.sleep(1)
    conn = reconnect(cluster)
    try:
        deadline, found = time.time() + 120, 0
        while time.time() < deadline:
            try:
                found = bm25_found(conn, terms)
                if found == 300:
                    break
            except psycopg.Error:
                pass
            time.sleep(1)
        assert found == 300, f"after the crash BM25 finds {found} of 300 documents"
        assert conn.execute("SELECT status FROM rag.verify()").fetchone()[0] == "ok"
        # exactly once: one document and one chunk each, and the vector leg finds them too
        assert conn.execute("SELECT count(*) FROM rag.document_files WHERE file_name LIKE 'crash-%'").fetchone()[0] == 300
        assert conn.execute("SELECT count(*) FROM rag.chunks c JOIN rag.document_files d ON d.id = c.document_id "
                            "WHERE d.file_name LIKE 'crash-%'").fetchone()[0] == 300
        for i in (0, 150, 299):
            top = conn.execute("SELECT file_name FROM rag.vector_search(%s, 3)",
                               (f"Crash document {i} names the term {terms[i]} and nothing else of note.",)).fetchall()
            assert (f"crash-{i}.txt",) in top
    finally:
        conn.close()
        victim.close()


def test_damaged_bm25_index_warns_and_is_repaired(cluster, db, unique):
    db.execute("SELECT rag.ingest_document('damaged.txt', %s)", (f"Tablespaces {unique} place relations on other disks.",))
    path = db.execute("SELECT pg_relation_filepath('rag.chunks_bm25')").fetchone()[0]
    db.execute("ALTER SYSTEM SET rag.bm25_auto_repair = off")
    db.close()
    cluster.ctl("stop")
    data = Path(cluster.env["PGDATA"])
    for f in [data / path, *data.glob(path + ".*")]:
        os.truncate(f, 0)  # as a crash in the middle of a write can leave it: unreadable
    cluster.ctl("start")
    with reconnect(cluster) as conn:
        try:
            notices = []
            conn.add_notice_handler(lambda n: notices.append((n.severity_nonlocalized, n.message_primary, n.message_hint)))
            query = f"Tablespaces {unique} place relations"
            rows = conn.execute("SELECT file_name, bm25_rank, vector_rank FROM rag.hybrid_search(%s, 5)", (query,)).fetchall()
            assert rows and rows[0][0] == "damaged.txt" and rows[0][1] is None and rows[0][2] == 1
            assert any(s == "WARNING" and "BM25 index failed" in m and "rag.verify" in (h or "") for s, m, h in notices), notices
            status = conn.execute("SELECT status, detail FROM rag.verify()").fetchone()
            assert status[0] == "damaged" and "rag.chunks_bm25" in status[1]
            with pytest.raises(psycopg.Error):
                conn.execute("SELECT * FROM rag.bm25_search(%s, 5)", (unique,))
            # turning the automatic repair on (a reload) makes the worker repair it
            conn.execute("ALTER SYSTEM RESET rag.bm25_auto_repair")
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.time() + 60
            while conn.execute("SELECT status FROM rag.verify()").fetchone()[0] != "ok":
                assert time.time() < deadline, "the worker did not repair the BM25 index after the reload"
                time.sleep(1)
            notices.clear()
            rows = conn.execute("SELECT file_name, bm25_rank FROM rag.hybrid_search(%s, 5)", (query,)).fetchall()
            assert rows[0] == ("damaged.txt", 1) and not notices
            assert [r[0] for r in conn.execute("SELECT file_name FROM rag.bm25_search(%s, 5)", (unique,))] == ["damaged.txt"]
        finally:
            conn.execute("ALTER SYSTEM RESET rag.bm25_auto_repair")
            conn.execute("SELECT pg_reload_conf()")
            if conn.execute("SELECT status FROM rag.verify()").fetchone()[0] != "ok":
                conn.execute("SELECT * FROM rag.verify(repair => true)")


# --- re-embedding never holds the table for long -------------------------------------------------

def test_reembed_all_commits_in_slices_while_ingestion_goes_on(cluster, db, unique):
    for i in range(6):
        db.execute("SELECT rag.ingest_document(%s, %s)", (f"re-{i}.txt", f"Re-embedding document {i} {unique} about WAL."))
    with stand_in_server() as server:
        url = f"http://127.0.0.1:{server.server_port}"
        for g, v in [("embedding_provider", "openai"), ("embedding_model", "reembed-8d"), ("embedding_url", url)]:
            db.execute(f"SET rag.{g} = '{v}'")
        progress = []

        def ingest_meanwhile():
            with cluster.connect() as other:
                for g, v in [("embedding_provider", "openai"), ("embedding_model", "reembed-8d"), ("embedding_url", url)]:
                    other.execute(f"SET rag.{g} = '{v}'")
                other.execute("SET lock_timeout = '5s'")  # a whole-run lock would fail this
                for i in range(3):
                    other.execute("SELECT rag.ingest_document(%s, %s)", (f"during-{i}.txt", f"Written during the re-embed {i} {unique}."))
                    progress.append(i)

        t = threading.Thread(target=ingest_meanwhile)
        t.start()
        db.execute("CALL rag.reembed_all(2)")
        t.join()
        assert progress == [0, 1, 2]
        stale = db.execute("SELECT count(*) FROM rag.chunks WHERE embedding_model IS DISTINCT FROM 'openai/reembed-8d'").fetchone()[0]
        assert stale == 0
        assert db.execute("SELECT count(*) FROM rag.embedding_models WHERE model = 'openai/reembed-8d'").fetchone()[0] == 1
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            db.execute("CALL rag.reembed_all(0)")
        for g in ("embedding_provider", "embedding_model", "embedding_url"):
            db.execute(f"RESET rag.{g}")
