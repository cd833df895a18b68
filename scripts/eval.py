"""Retrieval quality of ragbench on a BEIR dataset: nDCG@10, Recall@100 and MRR@10 for rag.bm25_search,
rag.vector_search and rag.hybrid_search.

Usage (what `make eval` runs):

    python scripts/eval.py URL DATASET [--split test] [--limit-queries N]
                           [--bm25-weight W] [--vector-weight W] [--rrf-k K] [--candidates C]
                           [--grid] [--depth 300] [--json-out FILE]

How it works
------------
1. Load the BEIR layout of DATASET: corpus.jsonl (`_id`, `title`, `text`), queries.jsonl (`_id`, `text`)
   and qrels/<split>.tsv (`query-id corpus-id score`, a header line; score > 0 is relevant, graded).
2. Ingest the corpus through the real pipeline, one rag.ingest_document call per corpus line:
   file_name = the corpus `_id`, content = "# {title}\n\n{text}" (the title becomes the chunks' heading
   context), metadata = {"beir_id": _id, "dataset": <directory name>}. Ids already ingested for this
   dataset are skipped, so a second run only evaluates.
3. For every query of the qrels split, run each search with k = --depth chunks (default 300, so that
   the chunk ranking usually covers 100 distinct documents), and turn the chunk ranking into a document
   ranking: a document's rank is the rank of its best chunk (max-pooling), chunks of other datasets
   are dropped, and, as BEIR does, a document whose id equals the query id is dropped.
4. Score the document rankings with the trec_eval definitions (see the metric functions below) and
   average over the evaluated queries; a query with nothing retrieved scores 0.

With --json-out FILE, the results are also written to FILE as JSON (see results_json; scripts/eval_report.py
merges such files into a Markdown report and a plot).

With --grid, rag.hybrid_search is also evaluated over a small grid of (bm25_weight, rrf_k, candidates)
with vector_weight 1, on --split (use `--split train` to tune without looking at the test qrels).

The metric functions are pure and importable (tests/unit/test_metrics.py tests them).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NoReturn, Sequence

try:  # only the database part needs psycopg; the metric functions import without it
    import psycopg
except ImportError:  # pragma: no cover
    psycopg = None

# --------------------------------------------------------------------------------------------------
# Metrics (pure functions; no database). `ranked_ids` is a document ranking, best first; `qrels` maps a
# document id to its graded relevance for one query (grades <= 0 are not relevant). Duplicated ids in
# a ranking count once, at their first position, like a max-pooled ranking.
# --------------------------------------------------------------------------------------------------


def _distinct(ids: Iterable[str]) -> list[str]:
    """The ids in order, each kept at its first occurrence."""
    seen: set[str] = set()
    out = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain with trec_eval's discount: gain at rank r (1-based) / log2(r + 1)."""
    return sum(g / math.log2(r + 1) for r, g in enumerate(gains, start=1))


def ndcg_at_k(ranked_ids: Sequence[str], qrels: Mapping[str, float], k: int = 10) -> float:
    """nDCG@k as trec_eval's `ndcg_cut.k`: linear gain = the relevance grade (grades <= 0 give 0),
    discount log2(rank + 1), ideal DCG from all judged relevant documents of the query, sorted by grade.
    0.0 when the query has no relevant document."""
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = dcg(ideal)
    if idcg <= 0:
        return 0.0
    gains = [max(qrels.get(d, 0), 0) for d in _distinct(ranked_ids)[:k]]
    return dcg(gains) / idcg


def recall_at_k(ranked_ids: Sequence[str], qrels: Mapping[str, float], k: int = 100) -> float:
    """Recall@k: relevant documents in the top k / all relevant documents of the query (0.0 if none)."""
    relevant = {d for d, g in qrels.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(_distinct(ranked_ids)[:k])) / len(relevant)


def mrr_at_k(ranked_ids: Sequence[str], qrels: Mapping[str, float], k: int = 10) -> float:
    """Reciprocal rank of the first relevant document within the top k, else 0.0."""
    for rank, d in enumerate(_distinct(ranked_ids)[:k], start=1):
        if qrels.get(d, 0) > 0:
            return 1.0 / rank
    return 0.0


def document_ranking(chunk_doc_ids: Iterable[str | None], query_id: str | None = None) -> list[str]:
    """Chunk ranking -> document ranking: each document at the rank of its best chunk (max-pooling).
    `None` entries (chunks that belong to no document of the evaluated dataset) are dropped, and so is
    a document whose id equals `query_id` (BEIR's `ignore_identical_ids`)."""
    return [d for d in _distinct(c for c in chunk_doc_ids if c is not None) if d != query_id]


def evaluate_query(ranked_ids: Sequence[str], qrels: Mapping[str, float]) -> dict[str, float]:
    """The three reported metrics of one query."""
    return {
        "ndcg@10": ndcg_at_k(ranked_ids, qrels, 10),
        "recall@100": recall_at_k(ranked_ids, qrels, 100),
        "mrr@10": mrr_at_k(ranked_ids, qrels, 10),
    }


def mean_metrics(per_query: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Average of each metric over queries (an empty list gives zeros)."""
    keys = ("ndcg@10", "recall@100", "mrr@10")
    if not per_query:
        return {k: 0.0 for k in keys}
    return {k: sum(q[k] for q in per_query) / len(per_query) for k in keys}


# --------------------------------------------------------------------------------------------------
# Dataset loading
# --------------------------------------------------------------------------------------------------


def fail(msg: str) -> NoReturn:
    print(f"eval.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def read_jsonl(path: str) -> list[dict]:
    if not os.path.isfile(path):
        fail(f"missing file {path} (expected the BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    fail(f"{path}:{n}: not JSON ({e})")
    return rows


def read_qrels(path: str) -> dict[str, dict[str, int]]:
    """qrels/<split>.tsv -> {query_id: {corpus_id: grade}}, in file order (the header line is skipped)."""
    if not os.path.isfile(path):
        fail(f"missing qrels file {path}")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not row or (n == 1 and not row[-1].strip().lstrip("-").isdigit()):
                continue  # blank line or header
            if len(row) < 3:
                fail(f"{path}:{n}: expected 'query-id<TAB>corpus-id<TAB>score'")
            qrels.setdefault(row[0].strip(), {})[row[1].strip()] = int(row[2])
    return qrels


def document_content(doc: Mapping) -> str:
    """What is ingested for a corpus line: the title as a Markdown heading (heading context), then text."""
    title = (doc.get("title") or "").strip()
    text = (doc.get("text") or "").strip()
    return f"# {title}\n\n{text}" if title else text


# --------------------------------------------------------------------------------------------------
# Database side: ingestion and the three searches
# --------------------------------------------------------------------------------------------------


def ingest(conn, corpus: list[dict], dataset: str) -> None:
    """Ingest the corpus lines not yet ingested for `dataset`, one rag.ingest_document call each."""
    have = {
        r[0]
        for r in conn.execute(
            "SELECT metadata->>'beir_id' FROM rag.document_files WHERE metadata->>'dataset' = %s", (dataset,)
        )
    }
    todo = [d for d in corpus if str(d["_id"]) not in have]
    print(f"ingest: {len(corpus)} corpus documents, {len(have)} already ingested, {len(todo)} to ingest", flush=True)
    if not todo:
        return
    t0 = time.perf_counter()
    seen_ids: dict[str, str] = {}  # returned document uuid -> beir id: detects content duplicates
    errors, empty, duplicates = [], 0, []
    for i, doc in enumerate(todo, 1):
        beir_id = str(doc["_id"])
        content = document_content(doc)
        if not content:
            empty += 1
        else:
            meta = json.dumps({"beir_id": beir_id, "dataset": dataset})
            try:
                (doc_uuid,) = conn.execute(
                    "SELECT rag.ingest_document(%s, %s, %s::jsonb)::text", (beir_id, content, meta)
                ).fetchone()
                if doc_uuid in seen_ids:
                    duplicates.append((beir_id, seen_ids[doc_uuid]))
                seen_ids.setdefault(doc_uuid, beir_id)
            except psycopg.OperationalError:
                raise  # the connection is gone: stop rather than fail every remaining document
            except psycopg.Error as e:  # report and go on (autocommit: nothing to roll back)
                errors.append((beir_id, str(e).splitlines()[0]))
        if i % 500 == 0 or i == len(todo):
            dt = time.perf_counter() - t0
            print(f"  ingested {i}/{len(todo)} documents in {dt:.0f} s ({i / dt:.1f} docs/s)", flush=True)
    if empty:
        print(f"  skipped {empty} corpus lines with neither title nor text")
    if duplicates:
        print(f"  {len(duplicates)} documents had the same content as another one (same document id; "
              f"they are stored once, under the first id), e.g. {duplicates[:3]}")
    if errors:
        print(f"  {len(errors)} documents failed, e.g.:")
        for beir_id, msg in errors[:5]:
            print(f"    {beir_id}: {msg}")


@dataclass
class Settings:
    """Parameters of rag.hybrid_search (None = the function's default)."""
    bm25_weight: float | None = None
    vector_weight: float | None = None
    rrf_k: int = 60
    candidates: int | None = None
    fusion: str = "convex"

    def label(self) -> str:
        c = "default" if self.candidates is None else self.candidates
        w = lambda x: "default" if x is None else f"{x:g}"  # noqa: E731
        k = f" rrf_k={self.rrf_k}" if self.fusion == "rrf" else ""
        return f"fusion={self.fusion} bm25_w={w(self.bm25_weight)} vec_w={w(self.vector_weight)}{k} candidates={c}"


@dataclass
class RunResult:
    name: str
    metrics: dict[str, float]
    n_queries: int
    total_s: float
    median_ms: float
    short_rankings: int = 0       # queries whose document ranking has fewer than 100 documents
    settings: str = ""
    per_query: list[dict] = field(default_factory=list)


def search_sql(method: str) -> str:
    """The statement of one search; every one returns (metadata) per chunk, best first."""
    if method == "bm25":
        return "SELECT metadata FROM rag.bm25_search(%s, %s)"
    if method == "vector":
        return "SELECT metadata FROM rag.vector_search(%s, %s)"
    return "SELECT metadata FROM rag.hybrid_search(%s, %s, NULL, %s, %s, %s, %s, %s)"


def run_method(conn, method: str, queries: list[tuple[str, str]], qrels, dataset: str, depth: int,
               settings: Settings | None = None, quiet: bool = False) -> RunResult:
    """Run one search method over all queries and score it."""
    sql = search_sql(method)
    k = depth
    if method == "hybrid" and settings and settings.candidates is not None:
        k = min(depth, settings.candidates)  # hybrid_search requires candidates >= k
    per_query, times, short = [], [], 0
    t_start = time.perf_counter()
    for n, (qid, text) in enumerate(queries, 1):
        params: tuple = (text, k)
        if method == "hybrid":
            s = settings or Settings()
            params = (text, k, s.bm25_weight, s.vector_weight, s.rrf_k, s.candidates, s.fusion)
        t0 = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        times.append(time.perf_counter() - t0)
        # Chunks of another dataset (or no dataset: demo or bench rows) are not part of this corpus.
        chunk_docs = [
            str(m["beir_id"]) if isinstance(m, dict) and m.get("dataset") == dataset and "beir_id" in m else None
            for (m,) in rows
        ]
        ranking = document_ranking(chunk_docs, qid)
        if len(ranking) < 100:
            short += 1
        per_query.append(evaluate_query(ranking, qrels[qid]))
        if not quiet and n % 100 == 0:
            print(f"    {method}: {n}/{len(queries)} queries", flush=True)
    total = time.perf_counter() - t_start
    return RunResult(
        name=method,
        metrics=mean_metrics(per_query),
        n_queries=len(queries),
        total_s=total,
        median_ms=statistics.median(times) * 1000 if times else 0.0,
        short_rankings=short,
        settings=(settings or Settings()).label() if method == "hybrid" else f"k={k}",
        per_query=per_query,
    )


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> None:
    """Plain aligned text table; `align` is one char per column, 'l' or 'r' (default: first l, rest r)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or ("l" + "r" * (len(headers) - 1))

    def fmt(row):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)).rstrip()

    print(fmt(cells[0]))
    print("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        print(fmt(r))


def result_row(r: RunResult) -> list:
    m = r.metrics
    return [r.name, f"{m['ndcg@10']:.4f}", f"{m['recall@100']:.4f}", f"{m['mrr@10']:.4f}", r.n_queries,
            f"{r.total_s:.1f}", f"{r.median_ms:.1f}"]


RESULT_HEADERS = ["method", "nDCG@10", "Recall@100", "MRR@10", "queries", "total s", "median ms/query"]


def versus(r: RunResult, leg: RunResult) -> dict[str, int]:
    """Per query nDCG@10 of `r` against `leg` (same queries, same order): how many are better, worse, equal."""
    pairs = list(zip(r.per_query, leg.per_query))
    up = sum(a["ndcg@10"] > b["ndcg@10"] + 1e-12 for a, b in pairs)
    down = sum(a["ndcg@10"] < b["ndcg@10"] - 1e-12 for a, b in pairs)
    return {"better": up, "worse": down, "equal": len(pairs) - up - down}


def results_json(info: dict, results: Sequence[RunResult], better_leg: RunResult) -> dict:
    """What --json-out writes: `info` (dataset, split, counts, ...), then one entry per method with its
    metrics and, for the hybrid methods, the per-query counts against the better leg."""
    methods = []
    for r in results:
        m = {"name": r.name, "ndcg@10": r.metrics["ndcg@10"], "recall@100": r.metrics["recall@100"],
             "mrr@10": r.metrics["mrr@10"], "median_ms": r.median_ms, "total_s": r.total_s,
             "queries": r.n_queries, "short_rankings": r.short_rankings, "settings": r.settings}
        if r.name.startswith("hybrid"):
            m["vs_better_leg"] = {"leg": better_leg.name, **versus(r, better_leg)}
        methods.append(m)
    return {**info, "methods": methods}


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="PostgreSQL connection URL of a database with the ragbench extension")
    p.add_argument("dataset", help="BEIR dataset directory (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--split", default="test", help="qrels split to evaluate (default test; train for tuning)")
    p.add_argument("--limit-queries", type=int, default=None, metavar="N", help="evaluate the first N queries only")
    p.add_argument("--depth", type=int, default=300,
                   help="chunks retrieved per query (k), enough for ~100 distinct documents (default 300)")
    p.add_argument("--bm25-weight", type=float, default=None, help="default: the fusion's own")
    p.add_argument("--vector-weight", type=float, default=None, help="default: the fusion's own")
    p.add_argument("--rrf-k", type=int, default=60)
    p.add_argument("--candidates", type=int, default=None,
                   help="hybrid candidates per leg (default: the function's, max(100, k))")
    p.add_argument("--grid", action="store_true", help="also evaluate hybrid over a small parameter grid")
    p.add_argument("--no-ingest", action="store_true", help="do not ingest; evaluate what is stored")
    p.add_argument("--json-out", metavar="FILE", default=None,
                   help="also write the results as JSON to FILE (input of scripts/eval_report.py)")
    args = p.parse_args(argv)
    if not 1 <= args.depth <= 10000:
        p.error("--depth must be between 1 and 10000")
    if args.limit_queries is not None and args.limit_queries < 1:
        p.error("--limit-queries must be >= 1")
    return args


def load_dataset(dataset: str, split: str, limit_queries: int | None):
    """A BEIR dataset directory read and checked: (absolute dir, name, corpus lines, qrels of the split,
    [(query id, text)]). Only queries of the split that have text and at least one relevant document are
    evaluated; the first `limit_queries` of them when given. Exits with a message on a bad dataset."""
    dataset_dir = os.path.abspath(dataset)
    if not os.path.isdir(dataset_dir):
        fail(f"dataset directory {dataset} does not exist")
    name = os.path.basename(dataset_dir.rstrip("/"))

    corpus = read_jsonl(os.path.join(dataset_dir, "corpus.jsonl"))
    query_text = {str(q["_id"]): q.get("text", "") for q in read_jsonl(os.path.join(dataset_dir, "queries.jsonl"))}
    qrels = read_qrels(os.path.join(dataset_dir, "qrels", f"{split}.tsv"))
    # Only queries of the split that have text and at least one relevant document are evaluated.
    qids = [q for q, rel in qrels.items() if q in query_text and any(g > 0 for g in rel.values())]
    missing = [q for q in qrels if q not in query_text]
    if missing:
        print(f"warning: {len(missing)} query ids of qrels/{split}.tsv are not in queries.jsonl (skipped)")
    if limit_queries:
        qids = qids[: limit_queries]
    if not qids:
        fail(f"no query of qrels/{split}.tsv has text and a relevant document")
    queries = [(q, query_text[q]) for q in qids]
    return dataset_dir, name, corpus, qrels, queries


def main(argv=None) -> int:
    args = parse_args(argv)
    if psycopg is None:
        fail("psycopg is not installed: run with .stack/venv/bin/python")

    # Load and check the dataset before touching the database.
    dataset_dir, name, corpus, qrels, queries = load_dataset(args.dataset, args.split, args.limit_queries)

    try:
        conn = psycopg.connect(args.url, autocommit=True)
    except psycopg.Error as e:
        fail(f"cannot connect to {args.url}: {str(e).strip()}")

    with conn:
        if not args.no_ingest:
            ingest(conn, corpus, name)
        n_docs, n_chunks = conn.execute(
            "SELECT count(DISTINCT d.id), count(c.id) FROM rag.document_files d "
            "LEFT JOIN rag.chunks c ON c.document_id = d.id WHERE d.metadata->>'dataset' = %s", (name,)
        ).fetchone()
        (other_chunks,) = conn.execute(
            "SELECT count(*) FROM rag.chunks c JOIN rag.document_files d ON d.id = c.document_id "
            "WHERE d.metadata->>'dataset' IS DISTINCT FROM %s", (name,)
        ).fetchone()
        model = conn.execute("SELECT string_agg(model || ' (' || dimensions || '-d)', ', ') "
                             "FROM rag.embedding_models").fetchone()[0]
        if n_docs == 0:
            fail(f"no document of dataset '{name}' is stored (run without --no-ingest)")

        settings = Settings(args.bm25_weight, args.vector_weight, args.rrf_k, args.candidates)
        hybrid_k = args.depth if args.candidates is None else min(args.depth, args.candidates)
        print()
        print("What is measured")
        print(f"  dataset      {dataset_dir} ('{name}'): {len(corpus)} corpus lines, "
              f"{n_docs} documents / {n_chunks} chunks stored")
        print(f"  other chunks {other_chunks} chunks of other data are in rag.chunks; they are searched but "
              f"dropped from the rankings")
        print(f"  queries      {len(queries)} of qrels/{args.split}.tsv"
              + (f" (first {args.limit_queries})" if args.limit_queries else ""))
        print(f"  model        {model}")
        print(f"  retrieval    k={args.depth} chunks per query (hybrid k={hybrid_k}); document rank = rank of its "
              f"best chunk; a document whose id is the query id is dropped")
        print(f"  hybrid       {settings.label()}"
              + (f" (function default candidates = max(100, k) = {max(100, hybrid_k)})" if args.candidates is None else ""))
        print("  metrics      trec_eval definitions: nDCG@10 (graded linear gain, log2(rank+1) discount), "
              "Recall@100, MRR@10; mean over queries")
        print("  times        client-side wall time of each search call (one connection, sequential)")
        print()

        results = []
        for method in ("bm25", "vector", "hybrid"):
            print(f"  running {method} ...", flush=True)
            results.append(run_method(conn, method, queries, qrels, name, args.depth, settings))
        # the other fusion, with its own default weights (today's default is convex; rrf is the earlier one)
        other = Settings(None, None, args.rrf_k, args.candidates, "rrf" if settings.fusion == "convex" else "convex")
        print(f"  running hybrid ({other.fusion}) ...", flush=True)
        r = run_method(conn, "hybrid", queries, qrels, name, args.depth, other)
        r.name = f"hybrid ({other.fusion})"
        results.append(r)
        results[2].name = f"hybrid ({settings.fusion}, default)" if settings.fusion == "convex" else "hybrid"
        print()
        print(f"Results ({name}, split {args.split})")
        print_table(RESULT_HEADERS + ["rankings < 100 docs"], [result_row(r) + [r.short_rankings] for r in results])
        print()
        print("Per query against the better leg (nDCG@10): better / worse / equal")
        better = max(results[:2], key=lambda r: r.metrics["ndcg@10"])
        for r in results[2:]:
            v = versus(r, better)
            print(f"  {r.name:28s} vs {better.name}: {v['better']} / {v['worse']} / {v['equal']}")

        grid_results = []
        if args.grid:
            grid = list(itertools.product([0.5, 1.0, 1.5, 2.0], [10, 20, 40, 60], [50, 100, 200]))
            print()
            print(f"Grid: rag.hybrid_search over {len(grid)} settings (vector_weight 1), split {args.split}, "
                  f"{len(queries)} queries; k = min({args.depth}, candidates)")
            t0 = time.perf_counter()
            for i, (bw, rk, cand) in enumerate(grid, 1):
                s = Settings(bw, 1.0, rk, cand, "rrf")
                r = run_method(conn, "hybrid", queries, qrels, name, args.depth, s, quiet=True)
                grid_results.append((s, r))
                print(f"  {i:2d}/{len(grid)} {s.label():50s} nDCG@10 {r.metrics['ndcg@10']:.4f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            grid_results.sort(key=lambda sr: (-sr[1].metrics["ndcg@10"], -sr[1].metrics["recall@100"]))
            print()
            print("Grid sorted by nDCG@10 (Recall@100 is bounded by k = candidates chunks)")
            print_table(
                ["bm25_weight", "vector_weight", "rrf_k", "candidates", "nDCG@10", "Recall@100", "MRR@10",
                 "median ms"],
                [[f"{s.bm25_weight:g}", f"{s.vector_weight:g}", s.rrf_k, s.candidates,
                  f"{r.metrics['ndcg@10']:.4f}", f"{r.metrics['recall@100']:.4f}", f"{r.metrics['mrr@10']:.4f}",
                  f"{r.median_ms:.1f}"] for s, r in grid_results],
                align="rrrrrrrr",
            )

    # Final summary: the three methods, plus the best grid setting when a grid was run.
    print()
    print(f"Summary: {name} ({n_docs} docs, {n_chunks} chunks), {len(queries)} queries of split {args.split}")
    rows = [result_row(r) + [r.settings] for r in results]
    if grid_results:
        s, r = grid_results[0]
        rows.append(result_row(RunResult("hybrid (best of grid)", r.metrics, r.n_queries, r.total_s, r.median_ms))
                    + [s.label()])
    print_table(RESULT_HEADERS + ["settings"], rows, align="lrrrrrrl")

    if args.json_out:
        info = {"dataset": name, "dataset_dir": dataset_dir, "split": args.split, "corpus_lines": len(corpus),
                "n_docs": n_docs, "n_chunks": n_chunks, "n_queries": len(queries), "model": model,
                "depth": args.depth}
        out = os.path.abspath(args.json_out)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(results_json(info, results, better), fh, indent=2)
            fh.write("\n")
        print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
