"""rag.hybrid_search's fusion (issue 14; src/search/hybrid.rs, crates/core/src/fusion.rs, whose unit tests cover
the formulas on hand-made rankings). Here: the SQL function applies them to the legs' real scores."""
import re
import time

import psycopg
import pytest

DOCS = {
    "fusion-a.txt": "Quokka habitats: the quokka lives on Rottnest Island and eats grasses and leaves.",
    "fusion-b.txt": "Marsupials of Western Australia include the quokka, the numbat and the woylie.",
    "fusion-c.txt": "Island ecosystems are fragile; small herbivores there depend on seasonal vegetation.",
}
Q = "where does the quokka live"
COLS = "chunk_id, score, bm25_rank, vector_rank"


@pytest.fixture(scope="module")
def corpus(cluster):
    with cluster.connect_as("app_writer") as w:
        ids = [w.execute("SELECT rag.ingest_document(%s, %s)", (n, t)).fetchone()[0] for n, t in DOCS.items()]
    yield
    with cluster.connect_as("app_writer") as w:
        for i in ids:
            w.execute("SELECT rag.delete_document(%s)", (i,))


def legs(conn):
    bm25 = {r[0]: r[1] for r in conn.execute("SELECT chunk_id, score FROM rag.bm25_search(%s, 100)", (Q,))}
    vec = {r[0]: r[1] for r in conn.execute("SELECT chunk_id, score FROM rag.vector_search(%s, 100)", (Q,))}
    return bm25, vec


def test_rrf_is_the_earlier_formula(cluster, corpus):
    with cluster.connect_as("app_reader") as r:
        rows = r.execute(f"SELECT {COLS} FROM rag.hybrid_search(%s, 10, fusion => 'rrf')", (Q,)).fetchall()
    assert rows
    for _, score, b, v in rows:
        want = (1 / (60 + b) if b else 0) + (1 / (60 + v) if v else 0)
        assert abs(score - want) < 1e-12
    assert [s for _, s, _, _ in rows] == sorted((s for _, s, _, _ in rows), reverse=True)


def test_convex_is_the_default_and_follows_its_formula(cluster, corpus):
    with cluster.connect_as("app_reader") as r:
        default = r.execute(f"SELECT {COLS} FROM rag.hybrid_search(%s, 100)", (Q,)).fetchall()
        explicit = r.execute(f"SELECT {COLS} FROM rag.hybrid_search(%s, 100, NULL, 0.2, 0.8, fusion => 'convex')",
                             (Q,)).fetchall()
        bm25, vec = legs(r)
    assert default == explicit, "NULL weights are the convex fusion's own 0.2 / 0.8"
    best_b, best_v = max(bm25.values()), max(vec.values())
    # a chunk a leg did not return gets that leg's lowest normalised value
    low_b, low_v = min(bm25.values()) / best_b, (min(vec.values()) + 1) / (best_v + 1)
    for cid, score, b, v in default:
        nb = bm25[cid] / best_b if b else low_b
        nv = (vec[cid] + 1) / (best_v + 1) if v else low_v
        assert abs(score - (0.2 * nb + 0.8 * nv)) < 1e-9, (cid, score, nb, nv)
        assert 0.0 <= score <= 1.0
    top = default[0]
    assert top[2] is not None and top[3] is not None  # per-leg ranks stay in the result


def test_a_leg_switched_off_and_bad_arguments(cluster, corpus):
    with cluster.connect_as("app_reader") as r:
        bm25_only = r.execute(f"SELECT {COLS} FROM rag.hybrid_search(%s, 5, NULL, 1, 0)", (Q,)).fetchall()
        assert bm25_only and all(v is None for _, _, _, v in bm25_only)
        assert [b for _, _, b, _ in bm25_only] == sorted(b for _, _, b, _ in bm25_only)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown fusion"):
            r.execute("SELECT * FROM rag.hybrid_search(%s, 5, fusion => 'borda')", (Q,))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="bm25_weight"):
            r.execute("SELECT * FROM rag.hybrid_search(%s, 5, NULL, -1)", (Q,))


TIMING = re.compile(r"^(rag\.\w+) timing \(ms\): (.*); total ([0-9.]+)$")


def timed(conn, sql, notices):
    notices.clear()
    t0 = time.perf_counter()
    rows = conn.execute(sql, (Q,)).fetchall()
    wall_ms = (time.perf_counter() - t0) * 1000
    return rows, wall_ms, list(notices)


def test_search_timing_reports_each_phase_to_an_application_role(cluster, corpus):
    """rag.search_timing (off by default, settable by any role) sends one NOTICE per search call with its
    phases in the order they ran; the phases add up to no more than the total, which is within the wall time.
    The bench reads `query embedding` from it to time hybrid search without its embedding."""
    with cluster.connect_as("app_reader") as r:
        notices = []
        r.add_notice_handler(lambda d: notices.append(d.message_primary))
        plain, _, none = timed(r, f"SELECT {COLS} FROM rag.hybrid_search(%s, 10)", notices)
        assert plain and none == [], "off by default: no NOTICE"
        r.execute("SET rag.search_timing = on")
        want = {
            "rag.hybrid_search": ["model lookup", "query embedding", "query terms", "candidates", "fusion", "result rows"],
            "rag.bm25_search": ["query terms", "search"],
            "rag.vector_search": ["model lookup", "query embedding", "search"],
        }
        for fn, phases in want.items():
            cols = COLS if fn == "rag.hybrid_search" else "chunk_id, score"
            rows, wall_ms, got = timed(r, f"SELECT {cols} FROM {fn}(%s, 10)", notices)
            assert rows
            if fn == "rag.hybrid_search":
                assert rows == plain, "timing changes nothing in the result"
            assert len(got) == 1, got
            m = TIMING.match(got[0])
            assert m and m.group(1) == fn, got[0]
            parts = [p.rsplit(" ", 1) for p in m.group(2).split(", ")]
            assert [name for name, _ in parts] == phases
            ms = {name: float(v) for name, v in parts}
            total = float(m.group(3))
            assert all(v >= 0 for v in ms.values())
            assert sum(ms.values()) <= total + 0.01 * len(ms) and total <= wall_ms
            if "query embedding" in ms:
                assert ms["query embedding"] > 0
            assert ms["candidates" if fn == "rag.hybrid_search" else "search"] > 0
        r.execute("RESET rag.search_timing")
        assert timed(r, f"SELECT {COLS} FROM rag.hybrid_search(%s, 10)", notices)[2] == []


PARALLEL_EVERYWHERE = ("SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0",
                       "SET min_parallel_table_scan_size = 0", "SET min_parallel_index_scan_size = 0")


def test_parallel_workers_change_no_result_for_an_application_role(cluster, corpus):
    """rag.search_parallel_workers lets the search statements use parallel workers (off by default). Under
    row-level security (the owner and tenant conditions run in the workers' index scan), the hits are the same."""
    with cluster.connect() as su:
        for s in PARALLEL_EVERYWHERE:
            su.execute(s)
        su.execute("SET max_parallel_workers_per_gather = 2")
        plan = "\n".join(r[0] for r in su.execute(
            "EXPLAIN SELECT id, pdb.score(id) FROM rag.chunks WHERE content_with_context ||| %s "
            "ORDER BY pdb.score(id) DESC LIMIT 100", (Q,)))
        assert "Parallel Custom Scan (ParadeDB Scan)" in plan, "these settings make the BM25 scan parallel"
    with cluster.connect_as("app_reader") as r:
        for s in PARALLEL_EVERYWHERE:
            r.execute(s)
        calls = [f"SELECT {COLS} FROM rag.hybrid_search(%s, 10)",
                 "SELECT chunk_id, score FROM rag.bm25_search(%s, 10)"]
        serial = [r.execute(sql, (Q,)).fetchall() for sql in calls]
        assert all(serial)
        r.execute("SET rag.search_parallel_workers = 2")
        assert [r.execute(sql, (Q,)).fetchall() for sql in calls] == serial
        # Another tenant of the same role sees none of these rows, in parallel too.
        r.execute("BEGIN")
        r.execute("SELECT rag.set_tenant('parallel-elsewhere')")
        assert [r.execute(sql, (Q,)).fetchall() for sql in calls] == [[], []]
        r.execute("ROLLBACK")
