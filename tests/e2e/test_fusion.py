"""rag.hybrid_search's fusion (issue 14; src/search/hybrid.rs, crates/core/src/fusion.rs, whose unit tests cover
the formulas on hand-made rankings). Here: the SQL function applies them to the legs' real scores."""
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
