"""Keys stay home (issue 10, item 3): an API key is read from a file a superuser names, is sent only to
the URL a superuser configured with it, and never appears in settings, errors or the server log — whatever
provider and model an ordinary role chooses."""
import contextlib
import json
import os
import pwd
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from conftest import ROOT, reply_json

KEY = "sk-test-0123456789abcdefSECRET"


class Recorder(BaseHTTPRequestHandler):
    """Answers like an OpenAI- or Ollama-compatible embedding server and records the Authorization
    header of every request, per server port."""
    seen = {}
    batches = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0") or 0)) or b"{}")
        Recorder.seen.setdefault(self.server.server_port, []).append(self.headers.get("Authorization"))
        texts = body.get("input") or body.get("prompt") or ["x"]
        texts = texts if isinstance(texts, list) else [texts]
        Recorder.batches.append(len(texts))
        if self.path.startswith("/api/embed"):
            out = {"model": body.get("model"), "embeddings": [[1.0, 2.0, 3.0, 4.0] for _ in texts]}
        else:
            out = {"object": "list", "model": body.get("model"),
                   "data": [{"object": "embedding", "index": i, "embedding": [1.0, 2.0, 3.0, 4.0]} for i in range(len(texts))]}
        data = json.dumps(out).encode()
        reply_json(self, 200, data)

    def log_message(self, *a):
        pass


@contextlib.contextmanager
def server(port=0):
    s = ThreadingHTTPServer(("127.0.0.1", port), Recorder)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        yield s
    finally:
        s.shutdown()
        s.server_close()


@pytest.fixture
def app_role(cluster):
    with cluster.connect() as admin:
        admin.execute("DROP ROLE IF EXISTS key_thief")
        admin.execute("CREATE ROLE key_thief LOGIN")
        admin.execute("GRANT rag_writer TO key_thief")  # an ordinary application role, nothing more
    base = cluster.url.rsplit("@", 1)[1]
    yield f"postgresql://key_thief@{base}"
    with cluster.connect() as admin:
        admin.execute("DROP OWNED BY key_thief")
        admin.execute("DROP ROLE IF EXISTS key_thief")


def test_a_key_goes_only_to_its_configured_url(cluster, su, app_role, tmp_path):
    key_file = ROOT / ".stack" / "e2e-api-key"
    key_file.write_text(KEY + "\n")
    os.chown(key_file, pwd.getpwnam("ragbench").pw_uid, -1)
    os.chmod(key_file, 0o600)
    Recorder.seen = {}
    try:
        # the listener: Ollama's default port on this machine, where a key must never arrive
        with server() as good, server(11434) as thief:
            good_url = f"http://127.0.0.1:{good.server_port}/?token=url-secret"
            su.execute(f"ALTER SYSTEM SET rag.embedding_url = '{good_url}'")
            su.execute(f"ALTER SYSTEM SET rag.embedding_api_key_file = '{key_file}'")
            su.execute("ALTER SYSTEM SET rag.embedding_provider = 'openai'")
            su.execute("ALTER SYSTEM SET rag.llm_url = 'http://127.0.0.1:%d'" % good.server_port)
            su.execute(f"ALTER SYSTEM SET rag.llm_api_key_file = '{key_file}'")
            su.execute("SELECT pg_reload_conf()")
            with psycopg.connect(app_role, autocommit=True) as app:
                for provider in ("openai", "ollama", "builtin", "OpenAI", ""):
                    for model in ("", "text-embedding-3-small", "nomic-embed-text", "all-MiniLM-L6-v2"):
                        app.execute(f"SET rag.embedding_provider = '{provider}'")
                        app.execute(f"SET rag.embedding_model = '{model}'")
                        try:
                            app.execute("SELECT rag.embed('where does my key go?')")
                        except psycopg.Error as e:
                            assert KEY not in str(e) and "url-secret" not in str(e) and str(key_file) not in str(e)
                # the URL, the key file and the caps cannot be set or read by an ordinary role
                for setting in ("rag.embedding_url", "rag.embedding_api_key_file", "rag.llm_url",
                                "rag.llm_api_key_file", "rag.max_http_timeout_ms", "rag.max_http_retries"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        app.execute(f"SET {setting} = 'http://127.0.0.1:11434'")
                for setting in ("rag.embedding_url", "rag.embedding_api_key_file", "rag.llm_api_key_file"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        app.execute(f"SHOW {setting}")
                rows = app.execute("SELECT name, setting FROM pg_settings WHERE name LIKE 'rag.%'").fetchall()
                assert all(KEY not in (v or "") for _, v in rows)
            # the key reached the configured server and no other
            assert Recorder.seen.get(11434, []) == []
            assert Recorder.seen.get(good.server_port) and set(Recorder.seen[good.server_port]) == {f"Bearer {KEY}"}
    finally:
        for g in ("embedding_url", "embedding_api_key_file", "embedding_provider", "llm_url", "llm_api_key_file"):
            su.execute(f"ALTER SYSTEM RESET rag.{g}")
        su.execute("SELECT pg_reload_conf()")
        key_file.unlink(missing_ok=True)
    log = Path(cluster.env["PGDATA"] + ".log").read_text(errors="replace")
    assert KEY not in log


def test_a_key_file_without_its_url_sends_nothing(cluster, su):
    key_file = ROOT / ".stack" / "e2e-api-key-2"
    key_file.write_text(KEY)
    os.chown(key_file, pwd.getpwnam("ragbench").pw_uid, -1)
    try:
        su.execute(f"SET rag.embedding_api_key_file = '{key_file}'")
        su.execute("SET rag.embedding_provider = 'ollama'")
        with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
            su.execute("SELECT rag.embed('x')")
        assert "rag.embedding_url is not" in str(e.value) and KEY not in str(e.value)
    finally:
        su.execute("RESET rag.embedding_api_key_file")
        su.execute("RESET rag.embedding_provider")
        key_file.unlink(missing_ok=True)


def test_errors_do_not_show_the_urls_query_string(cluster, su, app_role):
    # nothing listens on port 9: the error names the provider, never the URL's credentials or query,
    # whether the application's own call fails or the worker's (seen through rag.batch_status)
    key_file = ROOT / ".stack" / "e2e-api-key-3"
    key_file.write_text(KEY)
    os.chown(key_file, pwd.getpwnam("ragbench").pw_uid, -1)
    url = "http://user:pw@127.0.0.1:9/v?token=url-secret"
    try:
        for g, v in [("embedding_provider", "openai"), ("embedding_model", "refused-8d"), ("embedding_url", url),
                     ("embedding_api_key_file", str(key_file)), ("embedding_max_retries", "0"), ("max_attempts", "1")]:
            su.execute(f"ALTER SYSTEM SET rag.{g} = '{v}'")
        su.execute("SELECT pg_reload_conf()")
        with psycopg.connect(app_role, autocommit=True) as app:
            with pytest.raises(psycopg.Error) as e:
                app.execute("SELECT rag.embed('x')")
            text = str(e.value) + str(e.value.diag.message_hint) + str(e.value.diag.message_detail)
            assert "openai" in text and "url-secret" not in text and "pw@" not in text and KEY not in text
            for setting in ("rag.embedding_url", "rag.embedding_api_key_file"):
                for sql in (f"SELECT current_setting('{setting}')", f"SELECT current_setting('{setting}', true)"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        app.execute(sql)
            batch = app.execute("SELECT rag.upload(ARRAY['k.txt'], ARRAY[convert_to('worker error text', 'UTF8')])").fetchone()[0]
            for _ in range(240):
                status, errors = app.execute("SELECT status, errors FROM rag.batch_status(%s)", (batch,)).fetchone()
                if status == "failed":
                    break
                time.sleep(0.5)
            assert status == "failed" and errors, errors
            dumped = json.dumps(errors)
            assert "openai" in dumped and "url-secret" not in dumped and "pw@" not in dumped and KEY not in dumped
            app.execute("SELECT rag.delete_batch(%s)", (batch,))
    finally:
        for g in ("embedding_provider", "embedding_model", "embedding_url", "embedding_api_key_file",
                  "embedding_max_retries", "max_attempts"):
            su.execute(f"ALTER SYSTEM RESET rag.{g}")
        su.execute("SELECT pg_reload_conf()")
        key_file.unlink(missing_ok=True)
    # (the URL itself is a setting: PostgreSQL logs it on reload, so credentials belong in the key file)
    log = Path(cluster.env["PGDATA"] + ".log").read_text(errors="replace")
    assert KEY not in log


def test_timeouts_and_retries_are_capped_for_everyone(cluster, su):
    import socket
    import time
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts and never answers
    try:
        assert su.execute("SHOW rag.max_http_timeout_ms").fetchone()[0] == "5min"
        assert su.execute("SHOW rag.max_http_retries").fetchone()[0] == "5"
        su.execute("SET rag.max_http_timeout_ms = 1000")  # what an administrator allows
        su.execute("SET rag.max_http_retries = 0")
        su.execute("SET rag.embedding_provider = 'ollama'")
        su.execute(f"SET rag.embedding_url = 'http://127.0.0.1:{silent.getsockname()[1]}'")
        su.execute("SET rag.embedding_timeout_ms = 600000")  # what a session asks for
        su.execute("SET rag.embedding_max_retries = 100")
        t0 = time.time()
        with pytest.raises(psycopg.Error) as e:
            su.execute("SELECT rag.embed('x')")
        assert time.time() - t0 < 5, "the cap did not apply"
        assert "timed out after 1.0 s" in str(e.value)
    finally:
        for g in ("max_http_timeout_ms", "max_http_retries", "embedding_provider", "embedding_url",
                  "embedding_timeout_ms", "embedding_max_retries"):
            su.execute(f"RESET rag.{g}")
        silent.close()


def test_an_ordinary_role_chooses_among_the_models_the_administrator_allows(cluster, su, app_role):
    Recorder.batches = []
    with server() as srv:
        su.execute("ALTER SYSTEM SET rag.allowed_embedding_models = 'builtin/all-MiniLM-L6-v2, openai/allowed-4d'")
        su.execute("ALTER SYSTEM SET rag.allowed_llm_models = 'openai/gpt-allowed'")
        su.execute(f"ALTER SYSTEM SET rag.embedding_url = 'http://127.0.0.1:{srv.server_port}'")
        su.execute("ALTER SYSTEM SET rag.max_embedding_batch_size = 2")
        su.execute("SELECT pg_reload_conf()")
        try:
            with psycopg.connect(app_role, autocommit=True) as app:
                # the settings themselves are the administrator's
                for setting in ("rag.allowed_embedding_models", "rag.allowed_llm_models", "rag.max_embedding_batch_size"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        app.execute(f"SET {setting} = '*'")
                assert len(app.execute("SELECT rag.embed('allowed')").fetchone()[0]) > 0  # builtin: allowed
                app.execute("SET rag.embedding_provider = 'openai'")
                app.execute("SET rag.embedding_model = 'allowed-4d'")
                app.execute("SET rag.embedding_batch_size = 4096")  # what the session asks for
                n = app.execute("SELECT count(*) FROM rag.embed_many(ARRAY['a', 'b', 'c', 'd', 'e'])").fetchone()[0]
                assert n == 5 and Recorder.batches == [2, 2, 1]  # the administrator's cap
                for provider, model in [("openai", "text-embedding-3-large"), ("ollama", "allowed-4d"), ("ollama", "")]:
                    app.execute(f"SET rag.embedding_provider = '{provider}'")
                    app.execute(f"SET rag.embedding_model = '{model}'")
                    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="rag.allowed_embedding_models"):
                        app.execute("SELECT rag.embed('refused')")
                app.execute("RESET rag.embedding_provider")
                app.execute("RESET rag.embedding_model")
                app.execute("SET rag.llm_provider = 'ollama'")
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="rag.allowed_llm_models"):
                    app.execute("SELECT rag.ask(gen_random_uuid(), 'which model?')")
                # a session's own llm_model is checked too
                sid = app.execute("SELECT rag.create_session('m', llm_model => 'gpt-forbidden')").fetchone()[0]
                app.execute("SET rag.llm_provider = 'openai'")
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="openai/gpt-forbidden"):
                    app.execute("SELECT rag.ask(%s, 'which model?')", (sid,))
                app.execute("SET rag.llm_provider = 'extractive'")  # always allowed
                assert app.execute("SELECT rag.ask(%s, 'which model?')", (sid,)).fetchone()[0]["model"] == "extractive"
        finally:
            for g in ("allowed_embedding_models", "allowed_llm_models", "embedding_url", "max_embedding_batch_size"):
                su.execute(f"ALTER SYSTEM RESET rag.{g}")
            su.execute("SELECT pg_reload_conf()")
