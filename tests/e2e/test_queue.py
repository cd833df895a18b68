"""Asynchronous ingestion on a real cluster with the background worker preloaded: mixed real files,
a corrupt PDF, crashes of the worker and of the whole server, and an embedding server that says 429.
The application uploads and follows its batches as app_writer (granted rag_writer only)."""
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from conftest import DOCS, ROOT, reply_json

FIX = ROOT / "tests" / "fixtures" / "formats"
HTML_PAGES = ["sql-abort.html", "sql-begin.html", "sql-commit.html", "sql-rollback.html", "sql-savepoint.html",
              "sql-discard.html", "sql-load.html", "sql-move.html", "sql-fetch.html", "sql-close.html",
              "sql-declare.html", "sql-do.html", "sql-execute.html", "sql-deallocate.html"]


def mixed_files():
    files = [(p, (DOCS / p).read_bytes()) for p in HTML_PAGES]
    files += [
        ("handbook.docx", (FIX / "sample.docx").read_bytes()),
        ("multipage.pdf", (FIX / "multipage.pdf").read_bytes()),
        ("notes.md", (FIX / "utf8_bom.md").read_bytes()),
        ("utf16.txt", (FIX / "utf16le.txt").read_bytes()),
        ("plain.txt", b"Tablespaces let administrators define locations in the file system for database objects."),
        ("truncated.pdf", (FIX / "truncated.pdf").read_bytes()),
    ]
    assert len(files) == 20
    return files


def upload(conn, files, metadata="{}"):
    return conn.execute("SELECT rag.upload(%s, %s, %s)",
                        ([n for n, _ in files], [c for _, c in files], metadata)).fetchone()[0]


def wait_done(cluster, batch, timeout=600, role="app_writer"):
    """Poll the batch as `role` (None: the superuser) until it is finished."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with (cluster.connect_as(role) if role else cluster.connect()) as conn:
                row = conn.execute("SELECT status, completed, failed, total_files FROM rag.batch_status(%s)", (batch,)).fetchone()
                if row[0] in ("completed", "failed", "partially failed"):
                    return row
        except psycopg.OperationalError:
            pass  # server restarting
        time.sleep(1)
    raise AssertionError(f"batch {batch} did not finish in {timeout} s")


def worker_pid(conn):
    row = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'ragbench worker'").fetchone()
    return row and row[0]


def assert_each_file_once(conn, batch, expected_files):
    tasks = conn.execute("SELECT file_name, status, document_id FROM rag.batch_files(%s)", (batch,)).fetchall()
    assert len(tasks) == expected_files
    docs = {t[2] for t in tasks if t[1] == "completed"}
    # one document per distinct content, none twice, and chunk indexes contiguous (no duplicate chunks)
    dup = conn.execute("SELECT count(*) FROM (SELECT file_hash FROM rag.document_files GROUP BY 1 HAVING count(*) > 1) d").fetchone()[0]
    assert dup == 0
    for d in docs:
        n, mx, distinct = conn.execute(
            "SELECT count(*), max(chunk_index), count(DISTINCT chunk_index) FROM rag.chunks WHERE document_id = %s", (d,)).fetchone()
        assert n == mx + 1 == distinct


def test_worker_ingests_mixed_batch_and_fails_only_the_corrupt_pdf(cluster, db, su):
    files = mixed_files()
    batch = upload(db, files, '{"batch": "mixed"}')
    status, completed, failed, total = wait_done(cluster, batch)
    assert (status, completed, failed, total) == ("partially failed", 19, 1, 20)
    errors = db.execute("SELECT file_name, error FROM rag.batch_files(%s) WHERE status = 'failed'", (batch,)).fetchall()
    assert errors[0][0] == "truncated.pdf" and "damaged or truncated" in errors[0][1]
    # every good file is searchable
    for name, phrase in [("sql-savepoint.html", "define a new savepoint within the current transaction"),
                         ("handbook.docx", "restore drills"), ("multipage.pdf", "brown fox"),
                         ("plain.txt", "tablespaces locations file system")]:
        hits = [r[0] for r in db.execute("SELECT file_name FROM rag.hybrid_search(%s, 5)", (phrase,)).fetchall()]
        assert name in hits, (name, phrase, hits)
    assert_each_file_once(db, batch, 20)
    # the dead letter is archived, not deleted (the queue is not the application's to read)
    assert su.execute("SELECT count(*) FROM pgmq.q_rag_documents").fetchone()[0] == 0


def test_a_file_refused_at_store_time_fails_alone_in_its_group(cluster, db, su, unique):
    # The worker stores a group of files in one transaction with all chunks in one INSERT; when that is
    # refused it must fall back to file-by-file so that only the refused file fails. A trigger refuses one.
    su.execute("""CREATE OR REPLACE FUNCTION public.refuse_one_file() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN IF NEW.file_name = 'refused.txt' THEN RAISE EXCEPTION 'refused by a test trigger'; END IF;
                  RETURN NEW; END $$""")
    su.execute("CREATE TRIGGER refuse_one_file BEFORE INSERT ON rag.document_files "
               "FOR EACH ROW EXECUTE FUNCTION public.refuse_one_file()")
    try:
        files = [(f"ok-{i}.txt", f"Group member {i} {unique}: checkpoints flush dirty pages to disk.".encode())
                 for i in range(4)]
        files.insert(2, ("refused.txt", f"The refused file {unique}.".encode()))
        batch = upload(db, files)
        status, completed, failed, total = wait_done(cluster, batch)
        assert (status, completed, failed, total) == ("partially failed", 4, 1, 5)
        error = db.execute("SELECT file_name, error FROM rag.batch_files(%s) WHERE status = 'failed'", (batch,)).fetchall()
        assert error[0][0] == "refused.txt" and "refused by a test trigger" in error[0][1]
        assert_each_file_once(db, batch, 5)
        names = {r[0] for r in db.execute("SELECT file_name FROM rag.documents")}
        assert names == {f"ok-{i}.txt" for i in range(4)}
    finally:
        su.execute("DROP TRIGGER IF EXISTS refuse_one_file ON rag.document_files")
        su.execute("DROP FUNCTION IF EXISTS public.refuse_one_file()")


def test_upload_is_transactional(cluster, db, su):
    with pytest.raises(psycopg.errors.RaiseException):
        with db.transaction():
            upload(db, [("a.txt", b"rolled back text")])
            db.execute("DO $$ BEGIN RAISE EXCEPTION 'abort'; END $$")
    assert db.execute("SELECT count(*) FROM rag.job_tasks WHERE file_name = 'a.txt'").fetchone()[0] == 0
    assert su.execute("SELECT count(*) FROM pgmq.q_rag_documents").fetchone()[0] == 0


def test_progress_is_notified(cluster, db):
    # one channel per batch (LISTEN has no privileges: only who knows the batch id can follow it)
    with cluster.connect_as("app_writer") as listener:
        with db.transaction():  # the worker cannot start before the listener listens
            batch = upload(db, [("notify.txt", b"A short text about listen and notify.")])
            channel = db.execute("SELECT rag.progress_channel(%s)", (batch,)).fetchone()[0]
            assert channel == "rag_progress_" + str(batch).replace("-", "")
            listener.execute(f"LISTEN {channel}")
        seen = set()
        for n in listener.notifies(timeout=60, stop_after=2):
            payload = json.loads(n.payload)
            assert payload["batch_id"] == str(batch)
            seen.add(payload["status"])
        assert {"processing", "completed"} <= seen


def test_kill_9_worker_mid_batch_loses_and_duplicates_nothing(cluster, db, su):
    files = [(p, (DOCS / p).read_bytes()) for p in ["sql-createtable.html", "sql-altertable.html", "sql-select.html",
                                                    "sql-createindex.html", "sql-copy.html", "sql-grant.html"]]
    batch = upload(db, files)
    deadline = time.time() + 120
    pid = None
    while time.time() < deadline:
        if db.execute("SELECT processing + completed FROM rag.batch_status(%s)", (batch,)).fetchone()[0] > 0:
            pid = worker_pid(su)
            if pid:
                break
        time.sleep(0.2)
    assert pid, "worker never picked the batch up"
    os.kill(pid, signal.SIGKILL)
    status, completed, failed, total = wait_done(cluster, batch)
    assert (status, completed, total) == ("completed", 6, 6)
    with cluster.connect() as conn:
        assert_each_file_once(conn, batch, 6)
        assert conn.execute("SELECT count(*) FROM rag.documents").fetchone()[0] == 6


def test_immediate_server_restart_mid_batch(cluster, db):
    files = [(p, (DOCS / p).read_bytes()) for p in ["sql-update.html", "sql-delete.html", "sql-insert.html",
                                                    "sql-createview.html", "sql-createrole.html"]]
    batch = upload(db, files)
    deadline = time.time() + 120
    while time.time() < deadline:
        if db.execute("SELECT processing + completed FROM rag.batch_status(%s)", (batch,)).fetchone()[0] > 0:
            break
        time.sleep(0.2)
    db.close()
    cluster.ctl("stop", STOP_MODE="immediate")
    cluster.ctl("start")
    status, completed, failed, total = wait_done(cluster, batch)
    assert (status, completed, total) == ("completed", 5, 5)
    with cluster.connect() as conn:
        assert_each_file_once(conn, batch, 5)


class StandIn(BaseHTTPRequestHandler):
    """An OpenAI-compatible embedding server: answers 429 with Retry-After to the first requests."""
    throttle = 2
    calls = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StandIn.calls.append(len(body["input"]))
        if any("REFUSE-ME" in text for text in body["input"]):
            # what OpenAI-compatible servers answer for input they will not embed
            out = json.dumps({"error": {"message": "input rejected", "type": "invalid_request_error"}}).encode()
            reply_json(self, 400, out)
            return
        if StandIn.throttle > 0:
            StandIn.throttle -= 1
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = []
        for i, text in enumerate(body["input"]):
            v = [float((hash(text) >> k) % 7) + 1.0 for k in range(8)]
            data.append({"object": "embedding", "index": i, "embedding": v})
        out = json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()
        reply_json(self, 200, out)

    def log_message(self, *a):
        pass


@contextlib.contextmanager
def worker_on_stand_in(su):
    """Point the background worker at a StandIn server (OpenAI wire format, 8-d vectors, one attempt per
    task) for the duration of the block; the settings are reset afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        su.execute("ALTER SYSTEM SET rag.embedding_provider = 'openai'")
        su.execute("ALTER SYSTEM SET rag.embedding_model = 'stand-in-8d'")
        su.execute(f"ALTER SYSTEM SET rag.embedding_url = 'http://127.0.0.1:{server.server_port}'")
        su.execute("ALTER SYSTEM SET rag.max_attempts = 1")
        su.execute("SELECT pg_reload_conf()")
        time.sleep(1.5)
        StandIn.calls.clear()
        yield server
    finally:
        for g in ["rag.embedding_provider", "rag.embedding_model", "rag.embedding_url", "rag.max_attempts"]:
            su.execute(f"ALTER SYSTEM RESET {g}")
        su.execute("SELECT pg_reload_conf()")
        server.shutdown()


def test_429_with_retry_after_is_a_wait_not_a_failure(cluster, db, su):
    with worker_on_stand_in(su):
        batch = upload(db, [("t1.txt", b"Throttled text one about archives."), ("t2.txt", b"Throttled text two about replicas.")])
        status, completed, failed, total = wait_done(cluster, batch, timeout=120)
        assert (status, completed, failed) == ("completed", 2, 0)
        assert StandIn.throttle == 0 and len(StandIn.calls) >= 3  # two 429s, then success
        model = db.execute("SELECT DISTINCT embedding_model FROM rag.chunks c JOIN rag.job_tasks t ON t.document_id = c.document_id WHERE t.batch_id = %s", (batch,)).fetchall()
        assert model == [("openai/stand-in-8d",)]


def test_a_file_the_embedding_server_refuses_fails_alone(cluster, db, su):
    # The worker embeds chunks of several files in one request; when the server refuses that request,
    # it must retry file by file so that the other files of the batch are not failed with it.
    with worker_on_stand_in(su):
        batch = upload(db, [("good1.txt", b"Write-ahead logging protects committed data."),
                            ("bad.txt", b"This text says REFUSE-ME to the embedding server."),
                            ("good2.txt", b"Streaming replication ships WAL to standbys.")])
        status, completed, failed, total = wait_done(cluster, batch, timeout=120)
        assert (status, completed, failed) == ("partially failed", 2, 1)
        error = db.execute("SELECT file_name, error FROM rag.batch_files(%s) WHERE status = 'failed'", (batch,)).fetchall()
        assert error[0][0] == "bad.txt" and "400" in error[0][1]
        assert StandIn.calls[0] == 3  # the three files went out in one request first
        assert_each_file_once(db, batch, 3)
