"""Long BM25 queries (src/search/long_query.rs, rag.bm25_max_query_terms): a query with more distinct terms
than the cap keeps its highest-weight terms (count in the query x IDF from the worker's sample), and those
score exactly as in the full query; queries within the cap are unchanged."""

import pytest

from conftest import wait_for

COMMON = "planner statistics table index vacuum checkpoint"


def hits(conn, query, cap):
    conn.execute("SELECT set_config('rag.bm25_max_query_terms', %s, false)", (str(cap),))
    return [(r[0], round(r[1], 3)) for r in conn.execute("SELECT chunk_id, score FROM rag.bm25_search(%s, 20)", (query,))]


@pytest.fixture
def corpus(cluster, su, unique):
    rare = [f"zl{unique[:6]}a", f"zl{unique[:6]}b"]
    with cluster.connect_as("app_writer") as w:
        for i in range(12):
            w.execute("SELECT rag.ingest_document(%s, %s)", (f"common-{unique}-{i}.txt", f"The {COMMON} note number {i}."))
        w.execute("SELECT rag.ingest_document(%s, %s)",
                  (f"rare-{unique}.txt", f"The {rare[0]} and {rare[1]} {rare[1]} of the planner."))
    # The worker samples the term statistics after a rebuild (and when the table has grown by a fifth).
    with cluster.connect_as("app_admin") as admin:
        request = admin.execute("SELECT rag.compact()").fetchone()[0]
        wait_for(admin, "SELECT finished_at FROM rag.bm25_compactions WHERE id = %s", (request,))
        assert admin.execute("SELECT chunks FROM rag.bm25_term_stats_info").fetchone()[0] >= 13
    return rare


def test_a_long_query_keeps_its_rare_terms_with_their_scores(cluster, corpus):
    rare = corpus
    query = f"{COMMON} {rare[0]} {rare[1]} {rare[1]}"  # 8 distinct terms, the rare ones at the end
    with cluster.connect_as("app_reader") as r:
        capped = hits(r, query, 2)
        full = hits(r, query, 0)
        # What the cap keeps: rare[1] (twice in the query) and rare[0]; they score as in the full query.
        assert capped == hits(r, f"{rare[0]} {rare[1]} {rare[1]}", 0)
        assert len(capped) == 1 and capped[0][0] == full[0][0]
        assert len(full) == 13, "the full query also matches every document by its common words"
        # Within the cap, nothing changes.
        assert hits(r, query, 8) == full
        # The hybrid search's BM25 leg is capped the same way.
        r.execute("SET rag.bm25_max_query_terms = 2")
        # (RRF: a BM25 rank of 1 puts its chunk first here; the default fusion weighs the vector leg more)
        top = r.execute("SELECT chunk_id, bm25_rank FROM rag.hybrid_search(%s, 5, fusion => 'rrf')", (query,)).fetchall()
        assert top[0] == (capped[0][0], 1)
        assert sum(1 for _, rank in top if rank is not None) == 1, "only the rare document matches the kept terms"


def test_term_statistics_are_only_reachable_for_the_callers_terms(cluster, corpus):
    with cluster.connect_as("app_reader") as r:
        rows = r.execute("SELECT term, df, docs FROM rag._term_stats(ARRAY['planner', 'nosuchterm'])").fetchall()
        assert [t for t, _, _ in rows] == ["planner"] and rows[0][1] >= 13 and rows[0][2] >= 13
        with pytest.raises(Exception, match="permission denied"):
            r.execute("SELECT count(*) FROM rag.bm25_term_stats")
