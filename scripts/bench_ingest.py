"""Ingestion throughput of ragbench: rag.upload + the background worker, end to end, next to the
embedder's raw throughput measured alone in the same run.

Usage (what `make bench-ingest`, part of `make bench`, runs):

    python scripts/bench_ingest.py URL [--standin-files 1169] [--builtin-files 120] [--source DIR]

Corpus: the HTML pages of Debian's postgresql-doc-15 (/usr/share/doc/postgresql-doc-15/html), in name
order. Every page gets an HTML comment with this run's id, so content-hash deduplication never skips a
page that an earlier run (or `make run`) already ingested; the text is unchanged. The bench's documents
are deleted at the end.

Two passes, each on the cluster's own background worker (whatever rag.workers_per_database says), the
built-in model first (on a quiet server: the stand-in pass leaves merges and autovacuum work behind):

  stand-in  an OpenAI-compatible embedding server in this process (POST /v1/embeddings, HTTP/1.1
            keep-alive) that answers at once with a deterministic 384-d hashed bag-of-words vector per input, so the
            pipeline itself is measured: queue, parse, chunk, HTTP, chunk rows + HNSW + BM25 writes,
            progress and commits. The worker is pointed at it with ALTER SYSTEM + pg_reload_conf()
            (reset at the end), under the model name 'bench-standin' (its own partial HNSW index).
  built-in  the default all-MiniLM-L6-v2 in the worker.

Per pass: time from rag.upload's commit until rag.batch_status says done -> files/s and chunks/s.
"Write path alone": the same chunk rows inserted again in one statement after the pass's rows were
deleted and vacuumed away -- what the database's indexes cost without the pipeline.
"Raw": the same chunk texts (content_with_context, as stored) embedded alone by the same
provider in batches of rag.embedding_batch_size through rag.embed_many in one backend (built-in), or
posted by this script straight to the stand-in server (stand-in). Pipeline overhead = ingest time /
raw embedding time - 1.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import http.client
import json
import os
import re
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

DOCS = "/usr/share/doc/postgresql-doc-15/html"
STANDIN_MODEL = "bench-standin"
STANDIN_MODEL_ID = "openai/" + STANDIN_MODEL  # how rag.chunks.embedding_model names it
DIMS = 384
WORKER_SETTINGS = ("rag.embedding_provider", "rag.embedding_url", "rag.embedding_model")


# ---- the stand-in embedding server ---------------------------------------------------------------

WORD = re.compile(r"\w+")


def standin_vector(text: str) -> list[int]:
    """A deterministic embedding that has the geometry of a real one, cheaply: the hashing trick over
    the text's lower-cased words (each word adds +1 or -1 to one of 384 dimensions, both chosen by
    the word's hash), so texts that share words point the same way. Vectors of pure noise would
    make every HNSW insert several times dearer than real embeddings do (no neighbourhoods to
    converge on), and a stand-in that burns CPU would take it from the pipeline it measures.
    Integers are fine: cosine distance ignores scale, and the extension accepts JSON integers."""
    v = [0] * DIMS
    for w in WORD.findall(text.lower()):
        h = zlib.crc32(w.encode())
        v[h % DIMS] += 1 if h & 0x80000000 else -1
    if not any(v):
        v[0] = 1
    return v


class StandIn(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response and no Nagle: otherwise header and body go out as two small segments and
    # the client's delayed ACK stalls every request by ~40 ms (a real server does not do that).
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        out = json.dumps({
            "object": "list",
            "model": body.get("model", STANDIN_MODEL),
            "data": [{"object": "embedding", "index": i, "embedding": standin_vector(t)} for i, t in enumerate(inputs)],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def start_standin() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def raw_standin(port: int, texts: list[str], batch: int) -> float:
    """Seconds to embed `texts` by posting them to the stand-in in batches, one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        body = json.dumps({"model": STANDIN_MODEL, "input": texts[i:i + batch]})
        conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        assert resp.status == 200 and len(data["data"]) == len(texts[i:i + batch])
    conn.close()
    return time.perf_counter() - t0


# ---- one pass --------------------------------------------------------------------------------------

def pages(source: str, n: int) -> list[tuple[str, str]]:
    files = sorted(glob.glob(os.path.join(source, "*.html")))
    if not files:
        sys.exit(f"no HTML pages in {source}: run `make setup` (installs postgresql-doc-15)")
    out = []
    for path in files[:n]:
        with open(path, encoding="utf-8", errors="replace") as fh:
            out.append((os.path.basename(path), fh.read()))
    return out


def configure_worker(conn, settings: dict[str, str] | None) -> None:
    """Point the background worker at other embedding settings (None: back to postgresql.conf)."""
    for name in WORKER_SETTINGS:
        if settings and name in settings:
            conn.execute(f"ALTER SYSTEM SET {name} = '{settings[name]}'")  # fixed names and values
        else:
            conn.execute(f"ALTER SYSTEM RESET {name}")
    conn.execute("SELECT pg_reload_conf()")
    time.sleep(1.5)  # the worker re-reads the file on SIGHUP between tasks


def run_pass(conn, label: str, docs: list[tuple[str, str]], run_id: str) -> dict:
    tag = f"{run_id}-{label}"
    names = [n for n, _ in docs]
    contents = [f"<!-- ragbench bench-ingest {tag} -->\n{t}".encode() for _, t in docs]
    meta = json.dumps({"bench_ingest": tag})
    batch = conn.execute("SELECT rag.upload(%s, %s, %s::jsonb)", (names, contents, meta)).fetchone()[0]
    t0 = time.perf_counter()
    last = 0.0
    while True:
        st = conn.execute(
            "SELECT status, completed, failed, chunks_done, chunks_total FROM rag.batch_status(%s)", (batch,)
        ).fetchone()
        if st[0] in ("completed", "failed", "partially failed"):
            break
        if time.perf_counter() - last > 10:
            last = time.perf_counter()
            print(f"    {label}: {st[1] + st[2]}/{len(docs)} files, {st[3]} chunks ({last - t0:.0f} s)", flush=True)
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    chunks = conn.execute(
        "SELECT count(*) FROM rag.chunks c JOIN rag.document_files d ON d.id = c.document_id "
        "WHERE d.metadata @> %s::jsonb", (meta,)).fetchone()[0]
    texts = [r[0] for r in conn.execute(
        "SELECT c.content_with_context FROM rag.chunks c JOIN rag.document_files d ON d.id = c.document_id "
        "WHERE d.metadata @> %s::jsonb ORDER BY d.file_name, c.chunk_index", (meta,))]
    return {"label": label, "batch": batch, "files": len(docs), "completed": st[1], "failed": st[2],
            "chunks": chunks, "seconds": seconds, "texts": texts, "meta": meta}


def write_path(conn, meta: str) -> float:
    """Seconds the database alone takes to write the pass's chunk rows: copy them aside, delete the
    pass's documents, VACUUM (so the indexes are as they were before the pass), then insert the same
    rows again in one INSERT with every index maintained (btree, GIN, HNSW, BM25) and commit."""
    conn.execute("DROP TABLE IF EXISTS bench_rows")
    conn.execute(
        "CREATE TEMP TABLE bench_rows AS SELECT c.chunk_index, c.content, c.content_with_context, c.token_count, "
        "c.embedding, c.embedding_model, c.metadata FROM rag.chunks c JOIN rag.document_files d ON d.id = c.document_id "
        "WHERE d.metadata @> %s::jsonb", (meta,))
    conn.execute("DELETE FROM rag.document_files WHERE metadata @> %s::jsonb", (meta,))
    conn.execute("VACUUM rag.chunks")
    with conn.transaction():
        doc = conn.execute(
            "INSERT INTO rag.document_files (file_name, file_type, file_size_bytes, file_hash, metadata) "
            "VALUES ('bench-write-path', 'text', 0, md5(%s), %s::jsonb) RETURNING id", (meta, meta)).fetchone()[0]
        t0 = time.perf_counter()
        conn.execute(
            "INSERT INTO rag.chunks (document_id, chunk_index, content, content_with_context, token_count, embedding, "
            "embedding_model, metadata) SELECT %s, row_number() OVER () - 1, content, content_with_context, token_count, "
            "embedding, embedding_model, metadata FROM bench_rows", (doc,))
    seconds = time.perf_counter() - t0
    conn.execute("DROP TABLE bench_rows")
    return seconds


def cleanup(conn) -> None:
    """Remove what any run of this bench left (documents, batches, the stand-in model's index), then
    VACUUM so that the next pass does not pay for dead index entries of the last one."""
    conn.execute("DELETE FROM rag.document_files WHERE metadata ? 'bench_ingest'")
    conn.execute("DELETE FROM rag.job_batches b WHERE EXISTS (SELECT 1 FROM rag.job_tasks t "
                 "WHERE t.batch_id = b.id AND t.metadata ? 'bench_ingest')")
    for (index,) in conn.execute("SELECT index_name FROM rag.embedding_models WHERE model = %s",
                                 (STANDIN_MODEL_ID,)).fetchall():
        conn.execute(f'DROP INDEX IF EXISTS rag."{index}"')  # a name from our own table, quoted
    conn.execute("DELETE FROM rag.embedding_models WHERE model = %s", (STANDIN_MODEL_ID,))
    conn.execute("VACUUM rag.chunks")


def report(p: dict, raw_seconds: float, raw_what: str, write_seconds: float) -> None:
    n = p["chunks"]
    print(f"  {p['label']}: {p['files']} files ({p['completed']} completed, {p['failed']} failed), {n} chunks "
          f"in {p['seconds']:.1f} s -> {p['files'] / p['seconds']:.1f} files/s, {n / p['seconds']:.0f} chunks/s")
    print(f"    raw embedder alone ({raw_what}): {n} chunks in {raw_seconds:.1f} s -> {n / raw_seconds:.0f} chunks/s")
    print(f"    write path alone (the same rows, one INSERT, all indexes): {write_seconds:.1f} s -> "
          f"{n / write_seconds:.0f} chunks/s")
    print(f"    pipeline overhead on top of embedding: {100 * (p['seconds'] / raw_seconds - 1):+.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--source", default=DOCS)
    ap.add_argument("--standin-files", type=int, default=1169)
    ap.add_argument("--builtin-files", type=int, default=120)
    args = ap.parse_args()
    run_id = uuid.uuid4().hex[:12]
    server = start_standin()
    port = server.server_address[1]
    with psycopg.connect(args.url, autocommit=True) as conn:
        workers = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ragbench worker'").fetchone()[0]
        if workers == 0:
            sys.exit("no ragbench background worker is running: start the cluster with `make start`")
        batch_size = int(conn.execute("SHOW rag.embedding_batch_size").fetchone()[0])
        cpus = os.cpu_count()
        print(f"ingest benchmark: postgresql-doc-15 HTML pages from {args.source}; {workers} background "
              f"worker(s), rag.embedding_batch_size = {batch_size}, {cpus} CPUs; run {run_id}")
        cleanup(conn)
        try:
            if args.builtin_files > 0:
                configure_worker(conn, None)
                docs = pages(args.source, args.builtin_files)
                p = run_pass(conn, "built-in model", docs, run_id)
                conn.execute("SELECT rag.embed('warm-up: load the model in this backend')").fetchone()
                t0 = time.perf_counter()
                conn.execute("SELECT count(*) FROM rag.embed_many(%s, 'document')", (p["texts"],)).fetchone()
                raw = time.perf_counter() - t0
                report(p, raw, "rag.embed_many on the same texts in one backend", write_path(conn, p["meta"]))
            if args.standin_files > 0:
                docs = pages(args.source, args.standin_files)
                configure_worker(conn, {"rag.embedding_provider": "openai",
                                        "rag.embedding_url": f"http://127.0.0.1:{port}",
                                        "rag.embedding_model": STANDIN_MODEL})
                p = run_pass(conn, "stand-in server", docs, run_id)
                raw = raw_standin(port, p["texts"], batch_size)
                report(p, raw, "this script posting the same texts to the stand-in, same batch size",
                       write_path(conn, p["meta"]))
        finally:
            configure_worker(conn, None)
            cleanup(conn)
            server.shutdown()


if __name__ == "__main__":
    main()
