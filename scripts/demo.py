"""`make run`: load a demo corpus into the local cluster and print real search results.

Corpus: the SQL command reference of Debian's postgresql-doc-15 (sql-*.html, 189 pages), ingested with
rag.ingest_document (parse, chunk, embed with the built-in model, store). Loading is skipped for pages
already present (content hash dedup makes a second run cheap anyway).
"""
import glob
import os
import sys
import time

import psycopg

DOCS = "/usr/share/doc/postgresql-doc-15/html"
QUESTIONS = [
    "how do I create an index concurrently without locking writes",
    "remove old rows and reclaim disk space",
    "give a user permission to read a table",
]


def main(url: str) -> None:
    files = sorted(glob.glob(os.path.join(DOCS, "sql-*.html")))
    if not files:
        sys.exit(f"no demo corpus at {DOCS}: run `make setup` (installs postgresql-doc-15)")
    with psycopg.connect(url, autocommit=True) as conn:
        have = {r[0] for r in conn.execute("SELECT file_name FROM rag.documents")}
        todo = [f for f in files if os.path.basename(f) not in have]
        t0 = time.time()
        for i, path in enumerate(todo, 1):
            with open(path, encoding="utf-8", errors="replace") as fh:
                conn.execute("SELECT rag.ingest_document(%s, %s)", (os.path.basename(path), fh.read()))
            if i % 25 == 0 or i == len(todo):
                print(f"  ingested {i}/{len(todo)} pages ({time.time() - t0:.0f} s)", flush=True)
        docs, chunks = conn.execute("SELECT count(*), coalesce(sum(chunk_count), 0) FROM rag.documents").fetchone()
        print(f"demo corpus: {docs} pages of the PostgreSQL 15 SQL reference, {chunks} chunks")
        for q in QUESTIONS:
            print(f"\n=== {q}")
            print("  rag.bm25_search:")
            for name, idx, score, content in conn.execute(
                "SELECT file_name, chunk_index, score, content FROM rag.bm25_search(%s, 3)", (q,)
            ):
                print(f"    {score:7.3f}  {name}#{idx}  {content[:90]!r}")
            print("  rag.hybrid_search:")
            for name, idx, score, br, vr, content in conn.execute(
                "SELECT file_name, chunk_index, score, bm25_rank, vector_rank, content "
                "FROM rag.hybrid_search(%s, 3)",
                (q,),
            ):
                print(f"    {score:7.4f}  bm25#{br} vec#{vr}  {name}#{idx}  {content[:70]!r}")
    print(f"\ntry it: psql \"{url}\" -c \"SELECT file_name, score FROM rag.hybrid_search('vacuum full locks', 5)\"")


if __name__ == "__main__":
    main(sys.argv[1])
