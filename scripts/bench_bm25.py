"""BM25 under the loading pattern of real users, and long queries (`make bench-bm25`).

    python scripts/bench_bm25.py URL [--dataset ../shared/datasets/scifact] [--idle 60] [--queries 100]

What it does, with documents of its own tag (metadata {"bench": "bm25"}, removed first and at the end):
1. Loads 10,366 documents one at a time with rag.ingest_document, one statement each, as an
   application would: the 5,183 SciFact abstracts, each split into two halves at a sentence boundary.
   Embeddings come from the stand-in server of bench_ingest.py (hashing trick over the words; the BM25
   leg, which this measures, does not depend on them).
2. Prints the pg_search segment count right after the load, then waits --idle seconds with no writes
   and prints it again, with every rebuild the worker made meanwhile (rag.bm25_compactions: why, the
   segment counts, how long it took).
3. Times rag.bm25_search(q, 100) (p50, p95 over --queries queries, after a warm-up) for short queries
   (SciFact's claims, median 12 words) and long ones (the first 200 words of SciFact abstracts), with
   rag.bm25_max_query_terms as configured and with 0 (no cap), on the index as the worker left it and
   after a manual REINDEX.
4. Loads the same documents again through rag.upload and the background worker (groups of files), and
   once more as one INSERT ... SELECT of all chunk rows (like COPY), with the segment counts of each.
Numbers go to stdout, one line per measure.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import STANDIN_MODEL, start_standin  # noqa: E402

SEGMENTS = "SELECT count(*) FROM paradedb.index_info('rag.chunks_bm25')"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def halves(text: str) -> list[str]:
    sentences = SENTENCE_END.split(text.strip())
    if len(sentences) < 2:
        return [text]
    cut = len(sentences) // 2
    return [" ".join(sentences[:cut]), " ".join(sentences[cut:])]


def load_corpus(dataset: Path) -> list[tuple[str, str]]:
    docs = []
    with open(dataset / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            for i, part in enumerate(halves(d["text"])):
                docs.append((f"{d['_id']}-{i}.md", f"# {d['title']}\n\n{part}"))
    return docs


def long_queries(dataset: Path, n: int) -> list[str]:
    out = []
    with open(dataset / "corpus.jsonl") as f:
        for line in f:
            words = json.loads(line)["text"].split()
            if len(words) >= 200:
                out.append(" ".join(words[:200]))
            if len(out) >= n:
                break
    return out


def short_queries(dataset: Path, n: int) -> list[str]:
    with open(dataset / "queries.jsonl") as f:
        return [json.loads(line)["text"] for line in f][:n]


def timed(conn, sql: str, queries: list[str]) -> tuple[float, float]:
    for q in queries[:10]:
        conn.execute(sql, (q,)).fetchall()
    times = []
    for q in queries:
        t0 = time.perf_counter()
        conn.execute(sql, (q,)).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def cleanup(conn) -> None:
    conn.execute("DELETE FROM rag.document_files WHERE metadata->>'bench' = 'bm25'")


def after_load(conn, label: str, idle: int, last: int, took: float, what: str) -> None:
    chunks = conn.execute("SELECT count(*) FROM rag.chunks WHERE metadata->>'bench' = 'bm25'").fetchone()[0]
    print(f"[{label}] {what}, {chunks} chunks in {took:.0f} s; segments right after: "
          f"{conn.execute(SEGMENTS).fetchone()[0]}", flush=True)
    time.sleep(idle)
    print(f"[{label}] segments after {idle} s idle: {conn.execute(SEGMENTS).fetchone()[0]}")
    for r in conn.execute("SELECT reason, segments_before, segments_after, "
                          "round(extract(epoch FROM finished_at - started_at) * 1000), error "
                          "FROM rag.bm25_compactions WHERE id > %s ORDER BY id", (last,)):
        print(f"[{label}]   worker rebuild ({r[0]}): {r[1]} -> {r[2]} segments in {r[3]} ms"
              f"{', error: ' + r[4] if r[4] else ''}")


def last_rebuild(conn) -> int:
    return conn.execute("SELECT coalesce(max(id), 0) FROM rag.bm25_compactions").fetchone()[0]


def one_by_one(conn, docs, idle) -> None:
    last, t0 = last_rebuild(conn), time.perf_counter()
    for name, text in docs:
        conn.execute("SELECT rag.ingest_document(%s, %s, '{\"bench\": \"bm25\"}')", (name, text))
    after_load(conn, "one at a time (rag.ingest_document)", idle, last, time.perf_counter() - t0, f"{len(docs)} documents")


def worker_groups(conn, docs, idle, port) -> None:
    """rag.upload in batches of 500 files; the background worker ingests them (rag.worker_batch_size at a
    time), embedding through the stand-in (set for the worker with ALTER SYSTEM, reset afterwards)."""
    names = ("rag.embedding_provider", "rag.embedding_model", "rag.embedding_url")
    values = ("openai", STANDIN_MODEL, f"http://127.0.0.1:{port}")
    for k, v in zip(names, values):
        conn.execute(f"ALTER SYSTEM SET {k} = '{v}'")  # fixed names; the values are ours
    conn.execute("SELECT pg_reload_conf()")
    time.sleep(1.5)
    try:
        last, t0 = last_rebuild(conn), time.perf_counter()
        batches = []
        for i in range(0, len(docs), 500):
            part = docs[i:i + 500]
            batches.append(conn.execute("SELECT rag.upload(%s, %s, '{\"bench\": \"bm25\"}')",
                                        ([n for n, _ in part], [t.encode() for _, t in part])).fetchone()[0])
        for b in batches:
            while conn.execute("SELECT status FROM rag.batch_status(%s)", (b,)).fetchone()[0] not in (
                    "completed", "failed", "partially failed"):
                time.sleep(0.2)
        after_load(conn, "worker groups (rag.upload)", idle, last, time.perf_counter() - t0, f"{len(docs)} documents")
    finally:
        for k in names:
            conn.execute(f"ALTER SYSTEM RESET {k}")
        conn.execute("SELECT pg_reload_conf()")


def one_statement(conn, idle) -> None:
    """The chunk rows of the previous pattern written again by a single INSERT ... SELECT, as COPY does."""
    conn.execute("CREATE TEMP TABLE bench_rows AS SELECT * FROM rag.chunks WHERE metadata->>'bench' = 'bm25'")
    conn.execute("DELETE FROM rag.chunks WHERE metadata->>'bench' = 'bm25'")
    conn.execute("VACUUM rag.chunks")
    last, t0 = last_rebuild(conn), time.perf_counter()
    n = conn.execute("INSERT INTO rag.chunks SELECT * FROM bench_rows").rowcount
    conn.execute("DROP TABLE bench_rows")
    after_load(conn, "one statement (INSERT ... SELECT, like COPY)", idle, last, time.perf_counter() - t0, f"{n} rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--dataset", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"))
    ap.add_argument("--idle", type=int, default=60)
    ap.add_argument("--queries", type=int, default=100)
    a = ap.parse_args()
    dataset = Path(a.dataset)
    server = start_standin()
    settings = {"rag.embedding_provider": "openai", "rag.embedding_model": STANDIN_MODEL,
                "rag.embedding_url": f"http://127.0.0.1:{server.server_port}"}
    docs = load_corpus(dataset)
    print(f"corpus: {len(docs)} documents (the {dataset.name} abstracts, each split in two at a sentence); "
          f"stand-in embeddings; worker: rag.bm25_compact_segments and rag.bm25_compact_quiet as configured")
    with psycopg.connect(a.url, autocommit=True) as conn:
        for k, v in settings.items():
            conn.execute("SELECT set_config(%s, %s, false)", (k, v))
        cleanup(conn)
        one_by_one(conn, docs, a.idle)
        sql = "SELECT chunk_id FROM rag.bm25_search(%s, 100)"
        shorts, longs = short_queries(dataset, a.queries), long_queries(dataset, a.queries)
        cap = conn.execute("SHOW rag.bm25_max_query_terms").fetchone()[0]
        for label in ("as the worker left it", "after a manual REINDEX"):
            if label.startswith("after"):
                conn.execute("REINDEX INDEX rag.chunks_bm25")
            seg = conn.execute(SEGMENTS).fetchone()[0]
            row = []
            for c in (cap, "0"):
                conn.execute("SELECT set_config('rag.bm25_max_query_terms', %s, false)", (c,))
                s50, _ = timed(conn, sql, shorts)
                l50, l95 = timed(conn, sql, longs)
                row.append(f"cap {c}: short p50 {s50:.1f} ms, 200-word p50 {l50:.1f} ms p95 {l95:.1f} ms")
            conn.execute("SELECT set_config('rag.bm25_max_query_terms', %s, false)", (cap,))
            print(f"bm25_search k=100, {seg} segments ({label}): " + "; ".join(row))
        cleanup(conn)
        worker_groups(conn, docs, a.idle, server.server_port)
        one_statement(conn, a.idle)
        cleanup(conn)
    server.shutdown()


if __name__ == "__main__":
    main()
