"""Foundation: the stack, schema, synchronous ingest of real documents, BM25, and bad input."""
import psycopg
import pytest

from conftest import DOCS, doc_page

# Real pages of Debian's postgresql-doc-15 and questions whose answer is on exactly one of them.
PAGES = [
    "sql-createindex.html", "sql-vacuum.html", "sql-grant.html", "sql-copy.html", "sql-altertable.html",
    "sql-createtable.html", "sql-select.html", "sql-cluster.html", "sql-truncate.html", "sql-listen.html",
    "sql-notify.html", "sql-reindex.html", "sql-explain.html", "sql-createtrigger.html", "sql-lock.html",
    "sql-prepare.html", "sql-createsequence.html", "sql-analyze.html", "sql-createrole.html",
    "sql-insert.html", "sql-update.html", "sql-delete.html", "sql-createview.html", "sql-checkpoint.html",
]
QUESTIONS = {
    "build an index without locking out concurrent inserts updates deletes": "sql-createindex.html",
    "reclaim storage occupied by dead tuples": "sql-vacuum.html",
    "physically reorder a table based on an index": "sql-cluster.html",
    "copy data between a file and a table": "sql-copy.html",
    "empty a table quickly truncate": "sql-truncate.html",
    "send a notification event with an optional payload string": "sql-notify.html",
    "force a write-ahead log checkpoint": "sql-checkpoint.html",
    "show the execution plan of a statement": "sql-explain.html",
}


@pytest.fixture(scope="module")
def corpus(cluster):
    """The pages, ingested by the application's writer role; yields that connection."""
    with cluster.connect() as su:
        su.execute("DELETE FROM rag.document_files")
    with cluster.connect_as("app_writer") as conn:
        for p in PAGES:
            conn.execute("SELECT rag.ingest_document(%s, %s, %s)", (p, doc_page(p), '{"source": "pg-docs"}'))
        yield conn


@pytest.fixture(scope="module")
def reader(cluster, corpus):
    """The application's read-only role (rag_reader), which shares app_writer's corpus by role membership."""
    with cluster.connect_as("app_reader") as conn:
        yield conn


def test_stack_extensions_and_preload(cluster):
    with cluster.connect() as conn:
        exts = dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())
        assert {"vector", "pg_search", "pgmq", "ragbench"} <= set(exts)
        assert exts["pg_search"].startswith("0.21.")
        assert exts["vector"] == "0.8.2"
        assert "ragbench" in conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        assert conn.execute("SELECT version()").fetchone()[0].startswith("PostgreSQL 17.")
        # the pgmq queue for documents exists
        assert conn.execute("SELECT count(*) FROM pgmq.list_queues() WHERE queue_name = 'rag_documents'").fetchone()[0] == 1


def test_documents_view_lists_real_pages(corpus):
    rows = corpus.execute(
        "SELECT file_name, file_type, file_size_bytes, chunk_count, uploaded_at FROM rag.documents ORDER BY file_name"
    ).fetchall()
    assert [r[0] for r in rows] == sorted(PAGES)
    for name, ftype, size, chunks, uploaded in rows:
        assert ftype == "html"
        assert size == len(doc_page(name).encode())
        assert chunks >= 1 and uploaded is not None
    # no markup or script text leaked into chunks
    leaked = corpus.execute("SELECT count(*) FROM rag.chunks WHERE content ~ '<(div|span|a |p>|/)'").fetchone()[0]
    assert leaked == 0


@pytest.mark.parametrize("question,page", sorted(QUESTIONS.items()))
def test_bm25_ranks_the_right_page_first(reader, question, page):
    top = reader.execute("SELECT file_name FROM rag.bm25_search(%s, 5)", (question,)).fetchall()
    assert top and top[0][0] == page, (question, top)


def test_bm25_returns_columns_best_first(reader):
    rows = reader.execute(
        "SELECT chunk_id, document_id, file_name, chunk_index, content, score, metadata FROM rag.bm25_search('vacuum', 10)"
    ).fetchall()
    assert len(rows) == 10
    scores = [r[5] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(r[6]["source"] == "pg-docs" for r in rows)


@pytest.mark.parametrize("query", ['AND OR NOT', '"unterminated', "title:(vacuum", "vacuum~2^3 *", "- NOT - OR (",
                                   "'; DROP TABLE rag.chunks; --"])
def test_bm25_query_syntax_is_plain_text(corpus, query):
    corpus.execute("SELECT * FROM rag.bm25_search(%s, 5)", (query,)).fetchall()
    assert corpus.execute("SELECT count(*) FROM rag.chunks").fetchone()[0] > 0


def test_punctuation_only_query_returns_nothing(corpus):
    assert corpus.execute("SELECT count(*) FROM rag.bm25_search('?!...;;--', 5)").fetchone()[0] == 0


@pytest.mark.parametrize("k,msg", [(0, "k must be between 1 and 10000, got 0"), (-5, "got -5"),
                                   (1000000, "got 1000000")])
def test_bad_k_is_a_clear_error(corpus, k, msg):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=msg):
        corpus.execute("SELECT * FROM rag.bm25_search('vacuum', %s)", (k,))


def test_dedup_same_content_same_id(db):
    text = doc_page("sql-lock.html")
    a = db.execute("SELECT rag.ingest_document('lock.html', %s)", (text,)).fetchone()[0]
    n = db.execute("SELECT count(*) FROM rag.chunks").fetchone()[0]
    b = db.execute("SELECT rag.ingest_document('lock-again.html', %s)", (text,)).fetchone()[0]
    assert a == b
    assert db.execute("SELECT count(*) FROM rag.chunks").fetchone()[0] == n
    assert db.execute("SELECT count(*) FROM rag.documents").fetchone()[0] == 1


def test_delete_document_takes_chunks(db):
    a = db.execute("SELECT rag.ingest_document('lock.html', %s)", (doc_page("sql-lock.html"),)).fetchone()[0]
    assert db.execute("SELECT rag.delete_document(%s)", (a,)).fetchone()[0] is True
    assert db.execute("SELECT count(*) FROM rag.chunks").fetchone()[0] == 0
    assert db.execute("SELECT rag.delete_document(%s)", (a,)).fetchone()[0] is False


BAD_INPUTS = [
    (("e.txt", ""), "contains no text"),
    (("w.txt", " \n\t \n"), "contains no text"),
    (("x" * 10000, "text"), "file_name is 10000 characters long"),
    (("", "text"), "file_name must not be empty"),
    (("big.txt", "lorem ipsum " * (20 * 1024 * 1024 // 12 + 1)), "rag.max_document_bytes"),
]


@pytest.mark.parametrize("args,msg", BAD_INPUTS, ids=["empty", "whitespace", "long-name", "no-name", "20MB"])
def test_bad_input_is_a_clear_error_and_writes_nothing(db, args, msg):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=msg):
        db.execute("SELECT rag.ingest_document(%s, %s)", args)
    assert db.execute("SELECT count(*) FROM rag.document_files").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM rag.chunks").fetchone()[0] == 0


def test_nul_character_is_refused_by_the_text_type(db):
    with pytest.raises(psycopg.DataError):
        db.execute("SELECT rag.ingest_document('nul.txt', %s)", ("before\x00after",))
    assert db.execute("SELECT count(*) FROM rag.document_files").fetchone()[0] == 0


@pytest.mark.parametrize("meta", ['[1, 2]', '"text"', '42', 'null'])
def test_invalid_metadata_is_a_clear_error(db, meta):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="metadata must be a JSON object"):
        db.execute("SELECT rag.ingest_document('m.txt', 'some text', %s::jsonb)", (meta,))


def test_malformed_metadata_json_is_refused_by_jsonb(db):
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        db.execute("SELECT rag.ingest_document('m.txt', 'some text', %s::jsonb)", ("{not json",))


def test_failed_ingest_in_a_transaction_leaves_nothing(cluster):
    with cluster.connect_as("app_writer") as conn:
        conn.execute("DELETE FROM rag.document_files")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            with conn.transaction():
                conn.execute("SELECT rag.ingest_document('ok.txt', 'A valid document about checkpoints.')")
                conn.execute("SELECT rag.ingest_document('bad.txt', '')")
        assert conn.execute("SELECT count(*) FROM rag.document_files").fetchone()[0] == 0


def test_extension_update_path_exists(cluster):
    with cluster.connect() as conn:
        conn.execute("ALTER EXTENSION ragbench UPDATE")
        default = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'ragbench'").fetchone()[0]
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'ragbench'").fetchone()[0] == default
