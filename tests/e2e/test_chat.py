"""Chat on a real cluster: history survives a restart, rag.ask against stand-in Ollama and OpenAI chat
servers (real wire formats), extractive answers that quote their sources, and clear errors.
The application asks as app_reader (granted rag_reader only) over documents app_writer ingested; the chat
server's URL is a superuser-only setting, configured for that role by the superuser."""
import contextlib
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from conftest import doc_page, reply_json

PAGES = ["sql-vacuum.html", "sql-createindex.html", "sql-reindex.html", "sql-cluster.html", "sql-analyze.html"]


class ChatStandIn(BaseHTTPRequestHandler):
    """Speaks Ollama's /api/chat and OpenAI's /v1/chat/completions; records every request body."""
    requests = []
    fail_with = None
    delay = 0.0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ChatStandIn.requests.append((self.path, body))
        if ChatStandIn.delay:
            time.sleep(ChatStandIn.delay)
        if ChatStandIn.fail_with:
            out = b'{"error": "model exploded"}'
            status = ChatStandIn.fail_with
        else:
            system = body["messages"][0]["content"].lower()
            text = "how to rebuild an index with reindex" if "standalone" in system or "rewrite" in system else \
                "Use REINDEX to rebuild an index [1]."
            if self.path.endswith("/api/chat"):
                out = json.dumps({"model": body["model"], "message": {"role": "assistant", "content": text}, "done": True}).encode()
            else:
                out = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": text}}]}).encode()
            status = 200
        reply_json(self, status, out)

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@contextlib.contextmanager
def app(cluster, **settings):
    """A connection as app_reader; `settings` (rag.llm_url is superuser-only) set for the role by the superuser."""
    with cluster.connect() as su:
        for k, v in settings.items():
            su.execute(f"ALTER ROLE app_reader SET rag.{k} = '{v}'")
    try:
        with cluster.connect_as("app_reader") as conn:
            yield conn
    finally:
        with cluster.connect() as su:
            su.execute("ALTER ROLE app_reader RESET ALL")


@pytest.fixture(scope="module")
def docs(cluster):
    with cluster.connect_as("app_writer") as conn:
        for p in PAGES:
            conn.execute("SELECT rag.ingest_document(%s, %s)", (p, doc_page(p)))
    yield


def ask(conn, sid, q, k=5):
    return conn.execute("SELECT rag.ask(%s, %s, %s)", (sid, q, k)).fetchone()[0]


def test_history_survives_restart_and_third_question_uses_it(cluster, docs, chat_server):
    sid = uuid.uuid4()
    with app(cluster) as conn:
        a1 = ask(conn, sid, "What does VACUUM FULL do to the table?")
        a2 = ask(conn, sid, "How do I rebuild a corrupted index?")
        assert a1["model"] == "extractive" and a1["sources"]
    cluster.ctl("stop")
    cluster.ctl("start")
    with app(cluster, llm_url=chat_server) as conn:
        history = conn.execute("SELECT role, content FROM rag.chat_history(%s)", (sid,)).fetchall()
        assert [r for r, _ in history] == ["user", "assistant", "user", "assistant"]
        assert history[0][1] == "What does VACUUM FULL do to the table?"
        assert history[3][1] == a2["answer"]
        ChatStandIn.requests.clear()
        conn.execute("SET rag.llm_provider = 'ollama'")
        a3 = ask(conn, sid, "And can it run without blocking writes?")
        assert a3["model"] == "ollama/llama3.2"
        assert a3["search_query"] == "how to rebuild an index with reindex"  # rewritten from the history
        paths = [p for p, _ in ChatStandIn.requests]
        assert paths == ["/api/chat", "/api/chat"]
        rewrite_prompt = json.dumps(ChatStandIn.requests[0][1]["messages"])
        assert "How do I rebuild a corrupted index?" in rewrite_prompt  # the history was used
        answer_messages = ChatStandIn.requests[1][1]["messages"]
        first_source = conn.execute("SELECT content FROM rag.chunks WHERE id = %s",
                                    (a3["sources"][0]["chunk_id"],)).fetchone()[0]
        assert first_source[:60] in answer_messages[-1]["content"]  # the retrieved chunks
        assert "What does VACUUM FULL do to the table?" in json.dumps(answer_messages)  # and the history
        assert conn.execute("SELECT count(*) FROM rag.chat_history(%s)", (sid,)).fetchone()[0] == 6


def test_openai_format_and_sources_in_prompt(cluster, docs, chat_server):
    sid = uuid.uuid4()
    with app(cluster, llm_url=chat_server) as conn:
        ChatStandIn.requests.clear()
        conn.execute("SET rag.llm_provider = 'openai'")
        conn.execute("SET rag.llm_model = 'stand-in'")
        a = ask(conn, sid, "How do I rebuild an index?")
        assert a["answer"] == "Use REINDEX to rebuild an index [1]."
        assert a["model"] == "openai/stand-in"
        path, body = ChatStandIn.requests[-1]
        assert path == "/v1/chat/completions" and body["model"] == "stand-in"
        files = {s["file_name"] for s in a["sources"]}
        assert "sql-reindex.html" in files
        meta = conn.execute("SELECT metadata FROM rag.chat_history(%s) WHERE role = 'assistant'", (sid,)).fetchone()[0]
        assert meta["sources"] == a["sources"]


def test_llm_errors_store_no_half_answer(cluster, docs, chat_server):
    sid = uuid.uuid4()
    with app(cluster, llm_url=chat_server) as conn:
        conn.execute("SET rag.llm_provider = 'openai'")
        conn.execute("SET rag.llm_max_retries = 1")
        ChatStandIn.fail_with = 500
        try:
            with pytest.raises(psycopg.errors.SystemError, match="HTTP 500"):
                ask(conn, sid, "How do I rebuild an index?")
        finally:
            ChatStandIn.fail_with = None
        assert conn.execute("SELECT count(*) FROM rag.chat_history(%s)", (sid,)).fetchone()[0] == 0
        conn.execute("SET rag.llm_timeout_ms = 300")
        conn.execute("SET rag.llm_max_retries = 0")
        ChatStandIn.delay = 1.0
        try:
            with pytest.raises(psycopg.errors.SystemError, match="timed out"):
                ask(conn, sid, "How do I rebuild an index?")
        finally:
            ChatStandIn.delay = 0.0
        assert conn.execute("SELECT count(*) FROM rag.chat_history(%s)", (sid,)).fetchone()[0] == 0
    with app(cluster, llm_url="http://127.0.0.1:9") as conn:  # nothing listens: connection refused
        conn.execute("SET rag.llm_provider = 'openai'")
        with pytest.raises(psycopg.errors.SystemError, match="connect"):
            ask(conn, sid, "How do I rebuild an index?")
        assert conn.execute("SELECT count(*) FROM rag.chat_history(%s)", (sid,)).fetchone()[0] == 0


def test_extractive_answer_quotes_only_its_sources(cluster, docs):
    with app(cluster) as conn:
        a = ask(conn, uuid.uuid4(), "Which lock does VACUUM FULL take on the table?")
        quotes = re.findall(r'^"(.*)" \[(\d+)\]$', a["answer"], flags=re.M)
        assert quotes, a["answer"]
        for sentence, rank in quotes:
            src = a["sources"][int(rank) - 1]
            content = conn.execute("SELECT content FROM rag.chunks WHERE id = %s", (src["chunk_id"],)).fetchone()[0]
            assert sentence in content


def test_append_racing_a_delete_starts_a_fresh_session(cluster):
    """The append waits for the deleting transaction; once it commits, the append re-creates the
    session (chat_append creates missing sessions) holding only the new message: no error, no orphan
    message, no resurrected history."""
    sid = uuid.uuid4()
    with cluster.connect_as("app_reader") as a, cluster.connect_as("app_reader") as b:
        a.execute("SELECT rag.chat_append(%s, 'user', 'hello')", (sid,))
        a.autocommit = False
        a.execute("SELECT rag.delete_session(%s)", (sid,))  # holds the row lock
        result = {}

        def append():
            try:
                b.execute("SELECT rag.chat_append(%s, 'user', 'racing append')", (sid,))
                result["ok"] = True
            except psycopg.Error as e:
                result["error"] = str(e)

        t = threading.Thread(target=append)
        t.start()
        time.sleep(0.5)
        a.commit()
        t.join(10)
        assert result == {"ok": True}, result
        history = b.execute("SELECT content FROM rag.chat_history(%s)", (sid,)).fetchall()
        assert history == [("racing append",)]
        orphans = b.execute("SELECT count(*) FROM rag.chat_messages m WHERE NOT EXISTS "
                            "(SELECT 1 FROM rag.chat_sessions s WHERE s.id = m.session_id)").fetchone()[0]
        assert orphans == 0


def test_concurrent_appends_keep_a_total_order(cluster):
    sid = uuid.uuid4()
    def worker(n):
        with cluster.connect_as("app_reader") as c:
            for i in range(20):
                c.execute("SELECT rag.chat_append(%s, 'user', %s)", (sid, f"w{n}-{i}"))
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    with cluster.connect_as("app_reader") as conn:
        rows = conn.execute("SELECT id, content, created_at FROM rag.chat_history(%s)", (sid,)).fetchall()
        assert len(rows) == 80
        ids = [r[0] for r in rows]
        assert ids == sorted(ids)
        for n in range(4):  # each writer's messages in its own order
            mine = [r[1] for r in rows if r[1].startswith(f"w{n}-")]
            assert mine == [f"w{n}-{i}" for i in range(20)]
