"""The embedding service (issue 11): one built-in model per server, shared by every backend over a Unix
socket in the data directory (src/embed/service.rs, crates/core/src/embed/service.rs).

What would be wrong if it broke: each backend would load its own ~90 MB model (private memory), vectors from
the two paths would differ, a terminated service would not come back or would hang its callers, and a caller
waiting for it could not be cancelled."""
import threading
import time

import psycopg
import pytest

from conftest import wait_for

SERVICE = "ragbench embedding service"


def private_kb(su, pid):
    """Private (not shared) resident memory of a server process, from /proc (the test runs on the server's host)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))


def service_pid(su):
    row = su.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", (SERVICE,)).fetchone()
    return row[0] if row else None


def stop_service(su):
    """Terminate the service and wait until its process is gone (the postmaster starts a new one after 5 s)."""
    pid = service_pid(su)
    su.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(su, "SELECT true WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", (pid,), timeout=30)
    return pid


def test_a_new_connection_embeds_without_loading_the_model(cluster):
    with cluster.connect() as su:
        assert su.execute("SHOW rag.embedding_mode").fetchone()[0] == "service"
        assert service_pid(su) is not None
        su.execute("SELECT rag.embed('warm the service')")  # the service loads its model once
    with cluster.connect_as("app_reader") as app:
        pid = app.execute("SELECT pg_backend_pid()").fetchone()[0]
        with cluster.connect() as su:
            before = private_kb(su, pid)
            app.execute("SELECT count(*) FROM rag.hybrid_search('how do I tune autovacuum', 5)").fetchone()
            after = private_kb(su, pid)
    # The bar for make test: under 40 MB of private memory per new backend after a search
    # (a backend that loads the model grows by ~110 MB).
    assert after - before < 40 * 1024, f"backend grew by {(after - before) // 1024} MB"


def test_service_and_backend_paths_give_the_same_vectors(cluster):
    texts = ["VACUUM reclaims storage occupied by dead tuples.", "How do I create an index?", "é" * 300]
    with cluster.connect() as su:
        service = [su.execute("SELECT rag.embed_array(%s, 'document')", (t,)).fetchone()[0] for t in texts]
        su.execute("SET rag.embedding_mode = 'backend'")
        backend = [su.execute("SELECT rag.embed_array(%s, 'document')", (t,)).fetchone()[0] for t in texts]
        su.execute("RESET rag.embedding_mode")
    for s, b in zip(service, backend):
        assert len(s) == len(b) == 384
        assert max(abs(x - y) for x, y in zip(s, b)) < 1e-5


def test_a_question_gets_the_same_vector_alone_batched_and_under_load(cluster):
    """Every text is its own forward pass (its int8 activations are scaled on its own), so what else is
    embedded with it, in the same call or by other sessions at the same time, does not move its vector:
    a search's ranking does not depend on the load."""
    question = "how does the planner choose between an index scan and a sequential scan"
    others = ["x", "a much longer text about checkpoints and the write-ahead log " * 12, "vacuum"]
    with cluster.connect() as su:
        alone = su.execute("SELECT rag.embed_array(%s, 'query')", (question,)).fetchone()[0]
        # One call, one request to the service, with texts shorter and longer than the question.
        many = su.execute(
            "SELECT embedding::real[] FROM rag.embed_many(%s, 'query') ORDER BY ordinality", (others + [question],)
        ).fetchall()

    stop, errors = threading.Event(), []

    def load():
        try:
            with cluster.connect() as c:
                while not stop.is_set():
                    c.execute("SELECT rag.embed_many(%s, 'query')", (others,)).fetchall()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        with cluster.connect() as su:
            under_load = [su.execute("SELECT rag.embed_array(%s, 'query')", (question,)).fetchone()[0] for _ in range(5)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert many[-1][0] == pytest.approx(alone, abs=1e-6)  # vector -> real[] keeps float4 exactly
    assert all(v == alone for v in under_load)


def test_the_mode_is_a_superuser_setting_with_checked_values(cluster):
    with cluster.connect_as("app_reader") as app:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SET rag.embedding_mode = 'backend'")
    with cluster.connect() as su:
        su.execute("SET rag.embedding_mode = 'gpu'")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="embedding_mode"):
            su.execute("SELECT rag.embed('x')")


def test_a_terminated_service_comes_back_and_callers_wait_for_it(cluster):
    with cluster.connect() as su:
        first = service_pid(su)
        su.execute("SELECT pg_terminate_backend(%s)", (first,))  # not waited for: a caller may meet it stopping
        # the caller waits (within rag.embedding_timeout_ms) for the postmaster to start it again
        t0 = time.time()
        v = su.execute("SELECT vector_dims(rag.embed('after a restart'))").fetchone()[0]
        assert v == 384
        assert time.time() - t0 < 30
        second = wait_for(su, "SELECT pid FROM pg_stat_activity WHERE backend_type = %s", (SERVICE,), timeout=30)[0]
        assert second != first


def test_a_caller_waiting_for_the_service_can_be_cancelled(cluster):
    with cluster.connect() as su:
        stop_service(su)
        # the postmaster restarts it after 5 s: a 500 ms statement timeout fires while the caller waits
        su.execute("SET statement_timeout = '500ms'")
        t0 = time.time()
        with pytest.raises(psycopg.errors.QueryCanceled):
            su.execute("SELECT rag.embed('cancel me while waiting')")
        assert time.time() - t0 < 3
        su.execute("RESET statement_timeout")
        assert su.execute("SELECT vector_dims(rag.embed('and then it works'))").fetchone()[0] == 384


def test_an_unreachable_service_is_a_clear_error_not_a_hang(cluster):
    with cluster.connect() as su:
        stop_service(su)
        su.execute("SET rag.embedding_timeout_ms = 300")
        with pytest.raises(psycopg.errors.SystemError) as e:
            su.execute("SELECT rag.embed('no service yet')")
        assert "embedding service" in str(e.value) and "not running" in str(e.value)
        assert "rag.embedding_mode" in (e.value.diag.message_hint or "")
        su.execute("RESET rag.embedding_timeout_ms")
        assert su.execute("SELECT vector_dims(rag.embed('back again'))").fetchone()[0] == 384


def embed_with(cluster, mode, runtime, text):
    """rag.embed_array(text) on a fresh superuser connection with these settings."""
    with cluster.connect() as su:
        su.execute(f"SET rag.embedding_mode = '{mode}'")
        su.execute(f"SET rag.builtin_runtime = '{runtime}'")
        return su.execute("SELECT rag.embed_array(%s, 'document')", (text,)).fetchone()[0]


def test_the_default_runtime_is_int8_onnx_and_agrees_with_candle(cluster):
    """auto picks ONNX Runtime (installed by make setup) in the service and in backends; its int8 vectors are
    not candle's float ones, but point the same way (the same model's space, so either searches the other's)."""
    text = "Write-ahead logging makes committed transactions durable across crashes."
    with cluster.connect() as su:
        assert su.execute("SHOW rag.builtin_runtime").fetchone()[0] == "auto"
        service = su.execute("SELECT rag.embed_array(%s, 'document')", (text,)).fetchone()[0]
    onnx = embed_with(cluster, "backend", "onnx", text)
    candle = embed_with(cluster, "backend", "candle", text)
    assert service == pytest.approx(onnx, abs=1e-5), "the service does not run the int8 model by default"
    cosine = sum(a * b for a, b in zip(onnx, candle))
    assert onnx != candle and cosine > 0.99, cosine


def test_the_runtime_settings_are_checked_and_superuser_only(cluster):
    with cluster.connect_as("app_reader") as app:
        for setting in ("rag.builtin_runtime = 'candle'", "rag.onnxruntime_library = '/tmp/x.so'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(f"SET {setting}")
    with cluster.connect() as su:
        su.execute("SET rag.embedding_mode = 'backend'")
        su.execute("SET rag.builtin_runtime = 'tensorflow'")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown rag.builtin_runtime 'tensorflow'"):
            su.execute("SELECT rag.embed('x')")
    # A backend that has not opened ONNX Runtime yet is told which library it could not open.
    with cluster.connect() as su:
        su.execute("SET rag.embedding_mode = 'backend'")
        su.execute("SET rag.builtin_runtime = 'onnx'")
        su.execute("SET rag.onnxruntime_library = '/nonexistent/libonnxruntime.so'")
        with pytest.raises(psycopg.Error, match="/nonexistent/libonnxruntime.so") as e:
            su.execute("SELECT rag.embed('x')")
        assert "make setup" in (e.value.diag.message_hint or "")


def test_both_paths_cut_the_same_chunks(cluster):
    """Chunks are sized with the model's own token count on the service path too (an estimate from word counts
    made larger chunks there, which the model then truncated: SciFact's vector leg lost 0.016 nDCG@10)."""
    text = " ".join(
        f"Sentence {i} discusses methylenetetrahydrofolate reductase polymorphisms, hyperhomocysteinemia and "
        f"cardiovascular risk in a cohort of {i * 37} patients." for i in range(60)
    )
    chunks = {}
    with cluster.connect() as su:
        for mode in ("service", "backend"):
            su.execute(f"SET rag.embedding_mode = '{mode}'")
            doc = su.execute("SELECT rag.ingest_document(%s, %s)", (f"paths-{mode}.txt", text)).fetchone()[0]
            chunks[mode] = [r[0] for r in su.execute(
                "SELECT content FROM rag.chunks WHERE document_id = %s ORDER BY chunk_index", (doc,))]
            su.execute("SELECT rag.delete_document(%s)", (doc,))
    assert len(chunks["service"]) > 3 and chunks["service"] == chunks["backend"]
