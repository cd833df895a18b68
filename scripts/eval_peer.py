"""A peer side by side: LlamaIndex's own PGVectorStore (hybrid_search=True) against ragbench's hybrid
retriever, both through LlamaIndex, on the same chunks, the same model vectors and the same queries of a
BEIR dataset. Reports nDCG@10, Recall@100, MRR@10 and p50/p95 latency of each, as Markdown on stdout.

Usage (what `make eval-peer` runs):

    python scripts/eval_peer.py URL DATASET [--split test] [--limit-queries N] [--k 300]
                                [--sparse-top-k K] [--rebuild] [--no-ingest] [--exact] [--no-rrf]

How it works
------------
1. The dataset is read with scripts/eval.py's loader, and ingested with its ingestion function when
   documents are missing (one rag.ingest_document per corpus line; --no-ingest only reads what is stored).
2. The peer is LlamaIndex's `PGVectorStore` (llama-index-vector-stores-postgres) with hybrid_search=True,
   embed_dim=384, text_search_config 'english', in the same database, in its own table
   public.data_peer_<dataset>. Its nodes are ragbench's own chunks of the dataset: node id = chunk id,
   text = `content_with_context` (the text both of ragbench's legs search: BM25 indexes it and ingestion
   embeds it), embedding = the chunk's stored vector, metadata = {"beir_id"}. That the stored vector is
   the model's vector of that text is checked on a sample with rag.embed_many(texts, 'document') (the kind
   ingestion uses). Nodes go in through PGVectorStore.add(); the table is reused when it holds exactly
   the chunks (same ids), otherwise dropped and built again. By default the peer gets an HNSW index with
   ragbench's parameters (m 16, ef_construction 64, cosine; ef_search = max(100, K) as rag.hybrid_search
   uses); --exact leaves it out (exact scans).
3. Per query of the split: the query vector from rag.embed(q) (the same model; computed once per query,
   timed on its own and counted in neither system's own latency), then, in alternating order,
   - peer: VectorStoreIndex.from_vector_store(store).as_retriever(vector_store_query_mode="hybrid",
     similarity_top_k=K, sparse_top_k=K).retrieve(QueryBundle(q, embedding=vector));
   - ragbench: ragbench.llamaindex.RagbenchRetriever(Client(URL), mode="hybrid", k=K).retrieve(q), which
     calls rag.hybrid_search(q, K), which embeds q inside the database: its latency includes embedding.
   The peer is therefore also reported "+ embedding": its time plus that query's rag.embed(q) time.
   Extra row (skip with --no-rrf): the same PGVectorStore's two legs (dense, sparse) fused by LlamaIndex's
   QueryFusionRetriever(mode="reciprocal_rerank", num_queries=1), how a LlamaIndex user would add RRF.
4. Chunk rankings become document rankings as in eval.py (max-pooling, the query's own id dropped) and
   are scored with eval.py's metric functions. Latency: client-side wall time of each retrieve() call, one
   connection per system, sequential, after a warm-up over the first --warmup queries (not recorded).

Nothing is fetched from the network: LlamaIndex gets no LLM (Settings.llm = None), an embedding model that
refuses to be called, and a whitespace tokenizer; and every socket connection other than to the
database's host or loopback is refused (a download attempt would fail loudly, not silently).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import ipaddress
import os
import re
import socket
import statistics
import sys
import time
from typing import Any, Callable, List, Sequence
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_eval():
    """scripts/eval.py as a module (its loader, ingestion and metric functions)."""
    spec = importlib.util.spec_from_file_location("ragbench_eval", os.path.join(HERE, "eval.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


ev = _load_eval()


def log(msg: str) -> None:
    """Progress goes to stderr; stdout is the Markdown report only."""
    print(msg, file=sys.stderr, flush=True)


def fail(msg: str):
    print(f"eval_peer.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


# --------------------------------------------------------------------------------------------------
# No network but the database
# --------------------------------------------------------------------------------------------------


def allow_only_database(db_host: str | None) -> None:
    """Refuse Python socket connections to anything but unix sockets, loopback and the database host
    (libpq connects in C and is not affected; this catches model, tokenizer or corpus downloads)."""
    allowed: set[str] = set()
    if db_host:
        try:
            allowed = {ai[4][0] for ai in socket.getaddrinfo(db_host, None)}
        except OSError:
            pass
    original = socket.socket.connect
    original_ex = socket.socket.connect_ex

    def check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            host = address[0]
            try:
                ok = ipaddress.ip_address(host).is_loopback or host in allowed
            except ValueError:
                ok = host in ("localhost", db_host)
            if not ok:
                raise ConnectionRefusedError(f"eval_peer.py: network access to {address!r} refused (offline run)")

    def connect(sock, address):
        check(sock, address)
        return original(sock, address)

    def connect_ex(sock, address):
        check(sock, address)
        return original_ex(sock, address)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolation percentile (p in 0..100) of the values; 0.0 for none."""
    if not values:
        return 0.0
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * p / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def sqlalchemy_url(url: str, driver: str) -> str:
    """postgresql://... -> postgresql+<driver>://... (the form PGVectorStore's engines take)."""
    m = re.match(r"^postgres(?:ql)?(?:\+\w+)?://", url)
    if not m:
        fail("URL must be a postgresql:// URL (PGVectorStore's SQLAlchemy engines need one)")
    return f"postgresql+{driver}://" + url[m.end():]


def table_suffix(dataset: str) -> str:
    s = re.sub(r"[^a-z0-9_]+", "_", dataset.lower()).strip("_")
    return s or "dataset"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# --------------------------------------------------------------------------------------------------
# LlamaIndex, offline
# --------------------------------------------------------------------------------------------------


def llama_index_offline():
    """Configure LlamaIndex's global Settings so that nothing is resolved or downloaded; returns the
    embedding model the peer's index is given (it raises if called: vectors come from rag.embed)."""
    from llama_index.core import Settings
    from llama_index.core.base.embeddings.base import BaseEmbedding

    class NoEmbedding(BaseEmbedding):
        """Refuses to embed: every vector of this evaluation comes from the database's model."""

        def _refuse(self, *_: Any, **__: Any):
            raise RuntimeError("eval_peer.py: LlamaIndex tried to embed; vectors must come from rag.embed")

        _get_query_embedding = _refuse
        _get_text_embedding = _refuse

        async def _aget_query_embedding(self, query: str):
            self._refuse()

    embed = NoEmbedding(model_name="none (vectors from rag.embed)", embed_batch_size=1)
    with contextlib.redirect_stdout(sys.stderr):  # "LLM is explicitly disabled" is printed
        Settings.llm = None
        Settings.embed_model = embed
        Settings.tokenizer = str.split
    return embed


# --------------------------------------------------------------------------------------------------
# The peer's table: ragbench's chunks as LlamaIndex nodes in a PGVectorStore
# --------------------------------------------------------------------------------------------------


def load_chunks(conn, dataset: str, model: str) -> list[tuple]:
    """(chunk id, document id, beir id, content_with_context, embedding) of the dataset's chunks that
    have a vector of the current model, in document and chunk order."""
    return conn.execute(
        "SELECT c.id::text, c.document_id::text, d.metadata->>'beir_id', c.content_with_context, "
        "       c.embedding::real[] "
        "FROM rag.chunks c JOIN rag.document_files d ON d.id = c.document_id "
        "WHERE d.metadata->>'dataset' = %s AND c.embedding_model = %s "
        "ORDER BY d.metadata->>'beir_id', c.chunk_index", (dataset, model)
    ).fetchall()


def verify_vectors(conn, chunks: list[tuple], sample: int) -> dict:
    """Embed a spread sample of the chunks' texts again (kind 'document', as ingestion does) and compare
    with the stored vectors: the nodes get the model's vectors, not something else."""
    if not chunks or sample <= 0:
        return {"n": 0, "max_abs": 0.0, "min_cos": 1.0}
    step = max(1, len(chunks) // sample)
    picked = chunks[::step][:sample]
    rows = conn.execute(
        "SELECT e.ordinality, e.embedding::real[] FROM rag.embed_many(%s::text[], 'document') e ORDER BY 1",
        ([c[3] for c in picked],),
    ).fetchall()
    max_abs, min_cos = 0.0, 1.0
    for (_, fresh), c in zip(rows, picked):
        stored = c[4]
        max_abs = max(max_abs, max(abs(a - b) for a, b in zip(fresh, stored)))
        dot = sum(a * b for a, b in zip(fresh, stored))
        na = sum(a * a for a in fresh) ** 0.5
        nb = sum(b * b for b in stored) ** 0.5
        min_cos = min(min_cos, dot / (na * nb) if na and nb else 0.0)
    return {"n": len(picked), "max_abs": max_abs, "min_cos": min_cos}


def peer_store(url: str, table: str, k: int, exact: bool):
    from llama_index.vector_stores.postgres import PGVectorStore

    hnsw = None if exact else {
        "hnsw_m": 16, "hnsw_ef_construction": 64, "hnsw_ef_search": max(100, k),
        "hnsw_dist_method": "vector_cosine_ops",
    }
    # The driver pair PGVectorStore.from_params uses: psycopg2 (sync, used here) and asyncpg (async).
    return PGVectorStore(
        connection_string=sqlalchemy_url(url, "psycopg2"),
        async_connection_string=sqlalchemy_url(url, "asyncpg"),
        table_name=table,
        hybrid_search=True,
        text_search_config="english",
        embed_dim=384,
        hnsw_kwargs=hnsw,
        initialization_fail_on_error=True,
    )


def build_peer(conn, url: str, table: str, chunks: list[tuple], k: int, exact: bool, rebuild: bool,
               batch: int) -> tuple[Any, dict]:
    """The PGVectorStore holding exactly `chunks` (reused when it already does). Returns it and facts."""
    from psycopg import sql
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    pg_table = f"data_{table}"  # PGVectorStore's own naming
    ident = sql.Identifier("public", pg_table)
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{pg_table}",)).fetchone()[0]
    want = {c[0] for c in chunks}
    reuse = False
    if exists and not rebuild:
        have = {r[0] for r in conn.execute(sql.SQL("SELECT node_id FROM {}").format(ident))}
        (rows,) = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()
        has_hnsw = conn.execute(
            "SELECT count(*) > 0 FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s "
            "AND indexdef ILIKE '%% USING hnsw %%'", (pg_table,)).fetchone()[0]
        reuse = rows == len(want) and have == want and has_hnsw == (not exact)
        if not reuse:
            log(f"peer: {pg_table} holds {rows} rows ({len(have & want)} of the {len(want)} chunks, "
                f"hnsw={has_hnsw}): building it again")
    if exists and not reuse:
        conn.execute(sql.SQL("DROP TABLE {}").format(ident))

    store = peer_store(url, table, k, exact)
    t0 = time.perf_counter()
    if not reuse:
        log(f"peer: adding {len(chunks)} nodes to {pg_table} through PGVectorStore.add() ...")
        for i in range(0, len(chunks), batch):
            nodes = [
                TextNode(id_=cid, text=text, embedding=list(vec), metadata={"beir_id": beir_id},
                         relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc_id)})
                for cid, doc_id, beir_id, text, vec in chunks[i:i + batch]
            ]
            store.add(nodes)
            done = min(i + batch, len(chunks))
            if done % (batch * 10) == 0 or done == len(chunks):
                log(f"  {done}/{len(chunks)} nodes ({time.perf_counter() - t0:.0f} s)")
    else:
        log(f"peer: reusing {pg_table} ({len(chunks)} rows, the same chunk ids)")
    build_s = time.perf_counter() - t0
    (rows,) = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()
    if rows != len(chunks):
        fail(f"the peer's table {pg_table} has {rows} rows, expected {len(chunks)}")
    indexes = [r[0] for r in conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s ORDER BY indexname",
        (pg_table,))]
    return store, {"table": f"public.{pg_table}", "rows": rows, "reused": reuse, "build_s": build_s,
                   "indexes": indexes}


def dense_plan(conn, table: str, k: int, exact: bool, probe: list[float]) -> str:
    """The plan of the peer's dense statement (the shape PGVectorStore sends: the row's columns and the
    distance, ORDER BY distance LIMIT k), under the settings it makes."""
    from psycopg import sql

    with conn.transaction():
        if not exact:
            conn.execute(f"SET LOCAL hnsw.ef_search = {max(100, k)}")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        plan = conn.execute(
            sql.SQL("EXPLAIN SELECT id, node_id, text, metadata_, embedding <=> %s::real[]::vector AS distance "
                    "FROM {} ORDER BY distance ASC LIMIT %s").format(
                sql.Identifier("public", f"data_{table}")), (probe, k)).fetchall()
    lines = [r[0].strip() for r in plan]
    scan = next((ln for ln in lines if "Scan" in ln), lines[0] if lines else "?")
    return re.sub(r"\s+\(cost=.*$", "", scan.replace("->", "").strip())


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


class System:
    def __init__(self, name: str, label: str, retrieve: Callable[[str, str, list], list], note: str):
        self.name = name    # the table's row
        self.label = label  # short, for the "+ embedding" row and progress lines
        self.retrieve = retrieve  # (query id, text, query vector) -> [NodeWithScore]
        self.note = note
        self.times: list[float] = []
        self.per_query: list[dict] = []
        self.returned: list[int] = []
        self.few_docs = 0  # queries whose document ranking has fewer than 100 documents


def chunk_docs(nodes: list, dataset: str) -> list[str | None]:
    """The BEIR id of each retrieved chunk (None for chunks of another dataset), in rank order."""
    out = []
    for n in nodes:
        m = n.node.metadata or {}
        ds = m.get("dataset", dataset)  # the peer's nodes carry only beir_id: they are all of this dataset
        out.append(str(m["beir_id"]) if "beir_id" in m and ds == dataset else None)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="postgresql:// URL of a database with the ragbench extension")
    p.add_argument("dataset", help="BEIR dataset directory (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--split", default="test", help="qrels split (default test)")
    p.add_argument("--limit-queries", type=int, default=None, metavar="N", help="the first N queries only")
    p.add_argument("--k", type=int, default=300,
                   help="chunks per query: ragbench's k and the peer's similarity_top_k (default 300, as "
                        "eval.py's --depth, so that ~100 distinct documents are ranked)")
    p.add_argument("--sparse-top-k", type=int, default=None, help="the peer's sparse_top_k (default: --k)")
    p.add_argument("--warmup", type=int, default=10, help="queries run once before timing (default 10)")
    p.add_argument("--verify-sample", type=int, default=32,
                   help="chunks whose stored vector is checked against rag.embed_many (default 32)")
    p.add_argument("--batch", type=int, default=500, help="nodes per PGVectorStore.add() call (default 500)")
    p.add_argument("--rebuild", action="store_true", help="drop and rebuild the peer's table")
    p.add_argument("--exact", action="store_true", help="no HNSW index for the peer (exact dense scans)")
    p.add_argument("--no-rrf", action="store_true", help="skip the extra PGVectorStore + QueryFusionRetriever row")
    p.add_argument("--no-ingest", action="store_true", help="do not ingest; evaluate what is stored")
    args = p.parse_args(argv)
    if not 10 <= args.k <= 1000:
        p.error("--k must be between 10 and 1000")
    if args.sparse_top_k is None:
        args.sparse_top_k = args.k
    if args.sparse_top_k < 1:
        p.error("--sparse-top-k must be >= 1")
    if args.limit_queries is not None and args.limit_queries < 1:
        p.error("--limit-queries must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    allow_only_database(urlsplit(args.url).hostname)
    try:
        import psycopg
        from llama_index.core import VectorStoreIndex
        from llama_index.core.retrievers import QueryFusionRetriever
        from llama_index.core.schema import QueryBundle
        from llama_index.core.vector_stores.types import VectorStoreQueryMode
        import llama_index.vector_stores.postgres  # noqa: F401
        from ragbench import Client
        from ragbench.llamaindex import RagbenchRetriever
    except ImportError as e:
        fail(f"{e}: run with .stack/venv/bin/python after "
             "`.stack/venv/bin/pip install --require-hashes --no-deps -r clients/python/requirements-eval.txt` "
             "(make eval-peer does it)")
    embed_model = llama_index_offline()

    # Dataset, as eval.py reads it.
    dataset_dir, name, corpus, qrels, queries = ev.load_dataset(args.dataset, args.split, args.limit_queries)

    try:
        conn = psycopg.connect(args.url, autocommit=True)
    except psycopg.Error as e:
        fail(f"cannot connect to {args.url}: {str(e).strip()}")

    with conn:
        if not args.no_ingest:
            with contextlib.redirect_stdout(sys.stderr):
                ev.ingest(conn, corpus, name)
        (n_docs,) = conn.execute(
            "SELECT count(*) FROM rag.document_files WHERE metadata->>'dataset' = %s", (name,)).fetchone()
        if n_docs == 0:
            fail(f"no document of dataset '{name}' is stored (run without --no-ingest)")
        if n_docs < len(corpus):
            log(f"warning: {n_docs} of {len(corpus)} corpus documents of '{name}' are stored")
        model, dims = conn.execute(
            "SELECT model, dimensions FROM rag.embedding_models ORDER BY created_at DESC LIMIT 1").fetchone()
        if dims != 384:
            fail(f"the stored model {model} has {dims} dimensions; this comparison is set up for 384")
        (other_chunks,) = conn.execute(
            "SELECT count(*) FROM rag.chunks c JOIN rag.document_files d ON d.id = c.document_id "
            "WHERE d.metadata->>'dataset' IS DISTINCT FROM %s", (name,)).fetchone()

        # The peer's nodes: ragbench's chunks with their stored vectors.
        t0 = time.perf_counter()
        chunks = load_chunks(conn, name, model)
        if not chunks:
            fail(f"no chunk of '{name}' has a vector of {model}")
        log(f"chunks: {len(chunks)} of {n_docs} documents read in {time.perf_counter() - t0:.1f} s")
        check = verify_vectors(conn, chunks, args.verify_sample)
        log(f"vectors: {check['n']} stored vectors against rag.embed_many(content_with_context, 'document'): "
            f"max |diff| {check['max_abs']:.2e}, min cosine {check['min_cos']:.7f}")
        if check["n"] and check["min_cos"] < 0.9999:
            fail("stored chunk vectors differ from the model's vectors of content_with_context")
        table = f"peer_{table_suffix(name)}"
        store, peer = build_peer(conn, args.url, table, chunks, args.k, args.exact, args.rebuild, args.batch)
        del chunks
        probe = conn.execute("SELECT rag.embed(%s)::real[]", (queries[0][1],)).fetchone()[0]
        plan = dense_plan(conn, table, args.k, args.exact, probe)
        log(f"peer: {peer['table']} ready ({peer['build_s']:.1f} s); dense leg plan: {plan}")

        # The retrievers, both LlamaIndex BaseRetrievers.
        index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
        peer_hybrid = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=args.k,
                                         sparse_top_k=args.sparse_top_k)
        rb_client = Client(args.url)
        rb_hybrid = RagbenchRetriever(rb_client, mode="hybrid", k=args.k)

        def run_peer(qid, text, vec):
            return peer_hybrid.retrieve(QueryBundle(query_str=text, embedding=vec))

        def run_rb(qid, text, vec):
            return rb_hybrid.retrieve(text)

        systems = [
            System("ragbench `RagbenchRetriever(mode=\"hybrid\")`", "ragbench", run_rb,
                   "query text in; rag.hybrid_search embeds it inside the database (included)"),
            System("LlamaIndex `PGVectorStore(hybrid_search=True)`", "PGVectorStore hybrid", run_peer,
                   "query vector given (rag.embed time not included)"),
        ]
        if not args.no_rrf:
            with contextlib.redirect_stdout(sys.stderr):
                fusion = QueryFusionRetriever(
                    [index.as_retriever(vector_store_query_mode="default", similarity_top_k=args.k),
                     index.as_retriever(vector_store_query_mode="sparse", sparse_top_k=args.sparse_top_k)],
                    mode="reciprocal_rerank", similarity_top_k=args.k, num_queries=1, use_async=False)

            def run_fusion(qid, text, vec):
                return fusion.retrieve(QueryBundle(query_str=text, embedding=vec))

            systems.append(System("extra: same `PGVectorStore`, dense + sparse legs fused by "
                                  "`QueryFusionRetriever(mode=\"reciprocal_rerank\")`",
                                  "PGVectorStore legs + QueryFusionRetriever RRF", run_fusion,
                                  "query vector given (rag.embed time not included)"))

        def embed(text):
            t = time.perf_counter()
            vec = conn.execute("SELECT rag.embed(%s)::real[]", (text,)).fetchone()[0]
            return vec, time.perf_counter() - t

        # Warm-up: the first queries once through everything, not recorded.
        for qid, text in queries[: args.warmup]:
            vec, _ = embed(text)
            for s in systems:
                s.retrieve(qid, text, vec)

        # Does PGVectorStore's hybrid put its dense leg first? Compare with its dense-only query.
        concat_checked = concat_same = 0
        for qid, text in queries[: min(20, len(queries))]:
            vec, _ = embed(text)
            hyb = [n.node.node_id for n in run_peer(qid, text, vec)]
            dense = [n.node.node_id for n in index.as_retriever(
                vector_store_query_mode="default", similarity_top_k=args.k).retrieve(
                QueryBundle(query_str=text, embedding=vec))]
            concat_checked += 1
            concat_same += hyb[: len(dense)] == dense

        log(f"running {len(queries)} queries ({', '.join(s.label for s in systems)}) ...")
        embed_times: list[float] = []
        t_queries = time.perf_counter()
        for n, (qid, text) in enumerate(queries, 1):
            vec, t_embed = embed(text)
            embed_times.append(t_embed)
            order = systems if n % 2 else list(reversed(systems))
            for s in order:
                t = time.perf_counter()
                nodes = s.retrieve(qid, text, vec)
                s.times.append(time.perf_counter() - t)
                ranking = ev.document_ranking(chunk_docs(nodes, name), qid)
                s.few_docs += len(ranking) < 100
                s.returned.append(len(nodes))
                s.per_query.append((n, ev.evaluate_query(ranking, qrels[qid])))
            if n % 50 == 0:
                log(f"  {n}/{len(queries)} queries ({time.perf_counter() - t_queries:.0f} s)")
        query_s = time.perf_counter() - t_queries
        rb_client.close()
        # The peer keeps SQLAlchemy engines (psycopg2 and asyncpg) open: dispose of them.
        store._engine.dispose()
        total_s = time.perf_counter() - started

    # ---------------------------------------------------------------------------------------------
    # Markdown report on stdout
    # ---------------------------------------------------------------------------------------------
    rb, pv = systems[0], systems[1]
    sparse_desc = ("`to_tsvector('english', text)` (stored generated column, GIN index), query "
                   "`to_tsquery('english', words joined by |)` ranked by `ts_rank`")
    dense_desc = ("HNSW m 16, ef_construction 64, cosine, `hnsw.ef_search` " f"{max(100, args.k)}"
                  if not args.exact else "no index (exact)")
    print(f"### Peer comparison on {name} ({args.split} split): ragbench's hybrid retriever vs LlamaIndex's "
          f"`PGVectorStore` hybrid")
    print()
    print("What was measured")
    print()
    print(f"- **Data**: BEIR `{name}`, {n_docs} documents stored of {len(corpus)} corpus lines, "
          f"{peer['rows']} chunks; {len(queries)} queries of qrels/{args.split}.tsv"
          + (f" (first {args.limit_queries})" if args.limit_queries else "")
          + (f"; {other_chunks} chunks of other data are also in rag.chunks (searched by ragbench, dropped "
             "from its rankings)" if other_chunks else "") + ".")
    print(f"- **Same text and vectors**: the peer's nodes are ragbench's chunks (node id = chunk id), text = "
          f"`content_with_context` (title heading + chunk, what both of ragbench's legs search), embedding = "
          f"the chunk's stored `{model}` vector ({check['n']} checked against `rag.embed_many(..., 'document')`: "
          f"min cosine {check['min_cos']:.7f}), inserted with `PGVectorStore.add()` into `{peer['table']}`"
          + (" (reused)" if peer["reused"] else f" in {peer['build_s']:.0f} s") + ".")
    print(f"- **Same queries and query vectors**: `rag.embed(q)` once per query, handed to the peer as "
          f"`QueryBundle.embedding`; ragbench's `rag.hybrid_search` embeds the same text with the same model "
          f"inside the database.")
    print(f"- **ragbench**: `RagbenchRetriever(Client(url), mode=\"hybrid\", k={args.k})` -> "
          f"`rag.hybrid_search(q, {args.k})`: BM25 (pg_search, English stemmer + stopwords) and HNSW legs, "
          f"{max(100, args.k)} candidates each, weighted RRF (k 60, weights 1/1).")
    print(f"- **Peer**: llama-index-vector-stores-postgres `PGVectorStore(hybrid_search=True, embed_dim=384, "
          f"text_search_config=\"english\")` through `VectorStoreIndex.from_vector_store(...).as_retriever("
          f"vector_store_query_mode=\"hybrid\", similarity_top_k={args.k}, sparse_top_k={args.sparse_top_k})`. "
          f"Dense leg: {dense_desc} (plan: `{plan}`); sparse leg: {sparse_desc}. Its hybrid result is the dense "
          f"top-{args.k} followed by the sparse hits not already in it (no score fusion): its top-10 equalled its "
          f"dense-only top-10 in {concat_same}/{concat_checked} queries checked.")
    print(f"- **Scoring**: chunk ranking -> document ranking by best chunk (max-pooling), the query's own id "
          f"dropped; nDCG@10, Recall@100, MRR@10 with scripts/eval.py's trec_eval definitions, mean over queries.")
    print(f"- **Latency**: client-side wall time of each `retrieve()` call, sequential, one connection per "
          f"system, the systems alternating per query, after a warm-up of {min(args.warmup, len(queries))} "
          f"queries. \"+ embedding\" adds that query's `rag.embed(q)` call (p50 {ms(statistics.median(embed_times))} ms) "
          f"so that both start from the query text.")
    print()
    headers = ["system", "nDCG@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms", "chunks/query", "query input"]
    rows = []
    for s in systems:
        m = ev.mean_metrics([q for _, q in s.per_query])
        rows.append([s.name, f"{m['ndcg@10']:.4f}", f"{m['recall@100']:.4f}", f"{m['mrr@10']:.4f}",
                     ms(statistics.median(s.times)), ms(percentile(s.times, 95)),
                     f"{statistics.mean(s.returned):.0f}", s.note])
        if s is not rb:
            with_embed = [a + b for a, b in zip(s.times, embed_times)]
            rows.append([f"{s.label} + embedding", "same", "same", "same", ms(statistics.median(with_embed)),
                         ms(percentile(with_embed, 95)), "", "query text in; + `rag.embed(q)` time"])
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join([":---"] + ["---:"] * 6 + [":---"]) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print(f"K = {args.k} (ragbench k, peer similarity_top_k), sparse_top_k = {args.sparse_top_k}; "
          f"{len(queries)} queries; queries with fewer than 100 ranked documents: ragbench {rb.few_docs}, "
          f"peer {pv.few_docs}. Run time {total_s:.0f} s (queries {query_s:.0f} s"
          + ("" if peer["reused"] else f", peer build {peer['build_s']:.0f} s") + ")."
          + (f" With K < 100 chunks, Recall@100 is bounded by K: compare it only at K >= 300." if args.k < 100 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
