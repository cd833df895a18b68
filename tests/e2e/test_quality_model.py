"""The quality option of the built-in provider (issue 14): all-mpnet-base-v2, 768-d, chosen per session with
rag.embedding_model, run once per server in the embedding service beside all-MiniLM-L6-v2.

What would be wrong if it broke: the setting would be refused or silently give MiniLM's 384-d vectors, the two
models' vectors would mix in one search, or every backend would load its own 440 MB copy."""
import psycopg
import pytest

from test_embedding_service import private_kb

MPNET = "SET rag.embedding_model = 'all-mpnet-base-v2'"


def test_a_session_chooses_mpnet_and_searches_its_own_vectors(cluster):
    with cluster.connect_as("app_writer") as app:
        app.execute(MPNET)
        assert app.execute("SELECT rag.embedding_model_id()").fetchone()[0] == "builtin/all-mpnet-base-v2"
        assert app.execute("SELECT vector_dims(rag.embed('hello'))").fetchone()[0] == 768
        doc = app.execute(
            "SELECT rag.ingest_document('mpnet-wal.txt', %s)",
            ("Write-ahead logging: every change is written to the log before the data files, so a crash loses "
             "no committed transaction.",),
        ).fetchone()[0]
        rows = app.execute(
            "SELECT c.embedding_model, vector_dims(c.embedding) FROM rag.chunks c WHERE c.document_id = %s", (doc,)
        ).fetchall()
        assert rows and all(r == ("builtin/all-mpnet-base-v2", 768) for r in rows), rows
        hits = app.execute(
            "SELECT document_id, vector_rank FROM rag.hybrid_search('how are committed transactions kept safe "
            "across a crash?', 5)"
        ).fetchall()
        # The vector leg searches all-mpnet-base-v2's vectors, where this document is the closest.
        assert (doc, 1) in hits, hits
    with cluster.connect_as("app_writer") as app:  # a new session is back on the default model
        assert app.execute("SELECT vector_dims(rag.embed('hello'))").fetchone()[0] == 384
        vec_docs = app.execute(
            "SELECT document_id FROM rag.hybrid_search('how are committed transactions kept safe?', 50) "
            "WHERE vector_rank IS NOT NULL"
        ).fetchall()
        assert (doc,) not in vec_docs, "MiniLM's vector leg returned a chunk that only has a 768-d vector"


def test_mpnet_runs_in_the_service_not_in_the_backend(cluster):
    text = "VACUUM reclaims storage occupied by dead tuples."
    with cluster.connect_as("app_reader") as app:
        app.execute(MPNET)
        app.execute("SELECT rag.embed('warm the service')")
        pid = app.execute("SELECT pg_backend_pid()").fetchone()[0]
        with cluster.connect() as su:
            before = private_kb(su, pid)
            service = app.execute("SELECT rag.embed_array(%s, 'document')", (text,)).fetchone()[0]
            after = private_kb(su, pid)
    assert after - before < 20 * 1024, f"the backend grew by {(after - before) // 1024} MB"
    with cluster.connect() as su:
        su.execute(MPNET)
        su.execute("SET rag.embedding_mode = 'backend'")
        backend = su.execute("SELECT rag.embed_array(%s, 'document')", (text,)).fetchone()[0]
    assert len(service) == 768 and max(abs(a - b) for a, b in zip(service, backend)) < 1e-5


def test_an_unknown_builtin_model_is_refused_with_the_choices(cluster):
    with cluster.connect_as("app_reader") as app:
        app.execute("SET rag.embedding_model = 'all-MiniLM-L12-v2'")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="all-MiniLM-L12-v2") as e:
            app.execute("SELECT rag.embed('x')")
        assert "all-mpnet-base-v2" in e.value.diag.message_hint


def test_a_server_can_keep_sessions_off_the_quality_model(cluster):
    """rag.allowed_embedding_models refuses all-mpnet-base-v2 before anything is loaded (SQLSTATE 42501)."""
    with cluster.connect() as su:
        su.execute("SET rag.allowed_embedding_models = 'builtin/all-MiniLM-L6-v2'")
        assert su.execute("SELECT vector_dims(rag.embed('x'))").fetchone()[0] == 384
        su.execute(MPNET)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="all-mpnet-base-v2"):
            su.execute("SELECT rag.embed('x')")
