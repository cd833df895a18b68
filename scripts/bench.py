"""Search latency and throughput of ragbench: rag.hybrid_search against a pgvector-only query and the
hand-written ParadeDB RRF recipe, on the same table (rag.chunks) and the same query vector.

Usage (what `make bench` runs):

    python scripts/bench.py URL [--sizes 10000,100000] [--queries 200] [--clients 1,4,16] [--duration 10]
                            [--text corpus.jsonl] [--query-file queries.jsonl] [--keep] [--bulk-from 500000]

    make bench-search SIZES=1000000 runs the 1M-chunk case (add --all-legs-concurrent by hand for the
    recipe's and pgvector's latency at 4 and 16 clients).

How it works
------------
Corpus. The searches read rag.chunks, so the bench corpus goes there: documents with metadata
{"bench": true, "size": N} (one per ~50 chunks), inserted with COPY. Running the built-in model on
100,000 chunks would take about an hour (~30 chunks/s), so the model is run once on --passages real
passages (default 2,000 windows of SciFact abstracts, rag.embed(text, 'document')), and every synthetic
chunk gets
  * text: a window of consecutive sentences of the same SciFact abstract as one of those passages (plus,
    sometimes, one sentence of another abstract), with the abstract's title as heading context, and
  * vector: that passage's real model vector plus gaussian noise (sigma --noise per component),
    L2-normalised, computed in Python,
so text and vector agree the way they do for real chunks, and the vectors have the real model's
geometry. Sizes are built incrementally (10k, then topped up to 100k); the bench rows are deleted at the
end unless --keep. Sizes from --bulk-from on (default 500,000) are loaded as a DBA loads a large corpus:
the model's HNSW index and the BM25 index are dropped, the rows copied, and both indexes built again with
CREATE INDEX (maintenance_work_mem 4GB); their build times and sizes are reported. After the timings the
memory of the application connection's backend is read from /proc (client and server on one host). Real documents already in rag.chunks stay and are searched too (reported).

Queries. Real questions (SciFact queries.jsonl). Each query's vector is computed once with
rag.embed(q) (timed: the query-embedding cost) and reused by the legs that take a vector.

Legs, timed per query (client-side wall time, after a warmup; the legs are interleaved query by query):
  hybrid    SELECT ... FROM rag.hybrid_search(q, 10)       -- embeds the query itself, then fuses
  bm25      SELECT ... FROM rag.bm25_search(q, 10)         -- reference
  pgvector  ORDER BY embedding::vector(384) <=> v LIMIT 10 (hnsw.ef_search = 100)
  recipe    ParadeDB's hybrid recipe: BM25 top 100 and vector top 100, RANK(), full outer join,
            sum of 1/(60 + rank), top 10 -- with the precomputed query vector
  hybrid as app, bm25 as app: the same two calls through a second connection as the LOGIN role bench_app,
            granted rag_reader only and owning the bench rows: row-level security adds its owner and
            tenant conditions (index terms in the BM25 scan, a filter in the HNSW iterative scan). The
            superuser's legs bypass row-level security, as superusers do.
  recipe as app: the recipe through the bench_app connection (row-level security applies to it too).
Because hybrid_search includes the query embedding and the recipe does not, "hybrid excl. embedding" is
measured call by call: the hybrid legs run with rag.search_timing on, and each call's wall time minus the
"query embedding" phase its NOTICE reports is that call's time without embedding. (The older derived
figure, hybrid p50 - embed p50, is printed beside it.) The top-10 sanity check against the recipe uses an
untimed rag.hybrid_search(q, 10, fusion => 'rrf'): the recipe is RRF, hybrid_search's default is convex.

Throughput: rag.hybrid_search with 1, 4 and 16 client threads (one connection each, warmed up by one untimed search) for --duration
seconds each, against the given URL only; with --all-legs-concurrent the recipe and pgvector-only legs too
(each with the query's precomputed vector).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "scifact"
MODEL = "builtin/all-MiniLM-L6-v2"
APP_ROLE = "bench_app"  # an application role: rag_reader, owner of the bench rows
DIMS = 384
CHUNKS_PER_DOC = 50

# ---- the statements timed -------------------------------------------------------------------------

SQL_HYBRID = "SELECT chunk_id, score FROM rag.hybrid_search(%s, 10)"
SQL_HYBRID_RRF = "SELECT chunk_id, score FROM rag.hybrid_search(%s, 10, fusion => 'rrf')"
# rag.search_timing's NOTICE: "rag.hybrid_search timing (ms): ..., query embedding 5.91, ...; total 26.30"
EMBED_PHASE = re.compile(r"^rag\.hybrid_search timing \(ms\):.*\bquery embedding ([0-9.]+)")
SQL_BM25 = "SELECT chunk_id, score FROM rag.bm25_search(%s, 10)"
SQL_EMBED = "SELECT rag.embed(%s)::text"
SQL_PGVECTOR = f"""
SELECT id FROM rag.chunks
WHERE embedding_model = '{MODEL}'
ORDER BY embedding::vector({DIMS}) <=> %s::vector({DIMS})
LIMIT 10"""
# ParadeDB's documented hybrid-search recipe (reciprocal rank fusion), on rag.chunks.
SQL_RECIPE = f"""
WITH bm25 AS (
    SELECT id, RANK() OVER (ORDER BY score DESC) AS rank
    FROM (SELECT id, pdb.score(id) AS score
          FROM rag.chunks
          WHERE content_with_context ||| %s
          ORDER BY pdb.score(id) DESC
          LIMIT 100) b
), semantic AS (
    SELECT id, RANK() OVER (ORDER BY distance) AS rank
    FROM (SELECT id, embedding::vector({DIMS}) <=> %s::vector({DIMS}) AS distance
          FROM rag.chunks
          WHERE embedding_model = '{MODEL}'
          ORDER BY distance
          LIMIT 100) v
)
SELECT coalesce(bm25.id, semantic.id) AS id,
       coalesce(1.0 / (60 + bm25.rank), 0.0) + coalesce(1.0 / (60 + semantic.rank), 0.0) AS score
FROM bm25 FULL OUTER JOIN semantic ON bm25.id = semantic.id
ORDER BY score DESC
LIMIT 10"""

BENCH_DOCS = "metadata->>'bench' = 'true'"


def log(msg: str = "") -> None:
    print(msg, flush=True)


def fail(msg: str) -> None:
    print(f"bench.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


# ---- statistics and output ------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank-interpolated percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    x = (len(s) - 1) * p / 100
    lo, hi = math.floor(x), math.ceil(x)
    return s[lo] + (s[hi] - s[lo]) * (x - lo)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [t * 1000 for t in seconds]
    return {"p50": percentile(ms, 50), "p95": percentile(ms, 95), "mean": statistics.fmean(ms), "n": len(ms)}


def print_table(headers, rows, align=None) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or ("l" + "r" * (len(headers) - 1))

    def fmt(row):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)).rstrip()

    log(fmt(cells[0]))
    log("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        log(fmt(r))


# ---- text source ----------------------------------------------------------------------------------

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def load_abstracts(path: Path) -> list[tuple[str, list[str]]]:
    """(title, sentences) of every corpus line with at least two sentences."""
    if not path.is_file():
        fail(f"missing text source {path} (a BEIR corpus.jsonl; pass --text)")
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            d = json.loads(line)
            sents = [s.strip() for s in SENTENCE_END.split(d.get("text") or "") if s.strip()]
            if len(sents) >= 2:
                out.append(((d.get("title") or "").strip(), sents))
    if not out:
        fail(f"no usable text in {path}")
    return out


def load_queries(path: Path, n: int, rng: random.Random) -> list[str]:
    if not path.is_file():
        fail(f"missing queries file {path} (a BEIR queries.jsonl; pass --query-file)")
    with open(path, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh if line.strip()]
    texts = [t for t in dict.fromkeys(texts) if t.strip()]
    rng.shuffle(texts)
    return texts[:n]


def window(sents: list[str], rng: random.Random, max_words: int = 140) -> str:
    """Consecutive sentences from a random start, up to about max_words words (chunk-sized)."""
    start = rng.randrange(len(sents))
    out, words = [], 0
    for s in sents[start:]:
        w = len(s.split())
        if out and words + w > max_words:
            break
        out.append(s)
        words += w
    return " ".join(out)


# ---- corpus building ------------------------------------------------------------------------------


class Passages:
    """The real passages that were embedded: their abstract and their model vector."""

    def __init__(self, abstracts, vectors, sources):
        self.abstracts = abstracts  # all (title, sentences)
        self.vectors = vectors      # list of 384-float lists, unit length
        self.sources = sources      # index into abstracts of each passage


def ensure_model(conn, abstracts) -> None:
    """rag.embedding_models must know the built-in model (and its HNSW index must exist): the first
    rag.ingest_document does both, so ingest one small real document if nothing was ingested yet."""
    row = conn.execute("SELECT index_name FROM rag.embedding_models WHERE model = %s", (MODEL,)).fetchone()
    if row:
        return
    title, sents = abstracts[0]
    log(f"  no vectors of {MODEL} stored yet: ingesting one real document to create the model row and index")
    conn.execute("SELECT rag.ingest_document(%s, %s, %s::jsonb)",
                 ("bench-seed.md", f"# {title}\n\n{' '.join(sents)}", json.dumps({"bench": True, "size": 0})))
    if not conn.execute("SELECT 1 FROM rag.embedding_models WHERE model = %s", (MODEL,)).fetchone():
        fail(f"{MODEL} is still not in rag.embedding_models: is rag.embedding_provider the built-in model?")


def embed_passages(conn, abstracts, n: int, rng: random.Random) -> tuple[Passages, float]:
    """Embed n real passages (one per distinct abstract) with the real model, as documents."""
    picks = rng.sample(range(len(abstracts)), min(n, len(abstracts)))
    vectors, t0 = [], time.perf_counter()
    for i, a in enumerate(picks, 1):
        title, sents = abstracts[a]
        text = f"{title}\n\n{window(sents, rng)}" if title else window(sents, rng)
        (v,) = conn.execute("SELECT rag.embed_array(%s, 'document')", (text,)).fetchone()
        vectors.append(normalise(v))
        if i % 250 == 0 or i == len(picks):
            dt = time.perf_counter() - t0
            log(f"  embedded {i}/{len(picks)} real passages ({i / dt:.1f}/s)")
    return Passages(abstracts, vectors, picks), time.perf_counter() - t0


def normalise(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def synthetic_chunk(p: Passages, rng: random.Random, noise: float) -> tuple[str, str, str, int]:
    """(content, content_with_context, vector literal, token estimate) of one synthetic chunk."""
    j = rng.randrange(len(p.vectors))
    title, sents = p.abstracts[p.sources[j]]
    content = window(sents, rng)
    if rng.random() < 0.3:  # some chunks also carry a sentence of another abstract
        other = p.abstracts[rng.randrange(len(p.abstracts))][1]
        content += " " + other[rng.randrange(len(other))]
    ctx = f"{title}\n\n{content}" if title else content
    gauss = rng.gauss
    v = [x + gauss(0.0, noise) for x in p.vectors[j]]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    literal = "[" + ",".join(f"{x / norm:.6f}" for x in v) + "]"
    tokens = int(len(content.split()) * 1.3)  # rough wordpiece estimate (not used by the searches)
    return content, ctx, literal, tokens


def bench_chunk_count(conn) -> int:
    return conn.execute(
        f"SELECT count(*) FROM rag.chunks c JOIN rag.document_files d ON d.id = c.document_id WHERE d.{BENCH_DOCS}"
    ).fetchone()[0]


def grow_corpus(conn, p: Passages, target: int, noise: float, rng: random.Random) -> float:
    """Add bench chunks until `target` bench chunks exist; COPY in transactions of 5,000 rows.
    Returns the load time in seconds (generation + COPY + index maintenance + ANALYZE)."""
    have = bench_chunk_count(conn)
    todo = target - have
    if todo <= 0:
        return 0.0
    log(f"  adding {todo} chunks ({have} -> {target}) ...")
    t0 = time.perf_counter()
    batch = 5000
    done = 0
    while done < todo:
        n = min(batch, todo - done)
        docs = [uuid.uuid4() for _ in range(math.ceil(n / CHUNKS_PER_DOC))]
        with conn.transaction():
            with conn.cursor() as cur:
                with cur.copy("COPY rag.document_files (id, file_name, file_type, title, file_size_bytes, "
                              "file_hash, metadata, owner) FROM STDIN") as cp:
                    for d in docs:
                        cp.write_row((d, f"bench-{d}.txt", "text", None, 0, f"bench:{d}",
                                      json.dumps({"bench": True, "size": target}), APP_ROLE))
                with cur.copy("COPY rag.chunks (document_id, chunk_index, content, content_with_context, "
                              "token_count, embedding, embedding_model, metadata, owner) FROM STDIN") as cp:
                    meta = json.dumps({"bench": True, "size": target})
                    for i in range(n):
                        content, ctx, vec, tokens = synthetic_chunk(p, rng, noise)
                        cp.write_row((docs[i // CHUNKS_PER_DOC], i % CHUNKS_PER_DOC, content, ctx, tokens,
                                      vec, MODEL, meta, APP_ROLE))
        done += n
        dt = time.perf_counter() - t0
        log(f"    {have + done}/{target} chunks ({done / dt:.0f} chunks/s)")
    conn.execute("ANALYZE rag.chunks")
    conn.execute("ANALYZE rag.document_files")
    return time.perf_counter() - t0


INDEXES = """
SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'rag.chunks'::regclass AND (c.relname = 'chunks_bm25' OR c.relname IN (
    SELECT index_name FROM rag.embedding_models WHERE model = %s))"""


def bulk_load(conn, p: Passages, target: int, noise: float, rng: random.Random) -> dict:
    """A large load the way a DBA does it: drop the model's HNSW index and the BM25 index, COPY, and
    build both again (CREATE INDEX, maintenance_work_mem 4GB). Returns the times and index sizes."""
    defs = conn.execute(INDEXES, (MODEL,)).fetchall()
    for name, _ in defs:
        conn.execute(f'DROP INDEX rag."{name}"')  # names from pg_class
    load_s = grow_corpus(conn, p, target, noise, rng)
    out = {"load_s": load_s}
    conn.execute("SET maintenance_work_mem = '4GB'")
    for name, ddl in sorted(defs, key=lambda d: d[0] != "chunks_bm25"):
        log(f"  building {name} ...")
        t0 = time.perf_counter()
        conn.execute(ddl)
        kind = "bm25" if name == "chunks_bm25" else "hnsw"
        out[f"{kind}_build_s"] = time.perf_counter() - t0
        out[f"{kind}_bytes"] = conn.execute("SELECT pg_relation_size(%s::regclass)", (f"rag.{name}",)).fetchone()[0]
        log(f"    {name}: {out[kind + '_build_s']:.0f} s, {out[kind + '_bytes'] / 2**20:.0f} MB")
    conn.execute("RESET maintenance_work_mem")
    conn.execute("ANALYZE rag.chunks")
    return out


def backend_memory(conn) -> str:
    """Peak and current private memory of a connection's backend (client and server on one host)."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    try:
        with open(f"/proc/{pid}/status") as f:
            kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)
                  if k in ("VmHWM", "VmRSS", "RssShmem", "RssAnon")}
    except OSError:
        return "unavailable (server on another host)"
    return (f"RSS {kb['VmRSS'] >> 10} MB, of which private (RssAnon) {kb['RssAnon'] >> 10} MB and shared memory "
            f"touched {kb['RssShmem'] >> 10} MB; peak RSS {kb['VmHWM'] >> 10} MB")


def delete_bench_rows(conn) -> int:
    return conn.execute(f"DELETE FROM rag.document_files WHERE {BENCH_DOCS}").rowcount


# ---- timing ---------------------------------------------------------------------------------------


def embed_queries(conn, queries: list[str]) -> tuple[list[str], list[float]]:
    """Each query's vector (pgvector text) and the time rag.embed took for it."""
    for q in queries[:5]:  # warmup
        conn.execute(SQL_EMBED, (q,)).fetchone()
    vecs, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        (v,) = conn.execute(SQL_EMBED, (q,)).fetchone()
        times.append(time.perf_counter() - t0)
        vecs.append(v)
    return vecs, times


def ensure_app_role(conn) -> None:
    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone():
        conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
    conn.execute(f"GRANT rag_reader TO {APP_ROLE}")


def embedding_phase(notices: list[str]) -> float:
    """The "query embedding" milliseconds of the last rag.hybrid_search timing NOTICE."""
    for n in reversed(notices):
        m = EMBED_PHASE.match(n)
        if m:
            return float(m.group(1))
    fail("rag.hybrid_search sent no timing NOTICE with rag.search_timing on (is the extension older than this bench?)")
    return 0.0


def time_legs(conn, app, queries: list[str], vecs: list[str], warmup: int) -> tuple[dict, dict]:
    """Time the legs, interleaved query by query (rotating their order) so that caches and
    background load affect all of them alike. Returns ({leg: [seconds]}, sanity info); the legs
    "hybrid_excl" and "hybrid_app_excl" are the hybrid calls' wall times minus their own query embedding."""
    notices: dict[int, list[str]] = {}
    for c in (conn, app):
        c.execute("SET hnsw.ef_search = 100")
        c.execute("SET rag.search_timing = on")
        box = notices.setdefault(id(c), [])
        c.add_notice_handler(lambda d, box=box: box.append(d.message_primary or ""))

    def hybrid(c, q):
        notices[id(c)].clear()
        t0 = time.perf_counter()
        rows = c.execute(SQL_HYBRID, (q,)).fetchall()
        wall = time.perf_counter() - t0
        return rows, wall - embedding_phase(notices[id(c)]) / 1000

    legs = {
        "hybrid": lambda q, v: hybrid(conn, q),
        "hybrid_app": lambda q, v: hybrid(app, q),
        "bm25": lambda q, v: conn.execute(SQL_BM25, (q,)).fetchall(),
        "bm25_app": lambda q, v: app.execute(SQL_BM25, (q,)).fetchall(),
        "pgvector": lambda q, v: conn.execute(SQL_PGVECTOR, (v,)).fetchall(),
        "recipe": lambda q, v: conn.execute(SQL_RECIPE, (q, v)).fetchall(),
        "recipe_app": lambda q, v: app.execute(SQL_RECIPE, (q, v)).fetchall(),
    }
    for q, v in list(zip(queries, vecs))[:warmup]:
        for run in legs.values():
            run(q, v)
    times: dict[str, list[float]] = {name: [] for name in legs}
    times.update(hybrid_excl=[], hybrid_app_excl=[])
    overlap, vec_rows, app_rows = [], [], []
    names = list(legs)
    for i, (q, v) in enumerate(zip(queries, vecs)):
        results = {}
        for name in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            results[name] = legs[name](q, v)
            times[name].append(time.perf_counter() - t0)
            if name.startswith("hybrid"):
                results[name], excl = results[name]
                times[name + "_excl"].append(excl)
        # Sanity: with RRF, hybrid_search fuses like the recipe; how many top-10 ids agree? (untimed)
        h = {r[0] for r in conn.execute(SQL_HYBRID_RRF, (q,)).fetchall()}
        r = {row[0] for row in results["recipe"]}
        if h or r:
            overlap.append(len(h & r) / max(len(h), len(r)))
        vec_rows.append(len(results["pgvector"]))
        app_rows.append(len(results["hybrid_app"]))
    return times, {"overlap": statistics.fmean(overlap) if overlap else float("nan"),
                   "pgvector_rows": statistics.fmean(vec_rows) if vec_rows else 0,
                   "app_rows": statistics.fmean(app_rows) if app_rows else 0}


def plan_uses(conn, sql: str, params) -> str:
    """Which indexes the planner uses for a statement (EXPLAIN, no execution)."""
    conn.execute("SET hnsw.ef_search = 100")
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params).fetchall())
    used = sorted(set(re.findall(r"Index Scan using (\S+)", plan)) | set(re.findall(r"Custom Scan \((\w+)", plan)))
    if "Seq Scan on chunks" in plan:
        used.append("SEQ SCAN on chunks")
    return ", ".join(used) or "?"


def throughput(url: str, params: list[tuple], clients: int, duration: float, sql: str = SQL_HYBRID) -> dict:
    """`sql` (rag.hybrid_search by default) with `params` in turn, from `clients` threads, each on its own
    (warmed-up) connection, for `duration` seconds."""
    conns = [psycopg.connect(url, autocommit=True) for _ in range(clients)]
    # One untimed search per connection first: a new backend loads the built-in model (~0.5 s) on its
    # first embedding, which would otherwise be counted as query time.
    for k, c in enumerate(conns):
        c.execute("SET hnsw.ef_search = 100")
        c.execute(sql, params[(k * 7) % len(params)]).fetchall()
    counts = [0] * clients
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients + 1)
    max_iter = 1_000_000  # a bound on the loop besides the deadline

    def worker(k: int) -> None:
        conn = conns[k]
        start.wait()
        deadline = time.perf_counter() + duration
        i = k * 7
        try:
            while time.perf_counter() < deadline and counts[k] < max_iter:
                t0 = time.perf_counter()
                conn.execute(sql, params[i % len(params)]).fetchall()
                lat[k].append(time.perf_counter() - t0)
                counts[k] += 1
                i += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(str(e).splitlines()[0])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    all_lat = [x for l in lat for x in l]
    out = {"clients": clients, "queries": sum(counts), "seconds": elapsed, "qps": sum(counts) / elapsed,
           "errors": errors}
    out.update({k: v for k, v in (summary_ms(all_lat) if all_lat else {"p50": 0, "p95": 0, "mean": 0}).items()
                if k != "n"})
    return out


# ---- main -----------------------------------------------------------------------------------------


def int_list(s: str) -> list[int]:
    try:
        values = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return values


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="PostgreSQL URL of the local database with the ragbench extension")
    p.add_argument("--sizes", type=int_list, default=[10000, 100000], help="bench corpus sizes in chunks")
    p.add_argument("--queries", type=int, default=200, help="real queries timed per leg (default 200)")
    p.add_argument("--clients", type=int_list, default=[1, 4, 16], help="client threads for throughput")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per throughput run (default 10)")
    p.add_argument("--warmup", type=int, default=10, help="untimed queries per leg first (default 10)")
    p.add_argument("--text", type=Path, default=DEFAULT_DATA / "corpus.jsonl", help="BEIR corpus.jsonl: chunk text")
    p.add_argument("--query-file", type=Path, default=DEFAULT_DATA / "queries.jsonl", help="BEIR queries.jsonl")
    p.add_argument("--passages", type=int, default=2000, help="real passages embedded with the model (default 2000)")
    p.add_argument("--noise", type=float, default=0.02, help="gaussian noise sigma per vector component")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--keep", action="store_true", help="keep the bench rows at the end")
    p.add_argument("--all-legs-concurrent", action="store_true",
                   help="also run the recipe and pgvector-only legs at each client count")
    p.add_argument("--bulk-from", type=int, default=500000,
                   help="sizes from this one on are loaded with the indexes dropped and built after (default 500000)")
    args = p.parse_args(argv)
    args.sizes = sorted(set(args.sizes))
    if args.queries < 1 or args.duration <= 0 or args.passages < 1:
        p.error("--queries, --duration and --passages must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    abstracts = load_abstracts(args.text)
    queries = load_queries(args.query_file, args.queries, rng)
    if len(queries) < args.queries:
        log(f"note: only {len(queries)} distinct queries in {args.query_file}")
    try:
        conn = psycopg.connect(args.url, autocommit=True)
    except psycopg.Error as e:
        fail(f"cannot connect to {args.url}: {str(e).strip()}")

    t_start = time.perf_counter()
    pg_version = conn.execute("SHOW server_version").fetchone()[0]
    ext = dict(conn.execute("SELECT extname, extversion FROM pg_extension "
                            "WHERE extname IN ('ragbench', 'vector', 'pg_search')").fetchall())
    log("ragbench search benchmark")
    log(f"  machine      {os.cpu_count()} CPUs (nproc), shared with the server; client and server on one host")
    log(f"  server       PostgreSQL {pg_version}, " + ", ".join(f"{k} {v}" for k, v in sorted(ext.items())))
    log(f"  text         {args.text} ({len(abstracts)} abstracts), title as heading context")
    log(f"  vectors      {MODEL} ({DIMS}-d): {args.passages} real passage vectors + N(0, {args.noise}^2) noise, "
        f"L2-normalised")
    log(f"  queries      {len(queries)} real questions from {args.query_file} (seed {args.seed}), "
        f"warmup {args.warmup}")
    log(f"  sizes        {', '.join(map(str, args.sizes))} bench chunks ({CHUNKS_PER_DOC} chunks per document)")
    log()

    results = []  # one dict per size
    app = None
    try:
        log("Preparing")
        ensure_model(conn, abstracts)
        ensure_app_role(conn)
        app = psycopg.connect(psycopg.conninfo.make_conninfo(args.url, user=APP_ROLE), autocommit=True)
        existing = bench_chunk_count(conn)
        if existing > args.sizes[0]:
            log(f"  removing {existing} bench chunks left by an earlier run (more than {args.sizes[0]})")
            delete_bench_rows(conn)
        passages, embed_s = embed_passages(conn, abstracts, args.passages, rng)
        log(f"  passage embedding: {len(passages.vectors)} passages in {embed_s:.1f} s")

        for size in args.sizes:
            log()
            log(f"Size {size}")
            build = bulk_load(conn, passages, size, args.noise, rng) if size >= args.bulk_from else {}
            load_s = build["load_s"] if build else grow_corpus(conn, passages, size, args.noise, rng)
            n_bench = bench_chunk_count(conn)
            (n_total,) = conn.execute("SELECT count(*) FROM rag.chunks").fetchone()
            log(f"  corpus: {n_bench} bench chunks + {n_total - n_bench} other chunks = {n_total} searched; "
                f"load time {load_s:.1f} s")

            vecs, embed_times = embed_queries(conn, queries)
            plans = {"pgvector": plan_uses(conn, SQL_PGVECTOR, (vecs[0],)),
                     "recipe": plan_uses(conn, SQL_RECIPE, (queries[0], vecs[0]))}
            log(f"  plans: pgvector uses {plans['pgvector']}; recipe uses {plans['recipe']}")
            log(f"  timing {len(queries)} queries x 7 legs ...")
            times, sanity = time_legs(conn, app, queries, vecs, args.warmup)
            legs = {name: summary_ms(t) for name, t in times.items()}
            legs["embed"] = summary_ms(embed_times)
            tp = []
            for c in args.clients:
                log(f"  throughput: {c} client(s) x {args.duration:g} s ...")
                tp.append(throughput(args.url, [(q,) for q in queries], c, args.duration))
                if tp[-1]["errors"]:
                    log(f"    {len(tp[-1]['errors'])} client errors, e.g. {tp[-1]['errors'][0]}")
            others = {}
            if args.all_legs_concurrent:
                for leg, sql, params in (("recipe", SQL_RECIPE, list(zip(queries, vecs))),
                                         ("pgvector", SQL_PGVECTOR, [(v,) for v in vecs])):
                    others[leg] = []
                    for c in args.clients:
                        log(f"  throughput of the {leg} leg: {c} client(s) x {args.duration:g} s ...")
                        others[leg].append(throughput(args.url, params, c, args.duration, sql))
            memory = backend_memory(app)
            log(f"  memory of the application connection's backend after its searches: {memory}")
            results.append({"size": size, "bench": n_bench, "total": n_total, "load_s": load_s, "legs": legs,
                            "sanity": sanity, "throughput": tp, "plans": plans, "build": build, "memory": memory,
                            "others": others})
            report_size(results[-1])
    finally:
        if args.keep:
            log("\nbench rows kept (--keep); remove with: DELETE FROM rag.document_files "
                "WHERE metadata->>'bench' = 'true'")
        else:
            n = delete_bench_rows(conn)
            log(f"\nremoved the bench rows ({n} documents and their chunks)")
        if app is not None:
            app.close()
        conn.close()

    final_table(results)
    log(f"\ntotal run time {time.perf_counter() - t_start:.0f} s")
    return 0


LEG_LABELS = [
    ("embed", "rag.embed(q) (query embedding only)"),
    ("hybrid", "rag.hybrid_search(q, 10) (includes embedding)"),
    ("hybrid_app", "rag.hybrid_search(q, 10) as bench_app (rag_reader, row-level security)"),
    ("bm25", "rag.bm25_search(q, 10) (reference)"),
    ("bm25_app", "rag.bm25_search(q, 10) as bench_app"),
    ("pgvector", "pgvector only, HNSW ef_search=100"),
    ("recipe", "ParadeDB RRF recipe (given vector)"),
    ("recipe_app", "ParadeDB RRF recipe as bench_app"),
    ("hybrid_excl", "rag.hybrid_search minus its own query embedding (per call)"),
    ("hybrid_app_excl", "the same as bench_app"),
]


def report_size(r: dict) -> None:
    legs = r["legs"]
    log()
    log(f"  Latency at {r['total']} chunks (ms, client wall time, {legs['hybrid']['n']} queries per leg)")
    print_table(["leg", "p50", "p95", "mean"],
                [[label, f"{legs[k]['p50']:.2f}", f"{legs[k]['p95']:.2f}", f"{legs[k]['mean']:.2f}"]
                 for k, label in LEG_LABELS])
    derived = legs["hybrid"]["p50"] - legs["embed"]["p50"]
    excl, excl_app = legs["hybrid_excl"]["p50"], legs["hybrid_app_excl"]["p50"]
    log(f"  hybrid excl. embedding (measured per call) p50 = {excl:.2f} ms; recipe p50 = {legs['recipe']['p50']:.2f} ms; "
        f"ratio {excl / legs['recipe']['p50']:.2f} (target <= 1.0); derived hybrid p50 - embed p50 = {derived:.2f} ms")
    log(f"  as bench_app: hybrid excl. embedding p50 = {excl_app:.2f} ms; recipe p50 = {legs['recipe_app']['p50']:.2f} ms; "
        f"ratio {excl_app / legs['recipe_app']['p50']:.2f}")
    log(f"  sanity: top-10 overlap hybrid_search(fusion => 'rrf') vs recipe {r['sanity']['overlap']:.2f} "
        f"(differences: RANK vs row_number ties, the fused score's tie-break); "
        f"pgvector rows per query {r['sanity']['pgvector_rows']:.1f}; "
        f"hybrid rows per query as bench_app {r['sanity']['app_rows']:.1f}")
    log("  Throughput of rag.hybrid_search(q, 10)")
    print_table(["clients", "queries", "seconds", "queries/s", "p50 ms", "p95 ms"],
                [[t["clients"], t["queries"], f"{t['seconds']:.1f}", f"{t['qps']:.1f}", f"{t['p50']:.1f}",
                  f"{t['p95']:.1f}"] for t in r["throughput"]])
    for leg, runs in r.get("others", {}).items():
        log(f"  Throughput of the {leg} leg (the given query vector)")
        print_table(["clients", "queries", "seconds", "queries/s", "p50 ms", "p95 ms"],
                    [[t["clients"], t["queries"], f"{t['seconds']:.1f}", f"{t['qps']:.1f}", f"{t['p50']:.1f}",
                      f"{t['p95']:.1f}"] for t in runs])


def final_table(results: list[dict]) -> None:
    if not results:
        return
    log()
    log("Summary (ms, client wall time; 'hybrid excl. embed' = per call, wall time minus the call's own query embedding)")
    rows = []
    for r in results:
        l = r["legs"]
        excl = l["hybrid_excl"]["p50"]
        tp = "  ".join(f"{t['clients']}c:{t['qps']:.0f}/s" for t in r["throughput"])
        rows.append([r["total"], f"{r['load_s']:.0f}", f"{l['embed']['p50']:.2f}",
                     f"{l['hybrid']['p50']:.2f}/{l['hybrid']['p95']:.2f}", f"{excl:.2f}",
                     f"{l['recipe']['p50']:.2f}/{l['recipe']['p95']:.2f}",
                     f"{l['pgvector']['p50']:.2f}/{l['pgvector']['p95']:.2f}",
                     f"{l['bm25']['p50']:.2f}/{l['bm25']['p95']:.2f}",
                     f"{l['hybrid_app']['p50']:.2f}/{l['bm25_app']['p50']:.2f}",
                     f"{excl / l['recipe']['p50']:.2f}",
                     f"{l['hybrid_app_excl']['p50'] / l['recipe_app']['p50']:.2f}", tp])
    print_table(["chunks", "load s", "embed p50", "hybrid p50/p95", "hybrid excl. embed", "recipe p50/p95",
                 "pgvector p50/p95", "bm25 p50/p95", "as app: hybrid/bm25 p50", "excl/recipe",
                 "as app: excl/recipe", "hybrid throughput"],
                rows, align="rrrrrrrrrrrl")


if __name__ == "__main__":
    sys.exit(main())
