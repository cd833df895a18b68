"""The Python client (clients/python, package `ragbench`) on a real cluster: the design document's
verification steps through the client, the sync and async clients over a connection string, a given
connection and a pool, batch progress over LISTEN, the LlamaIndex and LangChain adapters, the `ragbench`
command, and its errors. The application connects as app_writer / app_reader / app_admin (granted
rag_writer / rag_reader / rag_admin only); the superuser only cleans up, restarts and inspects."""
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

import ragbench
from ragbench import AsyncClient, Client

from conftest import ROOT, reconnect

FIX = ROOT / "tests" / "fixtures" / "formats"
PY_BIN = Path(sys.executable).parent

FACTS = [
    ("checkpoints.txt", "Checkpoints flush dirty buffers to disk so that crash recovery replays less WAL.",
     {"team": "storage"}),
    ("vacuum.txt", "Vacuum reclaims the space of dead tuples and freezes old transaction ids.", {"team": "storage"}),
    ("grants.txt", "GRANT gives a role the privilege to read a table; REVOKE takes it back.", {"team": "security"}),
]


@pytest.fixture
def urls(cluster, su):
    """Connection strings of the application roles, on a database without documents."""
    return {r: cluster.url_as(r) for r in ("app_writer", "app_reader", "app_admin")}


@pytest.fixture
def facts(urls):
    """Three one-chunk documents ingested synchronously by app_writer; name -> document id."""
    with Client(urls["app_writer"]) as rag:
        return {name: rag.ingest(name, text, meta) for name, text, meta in FACTS}


@pytest.fixture
def no_network(monkeypatch):
    """Fail on any socket connection or name lookup that leaves the machine (libpq's own sockets, in C,
    are not Python sockets: the database stays reachable)."""
    seen = []

    def local(host):
        return host in (None, "", "localhost", "::1") or str(host).startswith("127.")

    real_connect, real_gai = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        if sock.family != socket.AF_UNIX and not local(address[0]):
            seen.append(address)
            raise OSError(f"test: network access to {address} refused")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if not local(host):
            seen.append(host)
            raise OSError(f"test: name lookup of {host} refused")
        return real_gai(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield seen
    assert seen == [], f"the adapters tried to reach the network: {seen}"


def other_writer(cluster):
    """A second LOGIN role granted rag_writer only, unrelated to app_writer."""
    with cluster.connect() as su:
        if not su.execute("SELECT 1 FROM pg_roles WHERE rolname = 'client_other'").fetchone():
            su.execute("CREATE ROLE client_other LOGIN")
        su.execute("GRANT rag_writer TO client_other")
    return cluster.url_as("client_other")


# --- the design document's verification steps, through the client ----------------------------------

def test_design_verification_steps_through_the_client(cluster, su, urls):
    # 1. database setup: the extensions the design names are installed
    installed = {r[0] for r in su.execute("SELECT extname FROM pg_extension")}
    assert {"vector", "pg_search", "pgmq", "ragbench"} <= installed

    # 2. document ingestion: upload a PDF, it appears in the document list
    with Client(urls["app_writer"]) as writer:
        batch = writer.upload([FIX / "multipage.pdf"], metadata={"source": "design-check"})
        assert isinstance(batch, ragbench.Batch)
        status = batch.wait(timeout=120)
        assert (status.status, status.completed, status.failed, status.total_files) == ("completed", 1, 0, 1)
        docs = writer.documents()
        assert [(d.file_name, d.file_type, d.owner) for d in docs] == [("multipage.pdf", "pdf", "app_writer")]
        assert docs[0].chunk_count >= 1 and docs[0].metadata == {"source": "design-check"}
        pdf_id = docs[0].id
        assert [f.document_id for f in batch.files()] == [pdf_id]

    with Client(urls["app_reader"]) as reader:
        # 3. hybrid search: sources from both legs
        hits = reader.search("which animal jumps over the lazy dog", mode="hybrid", k=5)
        assert hits[0].document_id == pdf_id and "quick brown fox" in hits[0].content
        assert hits[0].bm25_rank == 1 and hits[0].vector_rank == 1

        # 4. chat persistence: two questions in one session
        session = reader.create_session("design check")
        a1 = reader.ask(session, "What does vacuum reclaim?")
        a2 = reader.ask(session, "Where does PostgreSQL store tables?")
        for a in (a1, a2):
            assert a.model == "extractive" and a.search_type == "hybrid"
            assert a.sources and a.sources[0].document_id == pdf_id and a.sources[0].file_name == "multipage.pdf"
        assert "dead tuples" in a1.answer and "heap pages" in a2.answer

    # ... restart the server; the history persists
    cluster.ctl("stop")
    cluster.ctl("start")
    reconnect(cluster).close()
    with Client(urls["app_reader"]) as reader:
        history = reader.history(session)
        assert [(m.role, m.content) for m in history] == [
            ("user", "What does vacuum reclaim?"), ("assistant", a1.answer),
            ("user", "Where does PostgreSQL store tables?"), ("assistant", a2.answer)]
        assert history[3].metadata["sources"][0]["document_id"] == str(pdf_id)
        assert [s.message_count for s in reader.list_sessions() if s.id == session.id] == [4]

    # 5. asynchronous upload, polled until the background worker has completed it
    async def async_upload():
        async with await AsyncClient.connect(urls["app_writer"]) as writer:
            batch = await writer.upload([FIX / "multipage_gs.pdf"])
            seen = []
            deadline = time.monotonic() + 120
            while True:
                status = await writer.batch_status(batch.id)
                seen.append(status.status)
                if status.done or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            hits = await writer.search("ghostscript says goodbye", k=1)
            return status, seen, hits

    status, seen, hits = asyncio.run(async_upload())
    assert status.status == "completed" and status.completed == 1 and status.chunks_done == status.chunks_total >= 1
    assert seen[0] in ("pending", "processing")  # really asynchronous: not done when upload() returned
    assert hits[0].file_name == "multipage_gs.pdf"


# --- the sync client ------------------------------------------------------------------------------------

def test_search_modes_documents_and_delete(urls, facts):
    with Client(urls["app_reader"]) as rag:
        hybrid = rag.search("dirty buffers flushed by checkpoints", k=3)
        assert hybrid[0].file_name == "checkpoints.txt" and hybrid[0].document_id == facts["checkpoints.txt"]
        assert hybrid[0].bm25_rank == 1 and hybrid[0].vector_rank == 1
        assert hybrid[0].metadata == {"team": "storage"} and hybrid[0].chunk_index == 0
        assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)

        bm25 = rag.search("dead tuples", mode="bm25", k=3)
        assert [h.file_name for h in bm25] == ["vacuum.txt"]  # the only chunk with either term
        assert bm25[0].bm25_rank == 1 and bm25[0].vector_rank is None and bm25[0].score > 1  # a BM25 score

        vector = rag.search("permissions on tables", mode="vector", k=3)
        assert vector[0].file_name == "grants.txt" and [h.vector_rank for h in vector] == [1, 2, 3]
        assert all(h.bm25_rank is None for h in vector) and 0 < vector[0].score <= 1  # cosine similarity

        # the filter is applied inside the legs, in every mode
        for mode in ("hybrid", "bm25", "vector"):
            found = rag.search("tables and tuples", mode=mode, k=3, filter={"team": "security"})
            assert [h.file_name for h in found] == ["grants.txt"], mode
        # the weights reach the fusion: with the BM25 leg weighted 0 no hit has a BM25 rank
        only_vector = rag.search("dead tuples", k=3, bm25_weight=0.0)
        assert all(h.bm25_rank is None for h in only_vector) and only_vector[0].vector_rank == 1

        docs = rag.documents()
        assert sorted(d.file_name for d in docs) == sorted(facts)
        assert all(isinstance(d, ragbench.Document) and d.chunk_count == 1 for d in docs)

    with Client(urls["app_writer"]) as writer:
        assert writer.delete_document(facts["vacuum.txt"]) is True
        assert writer.delete_document(facts["vacuum.txt"]) is False
        assert sorted(d.file_name for d in writer.documents()) == ["checkpoints.txt", "grants.txt"]
        assert writer.search("dead tuples", mode="bm25") == []


def test_given_connection_joins_the_callers_transaction(urls):
    conn = psycopg.connect(urls["app_writer"])  # not autocommit: the caller owns the transaction
    try:
        rag = Client(conn)
        with pytest.raises(RuntimeError):
            with conn.transaction():
                rag.ingest("rolled-back.txt", "This text is rolled back with the caller's transaction.")
                assert [d.file_name for d in rag.documents()] == ["rolled-back.txt"]  # visible inside it
                raise RuntimeError("the caller rolls back")
        assert rag.documents() == []
        with conn.transaction():
            rag.ingest("kept.txt", "This text is committed with the caller's transaction.")
            # a failing call rolls back its own savepoint only: the caller's transaction goes on
            with pytest.raises(ragbench.InvalidArgument):
                rag.search("anything", k=0)
            assert [d.file_name for d in rag.documents()] == ["kept.txt"]
        # an idle connection: each call is a transaction of its own, committed
        rag.ingest("own.txt", "This text is committed by the client's own transaction.")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        # and wait() follows a batch on it (LISTEN committed, notifications between transactions)
        started = time.monotonic()
        assert rag.upload([("queued.txt", b"Queued through the caller's connection.")]).wait(
            timeout=120, poll_interval=60).ok
        assert time.monotonic() - started < 30
        assert conn.execute("SELECT pg_listening_channels()").fetchall() == []
        conn.rollback()
    finally:
        conn.close()
    with Client(urls["app_reader"]) as reader:
        assert sorted(d.file_name for d in reader.documents()) == ["kept.txt", "own.txt", "queued.txt"]


def test_transaction_block_rolls_back_every_call(urls):
    with Client(urls["app_writer"]) as rag:
        with pytest.raises(RuntimeError):
            with rag.transaction():
                batch = rag.upload([("queued.txt", b"Queued and rolled back.")])
                rag.ingest("sync.txt", "Ingested and rolled back.")
                assert batch.status().status == "pending"
                raise RuntimeError("abort")
        assert rag.documents() == []
        with pytest.raises(ragbench.NotFound):
            batch.status()
        with rag.transaction():
            sid = uuid.uuid4()
            rag.append(sid, "user", "first")
            rag.append(sid, "assistant", "second")
        assert [m.content for m in rag.history(sid)] == ["first", "second"]


def test_pool_and_tenant(urls):
    with ConnectionPool(urls["app_writer"], min_size=1, max_size=2, open=True) as pool:
        rag = Client(pool)
        rag.ingest("pooled.txt", "A pooled connection ingested this sentence about replication slots.")
        acme = Client(pool, tenant="acme")
        acme.ingest("acme.txt", "Only the acme tenant sees this sentence about replication slots.")
        # calls from threads share the pool
        results = []
        threads = [threading.Thread(target=lambda: results.append(rag.search("replication slots", k=5)))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 4 and all([h.file_name for h in r] == ["pooled.txt"] for r in results)
        assert [h.file_name for h in acme.search("replication slots", k=5)] == ["acme.txt"]
        assert [(d.file_name, d.tenant) for d in acme.documents()] == [("acme.txt", "acme")]
        with acme.transaction():  # one transaction, one tenant, across calls
            assert [d.file_name for d in acme.documents()] == ["acme.txt"]
            assert acme.search("replication slots", mode="bm25")[0].file_name == "acme.txt"
        started = time.monotonic()
        done = rag.upload([("pool-batch.txt", b"Followed through a pooled connection.")]).wait(timeout=120,
                                                                                           poll_interval=60)
        assert done.ok and time.monotonic() - started < 30
        stats = pool.get_stats()
        assert stats["pool_available"] == stats["pool_size"]  # every connection was given back


def test_sessions_and_messages(urls):
    with Client(urls["app_reader"]) as rag:
        s = rag.create_session("First title", search_type="bm25", temporary=True)
        assert (s.title, s.search_type, s.is_temporary, s.is_archived, s.message_count) == \
            ("First title", "bm25", True, False, 0)
        assert rag.rename_session(s, "Renamed") is True
        assert rag.session(s.id).title == "Renamed"
        first = rag.append(s, "user", "hello", {"client": "test"})
        second = rag.append(s.id, "assistant", "hi there")
        assert second > first
        history = rag.history(str(s.id))
        assert [(m.role, m.content, m.metadata) for m in history] == [
            ("user", "hello", {"client": "test"}), ("assistant", "hi there", {})]
        assert [m.content for m in rag.history(s, max_messages=1)] == ["hi there"]
        assert rag.archive_session(s) is True
        assert s.id not in [x.id for x in rag.list_sessions()]
        assert rag.session(s).is_archived and s.id in [x.id for x in rag.list_sessions(include_archived=True)]
        assert rag.delete_message(s, first) is True and rag.delete_message(s, first) is False
        assert rag.clear_history(s) == 1 and rag.history(s) == [] and rag.session(s).message_count == 0
        assert rag.delete_session(s) is True and rag.delete_session(s) is False
        with pytest.raises(ragbench.NotFound):
            rag.session(s)
        assert rag.rename_session(uuid.uuid4(), "nobody") is False


# --- batches: progress over LISTEN, timeouts ----------------------------------------------------------

def test_wait_is_driven_by_notifications_with_a_progress_bar(cluster, urls, capsys):
    files = [(f"note-{i}.txt", f"Note {i}: the planner estimates row counts from statistics.".encode())
             for i in range(3)]
    with Client(urls["app_writer"]) as rag:
        batch = rag.upload(files)
        seen = []
        started = time.monotonic()
        # the fallback poll is a minute away: finishing sooner means the notifications drove the wait
        status = batch.wait(progress=seen.append, timeout=120, poll_interval=60)
        assert time.monotonic() - started < 30
        assert status.ok and status.completed == 3 and status.percent == 100.0
        assert seen[-1] == status and len(seen) >= 2
        finished = [s.completed + s.failed for s in seen]
        assert finished == sorted(finished) and finished[0] < 3

        # progress=True: a tqdm bar on stderr (the batch is done: one status, bar at 3/3)
        assert batch.wait(progress=True).ok
        err = capsys.readouterr().err
        assert f"batch {str(batch.id)[:8]}" in err and "3/3" in err and "completed, 3/3 chunks" in err

        # the channel is the documented one, and the client's LISTEN is gone afterwards
        assert rag.progress_channel(batch) == "rag_progress_" + batch.id.hex


def test_wait_times_out_then_finishes(cluster, su, urls):
    with Client(urls["app_writer"]) as rag:
        # hold the worker's store back: an exclusive lock on the documents table until released
        with su.transaction():
            su.execute("LOCK TABLE rag.document_files IN EXCLUSIVE MODE")
            batch = rag.upload([("slow.txt", b"Held back by a lock the superuser holds.")])
            with pytest.raises(ragbench.BatchTimeout) as exc:
                batch.wait(timeout=1.5, poll_interval=0.5)
            assert isinstance(exc.value, TimeoutError)
            assert exc.value.status.status in ("pending", "processing") and not exc.value.status.done
            assert str(batch.id) in str(exc.value)
        assert batch.wait(timeout=120).ok


def test_async_client_over_connection_and_pool(urls):
    async def run():
        async with await AsyncClient.connect(urls["app_writer"]) as rag:
            batch = await rag.upload([("async-a.txt", "Asynchronous clients await their batches."),
                                      ("async-b.md", b"# Heading\n\nAutovacuum runs in the background.")],
                                     metadata={"via": "async"})
            assert isinstance(batch, ragbench.AsyncBatch)
            statuses = []
            started = time.monotonic()
            status = await batch.wait(progress=statuses.append, timeout=120, poll_interval=60)
            assert time.monotonic() - started < 30  # woken by notifications, not the minute's poll
            assert status.ok and status.total_files == 2 and statuses[-1].ok
            assert sorted(f.file_name for f in await batch.files()) == ["async-a.txt", "async-b.md"]
            s = await rag.create_session("async")
            answer = await rag.ask(s, "What runs in the background?")
            assert answer.sources[0].file_name == "async-b.md" and "Autovacuum" in answer.answer
            assert [m.role for m in await rag.history(s)] == ["user", "assistant"]
            assert await rag.delete_session(s)

        async with AsyncConnectionPool(urls["app_reader"], min_size=1, max_size=2, open=False) as pool:
            reader = AsyncClient(pool)
            hits = await asyncio.gather(*(reader.search("background autovacuum", mode=m, k=1)
                                          for m in ("hybrid", "bm25", "vector")))
            assert [h[0].file_name for h in hits] == ["async-b.md"] * 3
            docs = await reader.documents()
            assert {d.file_name: d.metadata for d in docs} == {"async-a.txt": {"via": "async"},
                                                                "async-b.md": {"via": "async"}}
            with pytest.raises(ragbench.PermissionDenied):
                await reader.upload([("no.txt", b"readers cannot upload")])

        conn = await psycopg.AsyncConnection.connect(urls["app_writer"], autocommit=True)
        async with conn:
            rag = AsyncClient(conn)
            async with rag.transaction():
                sid = uuid.uuid4()
                await rag.append(sid, "user", "in one transaction")
            assert [m.content for m in await rag.history(sid)] == ["in one transaction"]
            assert not conn.closed

    asyncio.run(run())


# --- errors -------------------------------------------------------------------------------------------

def test_errors_keep_the_servers_message_and_sqlstate(cluster, urls):
    with Client(urls["app_writer"]) as writer:
        batch = writer.upload([("mine.txt", b"A batch of app_writer's.")])
    # another writer cannot see it: not found, not someone else's status
    with Client(other_writer(cluster)) as other:
        with pytest.raises(ragbench.NotFound, match=f"batch {batch.id} does not exist or is not visible"):
            other.batch_status(batch.id)
        with pytest.raises(ragbench.NotFound):
            other.batch(batch.id).wait(timeout=5)
        assert other.batch_files(batch.id) == []
    with Client(urls["app_reader"]) as reader:
        with pytest.raises(ragbench.PermissionDenied) as denied:
            reader.upload([("x.txt", b"x")])
        assert denied.value.sqlstate == "42501" and "permission denied for function upload" in denied.value.message
        assert isinstance(denied.value.__cause__, psycopg.errors.InsufficientPrivilege)
        with pytest.raises(ValueError, match="unknown search mode 'fuzzy'") as bad_mode:
            reader.search("x", mode="fuzzy")
        assert isinstance(bad_mode.value, ragbench.InvalidArgument) and bad_mode.value.sqlstate is None
        with pytest.raises(ragbench.InvalidArgument) as bad_k:
            reader.search("x", k=0)
        assert bad_k.value.sqlstate == "22023" and "k must be between 1 and 10000" in bad_k.value.message
        assert bad_k.value.hint and "SQLSTATE 22023" in str(bad_k.value)
        with pytest.raises(ragbench.InvalidArgument, match="message content must not be empty"):
            reader.append(uuid.uuid4(), "user", "   ")
        with pytest.raises(ragbench.InvalidArgument, match="unknown role 'robot'"):
            reader.append(uuid.uuid4(), "robot", "hi")
        with pytest.raises(ragbench.InvalidArgument, match="session must be a UUID"):
            reader.history("not-a-session")
        # the client still works after each error
        assert reader.list_sessions(include_archived=True) is not None
    with Client(urls["app_writer"]) as writer:
        with pytest.raises(ragbench.InvalidArgument, match="is a directory"):
            writer.upload([FIX])
        with pytest.raises(ragbench.InvalidArgument, match="no files"):
            writer.upload([])
        with pytest.raises(ragbench.RagbenchError, match="outside a transaction"):
            with writer.transaction():
                writer.upload([("uncommitted.txt", b"never committed")]).wait(timeout=5)
    with pytest.raises(ragbench.ConnectionFailed):
        Client("postgresql://app_writer@127.0.0.1:1/ragbench?connect_timeout=2")
    with pytest.raises(TypeError, match="AsyncClient"):
        Client(AsyncConnectionPool(urls["app_writer"], open=False))


# --- LlamaIndex ---------------------------------------------------------------------------------------

def test_llamaindex_retriever_and_chat_store(urls, facts, no_network):
    from llama_index.core.llms import ChatMessage, MessageRole
    from llama_index.core.schema import MetadataMode, NodeWithScore

    from ragbench.llamaindex import RagbenchChatStore, RagbenchRetriever

    rag = Client(urls["app_reader"])
    try:
        nodes = RagbenchRetriever(rag, k=3).retrieve("checkpoints flush dirty buffers")
        assert all(isinstance(n, NodeWithScore) for n in nodes) and len(nodes) == 3
        top = nodes[0]
        assert top.node.node_id == str(rag.search("checkpoints flush dirty buffers", k=1)[0].chunk_id)
        assert "crash recovery" in top.node.get_content()
        assert top.node.ref_doc_id == str(facts["checkpoints.txt"])
        meta = top.node.metadata
        assert (meta["file_name"], meta["bm25_rank"], meta["vector_rank"], meta["team"], meta["chunk_index"]) == \
            ("checkpoints.txt", 1, 1, "storage", 0)
        assert "bm25_rank" not in top.node.get_metadata_str(mode=MetadataMode.LLM)  # ranks stay out of prompts
        assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)

        bm25 = RagbenchRetriever(rag, mode="bm25", k=3).retrieve("privilege to read a table")
        assert bm25[0].node.metadata["file_name"] == "grants.txt"
        assert [n.node.metadata["bm25_rank"] for n in bm25] == list(range(1, len(bm25) + 1))
        assert all(n.node.metadata["vector_rank"] is None for n in bm25)
        filtered = RagbenchRetriever(rag, mode="vector", k=3, filter={"team": "security"}).retrieve("disk")
        assert [n.node.metadata["file_name"] for n in filtered] == ["grants.txt"]
        with pytest.raises(ValueError, match="unknown search mode"):
            RagbenchRetriever(rag, mode="semantic")

        async def aretrieve():
            async with await AsyncClient.connect(urls["app_reader"]) as arag:
                return await RagbenchRetriever(arag, k=2, vector_weight=0.0).aretrieve("dead tuples")
        anodes = asyncio.run(aretrieve())
        assert anodes[0].node.metadata["file_name"] == "vacuum.txt" and anodes[0].node.metadata["vector_rank"] is None

        store = RagbenchChatStore(rag)
        key = f"alice-{uuid.uuid4().hex[:8]}"
        store.add_message(key, ChatMessage(role=MessageRole.USER, content="What is a checkpoint?"))
        store.add_message(key, ChatMessage(role=MessageRole.ASSISTANT, content="",
                                           additional_kwargs={"tool_calls": [{"id": "t1", "name": "search"}]}))
        store.add_message(key, ChatMessage(role=MessageRole.TOOL, content="checkpoints.txt says ...",
                                           additional_kwargs={"tool_call_id": "t1"}))
        store.add_message(key, ChatMessage(role=MessageRole.CHATBOT, content="It flushes dirty buffers."))
        got = store.get_messages(key)
        assert [(m.role, m.content) for m in got] == [
            (MessageRole.USER, "What is a checkpoint?"), (MessageRole.ASSISTANT, ""),
            (MessageRole.TOOL, "checkpoints.txt says ..."), (MessageRole.CHATBOT, "It flushes dirty buffers.")]
        assert got[1].additional_kwargs == {"tool_calls": [{"id": "t1", "name": "search"}]}
        # stored as a real ragbench session, titled with the key
        sid = RagbenchChatStore.session_id(key)
        assert [m.role for m in rag.history(sid)] == ["user", "assistant", "tool", "assistant"]
        assert rag.session(sid).title == key and key in store.get_keys()

        assert store.delete_message(key, 2).content == "checkpoints.txt says ..."
        assert store.delete_last_message(key).content == "It flushes dirty buffers."
        assert store.delete_message(key, 10) is None
        assert [m.content for m in store.get_messages(key)] == ["What is a checkpoint?", ""]
        store.set_messages(key, [ChatMessage(role=MessageRole.SYSTEM, content="Be brief.")])
        assert [(m.role, m.content) for m in store.get_messages(key)] == [(MessageRole.SYSTEM, "Be brief.")]
        assert [m.content for m in store.delete_messages(key)] == ["Be brief."]
        assert store.get_messages(key) == [] and key not in store.get_keys()

        # a UUID key is that session: rag.ask's messages read as chat messages
        session = rag.create_session("asked")
        answer = rag.ask(session, "What does vacuum reclaim?")
        asked = store.get_messages(str(session.id))
        assert [(m.role, m.content) for m in asked] == [(MessageRole.USER, "What does vacuum reclaim?"),
                                                        (MessageRole.ASSISTANT, answer.answer)]
        assert str(session.id) in store.get_keys()
    finally:
        rag.close()


# --- LangChain ----------------------------------------------------------------------------------------

def test_langchain_retriever_and_history(urls, facts, no_network):
    from langchain_core.documents import Document
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
    from langchain_core.runnables import RunnableLambda
    from langchain_core.runnables.history import RunnableWithMessageHistory

    from ragbench.langchain import RagbenchChatMessageHistory, RagbenchRetriever

    rag = Client(urls["app_reader"])
    try:
        docs = RagbenchRetriever(client=rag, k=3).invoke("who may read a table")
        assert all(isinstance(d, Document) for d in docs) and docs[0].metadata["file_name"] == "grants.txt"
        assert docs[0].id == docs[0].metadata["chunk_id"] and docs[0].metadata["document_id"] == str(facts["grants.txt"])
        assert docs[0].metadata["team"] == "security" and docs[0].metadata["bm25_rank"] >= 1
        assert "REVOKE" in docs[0].page_content
        filtered = RagbenchRetriever(client=rag, mode="bm25", filter={"team": "storage"}).invoke("dead tuples")
        assert [d.metadata["file_name"] for d in filtered] == ["vacuum.txt"]
        with pytest.raises(ValueError, match="unknown search mode"):
            RagbenchRetriever(client=rag, mode="keyword")

        async def ainvoke():
            async with await AsyncClient.connect(urls["app_reader"]) as arag:
                return await RagbenchRetriever(client=arag, mode="vector", k=1).ainvoke("space of dead tuples")
        adocs = asyncio.run(ainvoke())
        assert adocs[0].metadata["file_name"] == "vacuum.txt" and adocs[0].metadata["vector_rank"] == 1

        sid = uuid.uuid4()
        history = RagbenchChatMessageHistory(rag, sid)
        sent = [SystemMessage("Answer from the sources."), HumanMessage("What flushes dirty buffers?"),
                AIMessage("", tool_calls=[{"name": "search", "args": {"q": "dirty buffers"}, "id": "call-1"}]),
                ToolMessage("checkpoints.txt", tool_call_id="call-1"), AIMessage("Checkpoints do.")]
        history.add_messages(sent)
        back = history.messages
        assert [type(m) for m in back] == [type(m) for m in sent]
        assert [m.content for m in back] == [m.content for m in sent]
        assert back[2].tool_calls[0]["id"] == "call-1" and back[3].tool_call_id == "call-1"
        assert [m.role for m in rag.history(sid)] == ["system", "user", "assistant", "tool", "assistant"]

        history.clear()
        assert history.messages == [] and rag.session(sid).message_count == 0
        answer = rag.ask(sid, "What does vacuum reclaim?")
        asked = history.messages
        assert [type(m) for m in asked] == [HumanMessage, AIMessage] and asked[1].content == answer.answer
        assert asked[1].response_metadata["ragbench"]["sources"][0]["file_name"] == answer.sources[0].file_name

        # in a LangChain chain: the history is read before and written after each turn
        def fake_model(messages):
            return AIMessage(f"I have seen {len(messages)} messages.")
        with warnings.catch_warnings():  # deprecated in favour of LangGraph, still LangChain's own history API
            warnings.filterwarnings("ignore", message="RunnableWithMessageHistory is deprecated")
            chain = RunnableWithMessageHistory(RunnableLambda(fake_model),
                                               lambda session_id: RagbenchChatMessageHistory(rag, session_id))
        out = chain.invoke([HumanMessage("And freezing?")], config={"configurable": {"session_id": str(sid)}})
        assert out.content == "I have seen 3 messages."
        assert [m.content for m in history.messages][-2:] == ["And freezing?", "I have seen 3 messages."]
    finally:
        rag.close()


def test_importing_the_adapters_touches_no_network(urls, facts):
    """In a fresh interpreter: importing both adapters and using them opens no socket but libpq's."""
    guard = (
        "import socket\n"
        "def local(h): return h in (None, '', 'localhost', '::1') or str(h).startswith('127.')\n"
        "real_connect, real_gai = socket.socket.connect, socket.getaddrinfo\n"
        "def connect(s, addr):\n"
        "    if s.family != socket.AF_UNIX and not local(addr[0]): raise SystemExit(f'network: {addr}')\n"
        "    return real_connect(s, addr)\n"
        "def gai(host, *a, **k):\n"
        "    if not local(host): raise SystemExit(f'name lookup: {host}')\n"
        "    return real_gai(host, *a, **k)\n"
        "socket.socket.connect, socket.getaddrinfo = connect, gai\n"
        "import ragbench, ragbench.llamaindex as li, ragbench.langchain as lc\n"
        "rag = ragbench.Client(URL)\n"
        "n = li.RagbenchRetriever(rag, k=1).retrieve('dead tuples')\n"
        "d = lc.RagbenchRetriever(client=rag, k=1).invoke('dead tuples')\n"
        "print(n[0].node.metadata['file_name'], d[0].metadata['file_name'])\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", NLTK_DATA="/nonexistent")
    out = subprocess.run([sys.executable, "-c", f"URL = {urls['app_reader']!r}\n" + guard], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["vacuum.txt", "vacuum.txt"]


# --- the command ----------------------------------------------------------------------------------------

def ragbench_cmd(*args, env=None, check=True):
    exe = PY_BIN / "ragbench"
    assert exe.exists(), "the ragbench console script is not installed in this venv (scripts/setup.sh)"
    out = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=180,
                         env=dict(os.environ, **(env or {})))
    if check:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def test_cli(cluster, urls, tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "wal.txt").write_text("The write-ahead log records every change before the data files do.")
    (docs / "sub" / "index.md").write_text("# Indexes\n\nA B-tree index speeds up equality and range lookups.")
    (docs / ".hidden.txt").write_text("skipped")
    writer = {"DATABASE_URL": urls["app_writer"]}

    up = ragbench_cmd("upload", str(docs), "--metadata", '{"via": "cli"}', env=writer)
    batch_id = uuid.UUID(up.stdout.splitlines()[0])
    assert "completed: 2/2 files completed, 0 failed" in up.stdout
    assert f"batch {str(batch_id)[:8]}" in up.stderr and "2/2" in up.stderr  # the progress bar

    st = ragbench_cmd("--url", urls["app_writer"], "status", str(batch_id), "--files", "--json")
    status = json.loads(st.stdout)
    assert status["status"]["status"] == "completed" and status["status"]["total_files"] == 2
    assert [f["file_name"] for f in status["files"]] == ["sub/index.md", "wal.txt"]

    se = ragbench_cmd("--url", urls["app_reader"], "search", "range lookups with a b-tree", "-k", "2", "--json")
    hits = json.loads(se.stdout)
    assert hits[0]["file_name"] == "sub/index.md" and hits[0]["metadata"]["via"] == "cli"
    plain = ragbench_cmd("--url", urls["app_reader"], "search", "write-ahead log", "--mode", "bm25")
    assert "bm25#1" in plain.stdout.splitlines()[0] and "wal.txt#0" in plain.stdout.splitlines()[0]

    ask = ragbench_cmd("--url", urls["app_reader"], "ask", "new", "What does the write-ahead log record?")
    session_id = uuid.UUID(ask.stderr.strip().split()[-1])
    assert "every change" in ask.stdout and "Sources:" in ask.stdout and "[1] wal.txt#0" in ask.stdout
    hist = ragbench_cmd("--url", urls["app_reader"], "history", str(session_id), "--json")
    assert [m["role"] for m in json.loads(hist.stdout)] == ["user", "assistant"]
    again = ragbench_cmd("--url", urls["app_reader"], "ask", str(session_id), "And indexes?", "--json")
    assert json.loads(again.stdout)["sources"][0]["file_name"] == "sub/index.md"

    # libpq's environment when there is no --url nor DATABASE_URL
    host, port = "127.0.0.1", cluster.env["PGPORT"]
    env = {"PGHOST": host, "PGPORT": port, "PGUSER": "app_reader", "PGDATABASE": "ragbench", "DATABASE_URL": ""}
    listed = ragbench_cmd("documents", env=env)
    assert sorted(line.split()[-1] for line in listed.stdout.splitlines()) == ["sub/index.md", "wal.txt"]

    missing = ragbench_cmd("--url", urls["app_writer"], "status", str(uuid.uuid4()), check=False)
    assert missing.returncode == 1 and "does not exist or is not visible" in missing.stderr
    denied = ragbench_cmd("--url", urls["app_reader"], "upload", str(docs), check=False)
    assert denied.returncode == 1 and "permission denied for function upload" in denied.stderr
    assert "SQLSTATE 42501" in denied.stderr and "Traceback" not in denied.stderr
    bad = ragbench_cmd("search", "x", "--mode", "fuzzy", env=writer, check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    # python -m ragbench is the same command
    module = subprocess.run([sys.executable, "-m", "ragbench", "--url", urls["app_reader"], "documents", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert module.returncode == 0, module.stderr
    assert sorted(d["file_name"] for d in json.loads(module.stdout)) == ["sub/index.md", "wal.txt"]
