"""Unit tests of the retrieval metrics of scripts/eval.py, against hand-computed values.

No database is needed: the metric functions are pure. Run with
    .stack/venv/bin/python -m pytest tests/unit
(or, without pytest, `python tests/unit/test_metrics.py`).
"""
import importlib.util
import math
import os
import sys
import tempfile
from pathlib import Path

# scripts/eval.py is a script, not a package module: load it under a name that does not shadow eval().
_PATH = Path(__file__).resolve().parents[2] / "scripts" / "eval.py"
_spec = importlib.util.spec_from_file_location("ragbench_eval", _PATH)
ev = importlib.util.module_from_spec(_spec)
sys.modules["ragbench_eval"] = ev
_spec.loader.exec_module(ev)

LOG2_3 = math.log2(3)  # discount of rank 2
LOG2_5 = math.log2(5)  # discount of rank 4


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol


# ---- nDCG@k ---------------------------------------------------------------------------------------

def test_ndcg_binary():
    # Relevant: b (rank 2) and d (not retrieved).
    # DCG = 1/log2(3) = 0.630930; IDCG = 1 + 1/log2(3) = 1.630930; nDCG = 0.386853
    qrels = {"b": 1, "d": 1}
    got = ev.ndcg_at_k(["a", "b", "c"], qrels, 10)
    assert close(got, (1 / LOG2_3) / (1 + 1 / LOG2_3))
    assert close(got, 0.386853, tol=1e-6)


def test_ndcg_perfect_and_empty():
    qrels = {"a": 1, "b": 1}
    assert close(ev.ndcg_at_k(["a", "b", "x"], qrels, 10), 1.0)
    assert close(ev.ndcg_at_k(["b", "a"], qrels, 10), 1.0)  # equal grades: order between them is free
    assert ev.ndcg_at_k([], qrels, 10) == 0.0
    assert ev.ndcg_at_k(["a"], {}, 10) == 0.0  # no relevant document: 0, not a division by zero


def test_ndcg_graded_linear_gain():
    # Grades a=2, b=1, c=3; ranking a, x, c, b.
    # DCG  = 2/log2(2) + 0 + 3/log2(4) + 1/log2(5) = 2 + 0 + 1.5 + 0.430677 = 3.930677
    # IDCG = 3/log2(2) + 2/log2(3) + 1/log2(4)     = 3 + 1.261860 + 0.5     = 4.761860
    # nDCG = 0.825450 (trec_eval ndcg_cut: gain = grade, not 2^grade - 1)
    qrels = {"a": 2, "b": 1, "c": 3}
    got = ev.ndcg_at_k(["a", "x", "c", "b"], qrels, 10)
    assert close(got, (2 + 3 / 2 + 1 / LOG2_5) / (3 + 2 / LOG2_3 + 1 / 2))
    assert close(got, 0.825450, tol=1e-6)


def test_ndcg_cutoff_applies_to_ranking_and_ideal():
    # k=2: only ranks 1-2 count, and the ideal holds only the 2 best grades (3, 2).
    qrels = {"a": 1, "b": 2, "c": 3}
    got = ev.ndcg_at_k(["a", "x", "c"], qrels, 2)
    assert close(got, 1.0 / (3 + 2 / LOG2_3))
    # A relevant document at rank 11 does not count for nDCG@10.
    ranking = [f"n{i}" for i in range(10)] + ["a"]
    assert ev.ndcg_at_k(ranking, {"a": 1}, 10) == 0.0


def test_ndcg_non_positive_grades_are_not_gains():
    # qrels may list judged non-relevant documents with grade 0 (or negative): no gain, not in the ideal.
    qrels = {"a": 0, "b": 1, "z": -1}
    assert close(ev.ndcg_at_k(["a", "b", "z"], qrels, 10), 1 / LOG2_3)


def test_ndcg_duplicate_ids_count_once():
    qrels = {"a": 1, "b": 1}
    # a, a, b is the document ranking a, b (first occurrence): perfect.
    assert close(ev.ndcg_at_k(["a", "a", "b"], qrels, 10), 1.0)


# ---- Recall@k ---------------------------------------------------------------------------------------

def test_recall():
    qrels = {"a": 1, "b": 2, "c": 1, "d": 0}
    assert close(ev.recall_at_k(["a", "x", "c"], qrels, 100), 2 / 3)  # d (grade 0) is not relevant
    assert close(ev.recall_at_k(["x", "a", "b", "c"], qrels, 2), 1 / 3)  # only the top 2 count
    assert ev.recall_at_k([], qrels, 100) == 0.0
    assert ev.recall_at_k(["a"], {}, 100) == 0.0
    assert close(ev.recall_at_k(["a", "a", "a"], {"a": 1, "b": 1}, 100), 0.5)  # duplicates count once


def test_recall_at_100_boundary():
    ranking = [f"n{i}" for i in range(99)] + ["a", "b"]  # a at rank 100, b at rank 101
    assert close(ev.recall_at_k(ranking, {"a": 1, "b": 1}, 100), 0.5)


# ---- MRR@k ----------------------------------------------------------------------------------------

def test_mrr():
    qrels = {"c": 1, "e": 2}
    assert close(ev.mrr_at_k(["a", "b", "c", "e"], qrels, 10), 1 / 3)  # first relevant at rank 3
    assert close(ev.mrr_at_k(["e"], qrels, 10), 1.0)
    assert ev.mrr_at_k(["a", "b"], qrels, 10) == 0.0
    assert ev.mrr_at_k(["a", "b", "c"], qrels, 2) == 0.0  # beyond the cutoff
    ranking = [f"n{i}" for i in range(9)] + ["c"]  # rank 10 still counts for MRR@10
    assert close(ev.mrr_at_k(ranking, qrels, 10), 0.1)
    assert ev.mrr_at_k(["a", "c"], {"a": 0, "c": 1}, 10) == 0.5  # grade 0 is not relevant


# ---- chunk ranking -> document ranking, query-id exclusion ------------------------------------------

def test_document_ranking_max_pooling():
    # Chunks of d1, d2, d1, d3, d2: each document at the rank of its best chunk.
    assert ev.document_ranking(["d1", "d2", "d1", "d3", "d2"]) == ["d1", "d2", "d3"]


def test_document_ranking_drops_foreign_chunks():
    # None = a chunk of another dataset (or of no dataset): not part of the evaluated ranking.
    assert ev.document_ranking([None, "d1", None, "d2"]) == ["d1", "d2"]


def test_query_id_exclusion():
    # BEIR drops a document whose id equals the query id (e.g. a query that is also a corpus document).
    ranking = ev.document_ranking(["q7", "d1", "q7", "d2"], query_id="q7")
    assert ranking == ["d1", "d2"]
    qrels = {"d1": 1}
    # Without the exclusion d1 would be at rank 2 (MRR 0.5); with it at rank 1.
    assert ev.mrr_at_k(ranking, qrels, 10) == 1.0
    assert close(ev.ndcg_at_k(ranking, qrels, 10), 1.0)
    # Other ids are untouched.
    assert ev.document_ranking(["q7", "d1"], query_id="q8") == ["q7", "d1"]


# ---- aggregation ----------------------------------------------------------------------------------

def test_mean_metrics_counts_empty_queries_as_zero():
    q1 = ev.evaluate_query(["a"], {"a": 1})  # perfect
    q2 = ev.evaluate_query([], {"b": 1})     # nothing retrieved: all zeros
    assert q2 == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    m = ev.mean_metrics([q1, q2])
    assert m == {"ndcg@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5}
    assert ev.mean_metrics([]) == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}


# ---- dataset helpers ------------------------------------------------------------------------------

def test_read_qrels_header_and_grades():
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "test.tsv")
        with open(p, "w") as fh:
            fh.write("query-id\tcorpus-id\tscore\n1\t10\t1\n1\t11\t2\n3\t12\t0\n")
        assert ev.read_qrels(p) == {"1": {"10": 1, "11": 2}, "3": {"12": 0}}


def test_document_content_title_becomes_heading():
    assert ev.document_content({"_id": "1", "title": "T", "text": "body"}) == "# T\n\nbody"
    assert ev.document_content({"_id": "1", "title": "", "text": "body"}) == "body"
    assert ev.document_content({"_id": "1", "text": " body "}) == "body"


if __name__ == "__main__":  # minimal runner for machines without pytest
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    for n, f in tests:
        f()
        print(f"ok  {n}")
    print(f"{len(tests)} tests passed")
