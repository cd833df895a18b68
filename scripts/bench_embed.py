"""Where and how the built-in model runs, measured side by side in one run:
rag.embedding_mode = 'backend' (a copy per backend) or 'service' (one copy per server,
src/embed/service.rs), and rag.builtin_runtime = 'candle' (float32) or 'onnx' (int8, ONNX Runtime).
backend/candle is the original path.

Usage (what `make bench-embed` runs, included in `make bench`):

    python scripts/bench_embed.py URL [--dataset ../shared/datasets/scifact] [--queries 100]
                                  [--clients 16] [--duration 15]

For each configuration, on the same server and data:
  * new connection: private memory of a fresh backend (Private_Clean + Private_Dirty from
    /proc/PID/smaps_rollup) before and after its first rag.hybrid_search, and the wall time of that
    first search against the second one on the same connection;
  * query embedding: p50/p95 of `SELECT rag.embed(q)` over --queries SciFact questions, and over as many
    200-word questions (the first 200 words of SciFact abstracts, ~256 tokens), one connection;
  * throughput: rag.hybrid_search(q, 10) calls per second with --clients connections for --duration s.
The connections are the superuser's (both are superuser settings), opened with the settings in their startup
options. The service reads rag.builtin_runtime when it starts: for each runtime the script sets it with
ALTER SYSTEM, reloads, and terminates the service, which the postmaster starts again; at the end the setting
is RESET. Client and server must be on one host (the memory is read from /proc).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg

SEARCH = "SELECT count(*) FROM rag.hybrid_search(%s, 10)"


def log(msg=""):
    print(msg, flush=True)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")


def private_mb(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty")) / 1024


CONFIGS = [("backend", "candle"), ("backend", "onnx"), ("service", "candle"), ("service", "onnx")]


def connect(url, config):
    mode, runtime = config
    return psycopg.connect(url, autocommit=True,
                           options=f"-c rag.embedding_mode={mode} -c rag.builtin_runtime={runtime}")


def restart_service(url, runtime):
    """Start the embedding service again with rag.builtin_runtime = runtime (None: RESET)."""
    with psycopg.connect(url, autocommit=True) as c:
        if runtime is None:
            c.execute("ALTER SYSTEM RESET rag.builtin_runtime")
        else:
            c.execute(f"ALTER SYSTEM SET rag.builtin_runtime = '{runtime}'")
        c.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE backend_type = 'ragbench embedding service'")
    deadline = time.time() + 60
    while time.time() < deadline:  # a caller waits for the restarting service within its timeout
        try:
            with connect(url, ("service", runtime or "auto")) as c:
                c.execute("SELECT rag.embed('ready')").fetchone()
                return
        except psycopg.Error:
            time.sleep(1)
    raise SystemExit("the embedding service did not come back within 60 s")


def load(dataset: Path, n: int):
    queries = [json.loads(line)["text"] for line in (dataset / "queries.jsonl").open()][:n]
    long = []
    for line in (dataset / "corpus.jsonl").open():
        words = json.loads(line)["text"].split()
        if len(words) >= 200:
            long.append(" ".join(words[:200]))
        if len(long) >= n:
            break
    return queries, long


def new_connection(url, mode, query):
    with connect(url, mode) as c:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        before = private_mb(pid)
        t0 = time.perf_counter()
        c.execute(SEARCH, (query,)).fetchone()
        first = time.perf_counter() - t0
        after = private_mb(pid)
        t0 = time.perf_counter()
        c.execute(SEARCH, (query + " again",)).fetchone()
        second = time.perf_counter() - t0
    return after - before, first * 1000, second * 1000


def embed_times(url, mode, texts):
    with connect(url, mode) as c:
        c.execute("SELECT rag.embed('warm up')").fetchone()
        out = []
        for t in texts:
            t0 = time.perf_counter()
            c.execute("SELECT rag.embed(%s)", (t,)).fetchone()
            out.append((time.perf_counter() - t0) * 1000)
    return out


def throughput(url, mode, queries, clients, duration):
    done, errors = [0] * clients, []
    conns = [connect(url, mode) for _ in range(clients)]
    for c in conns:  # warm: in backend mode each loads its model here, not in the timed window
        c.execute(SEARCH, ("warm up",)).fetchone()
    stop = time.perf_counter() + duration

    def run(i):
        try:
            k = i
            while time.perf_counter() < stop:
                conns[i].execute(SEARCH, (queries[k % len(queries)],)).fetchone()
                done[i] += 1
                k += clients
        except Exception as e:  # reported, not hidden
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    if errors:
        raise SystemExit(f"throughput run failed: {errors[0]}")
    return sum(done) / duration


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--dataset", default="../shared/datasets/scifact")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=15)
    a = ap.parse_args(argv)
    queries, long = load(Path(a.dataset), a.queries)
    with psycopg.connect(a.url, autocommit=True) as c:
        chunks = c.execute("SELECT count(*) FROM rag.chunks").fetchone()[0]
        if chunks == 0:
            raise SystemExit("rag.chunks is empty: run `make run` (demo corpus) first")
    log(f"# rag.embedding_mode backend|service × rag.builtin_runtime candle|onnx — {chunks} chunks in rag.chunks, "
        f"{len(queries)} SciFact questions, {len(long)} 200-word questions, {a.clients} clients × {a.duration:.0f} s")
    rows = {}
    for mode in CONFIGS:
        if mode[0] == "service":
            restart_service(a.url, mode[1])
        mem, first, second = zip(*(new_connection(a.url, mode, q) for q in queries[:3]))
        short = embed_times(a.url, mode, queries)
        longt = embed_times(a.url, mode, long)
        qps = throughput(a.url, mode, queries, a.clients, a.duration)
        rows[mode] = dict(mem=statistics.median(mem), first=statistics.median(first), second=statistics.median(second),
                          short50=pct(short, 50), short95=pct(short, 95), long50=pct(longt, 50),
                          long95=pct(longt, 95), qps=qps)
        log(f"  {mode[0]}/{mode[1]}: done")
    restart_service(a.url, None)
    log()
    log("| measure | " + " | ".join(f"{m}/{r}" for m, r in CONFIGS) + " |")
    log("|---" * (len(CONFIGS) + 1) + "|")
    fmt = [("private memory a new backend gains with its first search (MB, median of 3)", "mem", "{:.1f}"),
           ("first search on a new connection (ms, median of 3)", "first", "{:.0f}"),
           ("second search on that connection (ms)", "second", "{:.0f}"),
           ("query embedding p50 / p95, SciFact questions (ms)", ("short50", "short95"), "{:.1f} / {:.1f}"),
           ("query embedding p50 / p95, 200-word questions (ms)", ("long50", "long95"), "{:.1f} / {:.1f}"),
           (f"rag.hybrid_search throughput, {a.clients} clients (calls/s)", "qps", "{:.1f}")]
    for label, key, f in fmt:
        cells = []
        for mode in CONFIGS:
            r = rows[mode]
            cells.append(f.format(*(r[k] for k in key)) if isinstance(key, tuple) else f.format(r[key]))
        log(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
