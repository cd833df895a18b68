"""Tenants (issue 10): one application role serves two tenants (rag.set_tenant per transaction), and a second
application role sits beside it. Neither tenant nor role can see or change the other's data through any
function, view, table or notification, and a tenant still gets k results when the other holds 99% of the
chunks (the tenant condition runs inside the BM25 and HNSW scans).

Embeddings come from a stand-in OpenAI-compatible server (8-d vectors), configured for the roles by the
superuser, so that a thousand documents ingest in seconds."""
import contextlib
import hashlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from conftest import reply_json

APP, OTHER = "tenant_app", "other_app"
A_DOCS, B_DOCS = 12, 1188  # tenant b holds 99% of the chunks


class Embedder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = []
        for i, text in enumerate(body["input"]):
            h = hashlib.sha256(text.encode()).digest()
            data.append({"object": "embedding", "index": i, "embedding": [1.0 + b / 64 for b in h[:8]]})
        out = json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()
        reply_json(self, 200, out)

    def log_message(self, *a):
        pass


@contextlib.contextmanager
def tenant(conn, name):
    """One transaction acting for `name`."""
    with conn.transaction():
        assert conn.execute("SELECT rag.set_tenant(%s)", (name,)).fetchone()[0] == name
        yield conn


@pytest.fixture(scope="module")
def world(cluster):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Embedder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with cluster.connect() as su:
        su.execute("DELETE FROM rag.document_files")
        for role in (APP, OTHER):
            if not su.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                su.execute(f"CREATE ROLE {role} LOGIN")
            su.execute(f"GRANT rag_writer TO {role}")
            su.execute(f"ALTER ROLE {role} SET rag.embedding_provider = 'openai'")
            su.execute(f"ALTER ROLE {role} SET rag.embedding_model = 'tenant-8d'")
            su.execute(f"ALTER ROLE {role} SET rag.embedding_url = 'http://127.0.0.1:{server.server_port}'")
    app, other = cluster.connect_as(APP), cluster.connect_as(OTHER)
    ids = {"a": [], "b": [], "other": []}
    with tenant(app, "a"):
        for i in range(A_DOCS):
            ids["a"].append(app.execute("SELECT rag.ingest_document(%s, %s)",
                                        (f"a-{i}.txt", f"Tenant a note {i}: checkpoint tuning for the write-ahead log.")).fetchone()[0])
    with tenant(app, "b"):
        for i in range(B_DOCS):
            ids["b"].append(app.execute("SELECT rag.ingest_document(%s, %s)",
                                        (f"b-{i}.txt", f"Tenant b note {i}: checkpoint tuning for the write-ahead log.")).fetchone()[0])
    ids["other"].append(other.execute("SELECT rag.ingest_document('o.txt', 'Other role: checkpoint tuning notes.')").fetchone()[0])
    yield {"app": app, "other": other, "ids": {k: {str(x) for x in v} for k, v in ids.items()},
           "embedding_url": f"http://127.0.0.1:{server.server_port}"}
    app.close()
    other.close()
    server.shutdown()
    with cluster.connect() as su:
        su.execute("DELETE FROM rag.document_files WHERE owner IN (%s, %s)", (APP, OTHER))
        for role in (APP, OTHER):
            su.execute(f"ALTER ROLE {role} RESET ALL")


SEARCHES = ["SELECT document_id::text FROM rag.bm25_search('checkpoint tuning', %s)",
            "SELECT document_id::text FROM rag.vector_search('checkpoint tuning', %s)",
            "SELECT document_id::text FROM rag.hybrid_search('checkpoint tuning', %s)",
            "SELECT document_id::text FROM rag.hybrid_search('checkpoint tuning', %s, filter => '{}')"]


@pytest.mark.parametrize("sql", SEARCHES)
def test_a_small_tenant_gets_k_results_of_its_own(world, sql):
    app, ids = world["app"], world["ids"]
    with tenant(app, "a"):
        got = [r[0] for r in app.execute(sql, (10,)).fetchall()]
    assert len(got) == 10 and set(got) <= ids["a"], got
    with tenant(app, "b"):
        got = [r[0] for r in app.execute(sql, (10,)).fetchall()]
    assert len(got) == 10 and set(got) <= ids["b"]
    # no tenant set: the role's rows without a tenant (none here)
    assert app.execute(sql, (10,)).fetchall() == []
    # another role sees only its own, whatever tenant it names
    other = world["other"]
    assert {r[0] for r in other.execute(sql, (10,)).fetchall()} == ids["other"]
    with tenant(other, "a"):
        assert other.execute(sql, (10,)).fetchall() == []


def test_views_and_tables_show_only_the_current_tenant(world):
    app, ids = world["app"], world["ids"]
    for t in ("a", "b"):
        with tenant(app, t):
            assert {r[0] for r in app.execute("SELECT id::text FROM rag.documents")} == ids[t]
            assert {r[0] for r in app.execute("SELECT document_id::text FROM rag.chunks")} == ids[t]
            assert {r[0] for r in app.execute("SELECT DISTINCT tenant FROM rag.document_files")} == {t}


def test_a_cached_plan_does_not_keep_its_tenant(world):
    app, ids = world["app"], world["ids"]
    app.execute("SET plan_cache_mode = force_generic_plan")
    try:
        sql = ("SELECT document_id::text FROM rag.chunks WHERE content_with_context ||| %s "
               "ORDER BY pdb.score(id) DESC LIMIT 5")
        for t in ("a", "b", "a"):
            with tenant(app, t):
                got = {r[0] for r in app.execute(sql, ("checkpoint",), prepare=True).fetchall()}
            assert got and got <= ids[t], t
    finally:
        app.execute("RESET plan_cache_mode")


def test_hybrid_searchs_prepared_row_lookup_follows_role_and_tenant(world, cluster):
    """rag.hybrid_search reads its hits' columns with a statement prepared once per backend. One backend
    alternates roles (SET ROLE) and tenants, with generic plans forced: PostgreSQL's plan cache re-applies
    row-level security for each role, and the tenant is read at each execution."""
    ids = world["ids"]
    with cluster.connect() as su:
        for name, value in (("rag.embedding_provider", "openai"), ("rag.embedding_model", "tenant-8d"),
                            ("rag.embedding_url", world["embedding_url"]), ("plan_cache_mode", "force_generic_plan")):
            su.execute("SELECT set_config(%s, %s, false)", (name, value))
        sql = "SELECT document_id::text FROM rag.hybrid_search('checkpoint tuning', 10)"
        for role, t in [(APP, "a"), (APP, "b"), (OTHER, None), (APP, "a"), (OTHER, "a"), (APP, "b")] * 2:
            su.execute(f"SET ROLE {role}")
            with su.transaction():
                if t:
                    su.execute("SELECT rag.set_tenant(%s)", (t,))
                got = [r[0] for r in su.execute(sql)]
            su.execute("RESET ROLE")
            if role == APP:
                assert len(got) == 10 and set(got) <= ids[t], (role, t)
            else:
                assert set(got) == (ids["other"] if t is None else set()), (role, t)


def test_nothing_of_the_other_tenant_can_be_changed(world):
    app, ids = world["app"], world["ids"]
    victim = sorted(ids["b"])[0]
    with tenant(app, "a"):
        assert app.execute("SELECT rag.delete_document(%s)", (victim,)).fetchone()[0] is False
        assert app.execute("DELETE FROM rag.document_files WHERE tenant = 'b'").rowcount == 0
        # a row claiming the other tenant (or another owner) is refused by the policy's check
        for owner, t in [(APP, "b"), (OTHER, "a")]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                with app.transaction():
                    app.execute("INSERT INTO rag.document_files (file_name, file_type, file_size_bytes, file_hash, owner, tenant) "
                                "VALUES ('forged.txt', 'text', 1, 'h', %s, %s)", (owner, t))
    with tenant(app, "b"):
        assert app.execute("SELECT count(*) FROM rag.document_files WHERE id = %s", (victim,)).fetchone()[0] == 1


def test_a_transaction_serves_one_tenant_and_settings_cannot_forge_it(world):
    app = world["app"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="one tenant"):
        with tenant(app, "a"):
            app.execute("SELECT rag.set_tenant('b')")
    with tenant(app, "a"):
        # a placeholder setting of the same name changes nothing
        app.execute("SELECT set_config('rag.tenant', 'b', true)")
        assert app.execute("SELECT rag.current_tenant()").fetchone()[0] == "a"
    # the tenant ends with its transaction
    assert app.execute("SELECT rag.current_tenant()").fetchone()[0] == ""
    for bad in ["", "x" * 300, "a\nb"]:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            with app.transaction():
                app.execute("SELECT rag.set_tenant(%s)", (bad,))


def test_the_same_bytes_make_one_document_per_tenant_and_role(world):
    app, other = world["app"], world["other"]
    text = f"Shared bytes {uuid.uuid4()}: the same upload by different tenants."
    got = []
    for conn, t in [(app, "a"), (app, "b"), (other, None)]:
        if t:
            with tenant(conn, t):
                got += [conn.execute("SELECT rag.ingest_document('same.txt', %s)", (text,)).fetchone()[0] for _ in range(2)]
        else:
            got += [conn.execute("SELECT rag.ingest_document('same.txt', %s)", (text,)).fetchone()[0] for _ in range(2)]
    assert got[0] == got[1] and got[2] == got[3] and got[4] == got[5]  # dedup within each
    assert len({got[0], got[2], got[4]}) == 3  # never across
    with tenant(app, "a"):
        assert app.execute("SELECT rag.delete_document(%s)", (got[0],)).fetchone()[0] is True
    with tenant(app, "b"):
        assert app.execute("SELECT count(*) FROM rag.documents WHERE id = %s", (got[2],)).fetchone()[0] == 1
        app.execute("SELECT rag.delete_document(%s)", (got[2],))
    other.execute("SELECT rag.delete_document(%s)", (got[4],))


def test_chat_sessions_stay_with_their_tenant(world):
    app = world["app"]
    sid = uuid.uuid4()
    with tenant(app, "b"):
        app.execute("SELECT rag.chat_append(%s, 'user', 'secret of tenant b')", (sid,))
        answer = app.execute("SELECT rag.ask(%s, 'checkpoint tuning?', 5)", (sid,)).fetchone()[0]
        assert {s["document_id"] for s in answer["sources"]} <= world["ids"]["b"]
    with tenant(app, "a"):
        assert sid not in [r[0] for r in app.execute("SELECT id FROM rag.list_sessions(true)")]
        assert app.execute("SELECT count(*) FROM rag.chat_history(%s)", (sid,)).fetchone()[0] == 0
        assert app.execute("SELECT count(*) FROM rag.chat_messages").fetchone()[0] == 0
        for sql in ("SELECT rag.rename_session(%s, 'x')", "SELECT rag.archive_session(%s)", "SELECT rag.delete_session(%s)"):
            assert app.execute(sql, (sid,)).fetchone()[0] is False
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not one of this role's sessions"):
        with tenant(app, "a"):
            app.execute("SELECT rag.chat_append(%s, 'user', 'injected')", (sid,))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        world["other"].execute("SELECT rag.ask(%s, 'checkpoint?', 3)", (sid,))
    with tenant(app, "b"):
        history = [r[0] for r in app.execute("SELECT content FROM rag.chat_history(%s)", (sid,))]
        assert history[0] == "secret of tenant b" and "injected" not in history and len(history) == 3
        app.execute("SELECT rag.delete_session(%s)", (sid,))


def test_batches_and_their_notifications_stay_with_their_tenant(world, cluster):
    app = world["app"]
    with cluster.connect_as(APP) as listener:
        with tenant(app, "b"):
            batch = app.execute("SELECT rag.upload(ARRAY['b-upload.txt'], ARRAY[convert_to(%s, 'UTF8')])",
                                (f"Tenant b upload {uuid.uuid4()}",)).fetchone()[0]
            channel_b = app.execute("SELECT rag.progress_channel(%s)", (batch,)).fetchone()[0]
            listener.execute(f"LISTEN {channel_b}")
        with tenant(app, "a"):
            assert app.execute("SELECT count(*) FROM rag.batch_status(%s)", (batch,)).fetchone()[0] == 0
            assert app.execute("SELECT count(*) FROM rag.batch_files(%s)", (batch,)).fetchone()[0] == 0
            assert app.execute("SELECT rag.progress_channel(%s)", (batch,)).fetchone()[0] is None
            assert app.execute("SELECT rag.delete_batch(%s)", (batch,)).fetchone()[0] is False
            assert app.execute("SELECT count(*) FROM rag.job_tasks").fetchone()[0] == 0
        assert world["other"].execute("SELECT count(*) FROM rag.batch_status(%s)", (batch,)).fetchone()[0] == 0
        # the notifications of b's batch go to b's channel only, and carry ids and a status, no content
        seen = []
        for n in listener.notifies(timeout=120, stop_after=2):
            assert n.channel == channel_b
            payload = json.loads(n.payload)
            assert set(payload) == {"batch_id", "task_id", "status"} and payload["batch_id"] == str(batch)
            seen.append(payload["status"])
        assert "processing" in seen
        deadline = time.time() + 120
        while time.time() < deadline:
            with tenant(app, "b"):
                status = app.execute("SELECT status FROM rag.batch_status(%s)", (batch,)).fetchone()[0]
            if status == "completed":
                break
            time.sleep(0.5)
        assert status == "completed"
        with tenant(app, "b"):
            doc = app.execute("SELECT d.tenant FROM rag.batch_files(%s) f JOIN rag.documents d ON d.id = f.document_id",
                              (batch,)).fetchone()
            assert doc == ("b",)  # the worker wrote it for the uploader's tenant
            assert app.execute("SELECT rag.delete_batch(%s)", (batch,)).fetchone()[0] is True


def test_the_admin_sees_every_tenant(world, cluster):
    ids = world["ids"]
    with cluster.connect_as("app_admin") as admin:
        owned = {r[0] for r in admin.execute("SELECT id::text FROM rag.documents WHERE owner IN (%s, %s)", (APP, OTHER))}
        assert ids["a"] | ids["b"] | ids["other"] <= owned
