"""BM25 compaction by the background worker (src/search/compact.rs): after documents arrive one at a
time, the worker rebuilds the index concurrently once writes pause, searches and writes go on during the
rebuild, nothing is lost, and rag.compact() asks for the same on demand."""
import os
import threading
import time

import psycopg
import pytest

from conftest import system_settings, wait_for

SEGMENTS = "SELECT count(*) FROM paradedb.index_info('rag.chunks_bm25')"
# pg_search's target segment count of a rebuilt index: max(cores, 4).
REBUILT = max(4, os.cpu_count() or 1)


def ingest(conn, name, term):
    conn.execute("SELECT rag.ingest_document(%s, %s)", (name, f"The {term} procedure tunes the planner statistics."))


def found(conn, term):
    return conn.execute("SELECT count(*) FROM rag.bm25_search(%s, 5)", (term,)).fetchone()[0]


@pytest.fixture
def settings(cluster):
    """Automatic compaction off until a test turns it on (segments other tests left must not start a
    rebuild at a moment the test does not control); a short quiet period."""
    with system_settings(cluster, bm25_compact_segments=0, bm25_compact_quiet=2):
        yield


def compact_above(su, segments):
    su.execute(f"ALTER SYSTEM SET rag.bm25_compact_segments = {int(segments)}")
    su.execute("SELECT pg_reload_conf()")


def test_worker_compacts_after_one_by_one_ingest_without_blocking(cluster, su, unique, settings):
    last = su.execute("SELECT coalesce(max(id), 0) FROM rag.bm25_compactions").fetchone()[0]
    terms = [f"zq{unique[:8]}x{i}" for i in range(30)]
    with cluster.connect_as("app_writer") as w:
        for i, t in enumerate(terms):
            ingest(w, f"compact-{unique}-{i}.txt", t)
    # An old snapshot holds the rebuild in its last wait (REINDEX CONCURRENTLY waits for older snapshots
    # before it swaps the indexes): meanwhile searches and writes must go on.
    with cluster.connect_as("app_reader") as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM rag.chunks").fetchone()
        compact_above(su, REBUILT)  # now: the rebuild starts after this snapshot, and must wait for it
        row = wait_for(su, "SELECT id FROM rag.bm25_compactions WHERE id > %s AND reason = 'automatic' "
                           "AND started_at IS NOT NULL", (last,))
        rebuild = row[0]
        during = [f"zq{unique[:8]}d{i}" for i in range(5)]
        with cluster.connect_as("app_writer") as w, \
                cluster.connect_as("app_reader") as r:
            r.execute("SET statement_timeout = '5s'")
            w.execute("SET statement_timeout = '5s'")
            for i, t in enumerate(during):
                ingest(w, f"during-{unique}-{i}.txt", t)
                assert found(r, terms[i]) == 1
                assert r.execute("SELECT count(*) FROM rag.hybrid_search(%s, 5)", (terms[i],)).fetchone()[0] >= 1
            assert su.execute("SELECT finished_at FROM rag.bm25_compactions WHERE id = %s",
                              (rebuild,)).fetchone()[0] is None, "the rebuild did not wait for the old snapshot"
        holder.execute("ROLLBACK")
    before, after, error = wait_for(su, "SELECT segments_before, segments_after, error FROM rag.bm25_compactions "
                                        "WHERE id = %s AND finished_at IS NOT NULL", (rebuild,))
    assert error is None
    # pg_search's target count, plus at most one segment per write made while the copy was being built.
    assert before >= len(terms) and after <= REBUILT + len(during), (before, after)
    with cluster.connect_as("app_reader") as r:
        assert all(found(r, t) == 1 for t in terms + during), "a document was lost by the rebuild"
    # No rebuild loop: the count is at pg_search's target now, so the idle worker leaves it alone.
    time.sleep(6)
    assert su.execute("SELECT count(*) FROM rag.bm25_compactions WHERE id > %s", (rebuild,)).fetchone()[0] == 0


def test_compact_on_request_drops_leftovers_of_an_interrupted_rebuild(cluster, su, unique):
    terms = [f"zr{unique[:8]}x{i}" for i in range(6)]
    with cluster.connect_as("app_writer") as w:
        for i, t in enumerate(terms):
            ingest(w, f"request-{unique}-{i}.txt", t)
    # An interrupted REINDEX CONCURRENTLY (lock_timeout while an old snapshot holds it) leaves an invalid
    # copy of the index behind, which every write would keep maintaining.
    with cluster.connect() as holder, cluster.connect() as c:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM rag.chunks").fetchone()
        c.execute("SET lock_timeout = '1s'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            c.execute("REINDEX INDEX CONCURRENTLY rag.chunks_bm25")
        holder.execute("ROLLBACK")
    invalid = "SELECT count(*) FROM pg_index WHERE indrelid = 'rag.chunks'::regclass AND NOT indisvalid"
    assert su.execute(invalid).fetchone()[0] == 1
    with cluster.connect_as("app_admin") as admin:
        request = admin.execute("SELECT rag.compact()").fetchone()[0]
        after, error = wait_for(admin, "SELECT segments_after, error FROM rag.bm25_compactions "
                                       "WHERE id = %s AND finished_at IS NOT NULL", (request,))
    assert error is None and 1 <= after <= REBUILT
    assert su.execute(invalid).fetchone()[0] == 0
    with cluster.connect_as("app_reader") as r:
        assert all(found(r, t) == 1 for t in terms)
    with cluster.connect_as("app_writer") as w:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            w.execute("SELECT rag.compact()")
