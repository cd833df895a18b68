"""The asynchronous client: the API of `Client`, awaitable (psycopg's AsyncConnection)."""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import time
import uuid
from typing import Any, AsyncIterator, Iterable, List, Mapping, Optional, Union

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from . import _sql
from .errors import BatchTimeout, RagbenchError, translated
from .progress import ProgressArg, Reporter
from .types import Answer, BatchFile, BatchStatus, Document, Message, SearchHit, Session

try:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool
except ImportError:  # pragma: no cover
    ConnectionPool = AsyncConnectionPool = ()  # type: ignore


class AsyncBatch:
    """An asynchronous upload followed through an `AsyncClient`."""

    def __init__(self, client: "AsyncClient", batch_id: uuid.UUID):
        self.client = client
        self.id = batch_id

    def __repr__(self) -> str:
        return f"AsyncBatch({str(self.id)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, AsyncBatch) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    async def status(self) -> BatchStatus:
        return await self.client.batch_status(self.id)

    async def files(self) -> List[BatchFile]:
        return await self.client.batch_files(self.id)

    async def retry_failed(self) -> int:
        return await self.client.retry_failed(self.id)

    async def delete(self) -> bool:
        return await self.client.delete_batch(self.id)

    async def wait(self, progress: ProgressArg = False, timeout: Optional[float] = None,
                   poll_interval: float = 5.0) -> BatchStatus:
        """See `Batch.wait`."""
        return await self.client._wait(self.id, progress, timeout, poll_interval)


class AsyncClient:
    """The async twin of `Client`. Build it with `await AsyncClient.connect(conninfo)` (the client owns
    that connection), or `AsyncClient(conn_or_pool)` with a `psycopg.AsyncConnection` or a
    `psycopg_pool.AsyncConnectionPool`. Use `async with` to close what it opened."""

    def __init__(self, connection: Union[psycopg.AsyncConnection, "AsyncConnectionPool"], *,
                 tenant: Optional[str] = None):
        self.tenant = tenant
        self._pool = None
        self._conn: Optional[psycopg.AsyncConnection] = None
        self._conninfo: Optional[str] = None
        self._lock = asyncio.Lock()
        self._pinned: contextvars.ContextVar = contextvars.ContextVar(f"ragbench_apinned_{id(self)}", default=None)
        if isinstance(connection, psycopg.AsyncConnection):
            self._conn = connection
        elif AsyncConnectionPool and isinstance(connection, AsyncConnectionPool):
            self._pool = connection
        elif isinstance(connection, str) or connection is None:
            raise TypeError("use `await AsyncClient.connect(conninfo)` to connect from a connection string")
        elif isinstance(connection, psycopg.Connection) or (ConnectionPool and isinstance(connection, ConnectionPool)):
            raise TypeError("a synchronous connection or pool needs ragbench.Client")
        else:
            raise TypeError(f"AsyncClient() takes a psycopg.AsyncConnection or a psycopg_pool.AsyncConnectionPool, "
                            f"not {type(connection).__name__}")

    @classmethod
    async def connect(cls, conninfo: Optional[str] = None, *, tenant: Optional[str] = None) -> "AsyncClient":
        """A client on a connection of its own (`conninfo`, else DATABASE_URL, else libpq's environment)."""
        if conninfo is None:
            conninfo = os.environ.get("DATABASE_URL", "")
        with translated():
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        client = cls(conn, tenant=tenant)
        client._conninfo = conninfo
        return client

    async def close(self) -> None:
        if self._conninfo is not None and self._conn is not None:
            await self._conn.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator["AsyncClient"]:
        """Several calls in one transaction (see `Client.transaction`)."""
        with translated():
            async with self._connection() as conn, self._tx_on(conn):
                token = self._pinned.set(conn)
                try:
                    yield self
                finally:
                    self._pinned.reset(token)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        pinned = self._pinned.get()
        if pinned is not None:
            yield pinned
        elif self._pool is not None:
            async with self._pool.connection() as conn:
                yield conn
        else:
            async with self._lock:
                yield self._conn

    @contextlib.asynccontextmanager
    async def _tx_on(self, conn: psycopg.AsyncConnection) -> AsyncIterator[psycopg.AsyncCursor]:
        async with conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            if self.tenant is not None:
                await cur.execute(_sql.SET_TENANT, (self.tenant,))
            yield cur

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[psycopg.AsyncCursor]:
        with translated():
            async with self._connection() as conn, self._tx_on(conn) as cur:
                yield cur

    async def _one(self, query, params=()) -> Optional[dict]:
        async with self._tx() as cur:
            await cur.execute(query, params)
            return await cur.fetchone()

    async def _all(self, query, params=()) -> List[dict]:
        async with self._tx() as cur:
            await cur.execute(query, params)
            return await cur.fetchall()

    # --- search and documents -----------------------------------------------------------------------

    async def search(self, query: str, mode: str = "hybrid", k: int = 10,
                     filter: Optional[Mapping[str, Any]] = None, bm25_weight: Optional[float] = None,
                     vector_weight: Optional[float] = None, *, rrf_k: int = 60,
                     candidates: Optional[int] = None) -> List[SearchHit]:
        statement, params, rank_column = _sql.search(query, mode, k, filter, bm25_weight, vector_weight,
                                                     rrf_k, candidates)
        return _sql.hits(await self._all(statement, params), rank_column)

    async def documents(self) -> List[Document]:
        return [_sql.document(r) for r in await self._all(_sql.DOCUMENTS)]

    async def delete_document(self, document_id) -> bool:
        row = await self._one(_sql.DELETE_DOCUMENT, (_sql.as_uuid(document_id, "document_id"),))
        return bool(row["deleted"])

    async def ingest(self, name: str, content, metadata: Optional[Mapping[str, Any]] = None) -> uuid.UUID:
        name, data = _sql._read(name, content)
        row = await self._one(_sql.INGEST, (name, data, _sql.jsonb(metadata, "metadata", default={})))
        return row["id"]

    # --- asynchronous ingestion ---------------------------------------------------------------------

    async def upload(self, files: Iterable[_sql.FileItem],
                     metadata: Optional[Mapping[str, Any]] = None) -> AsyncBatch:
        names, contents = _sql.files(files)
        row = await self._one(_sql.UPLOAD, (names, contents, _sql.jsonb(metadata, "metadata", default={})))
        return AsyncBatch(self, row["id"])

    def batch(self, batch_id) -> AsyncBatch:
        return AsyncBatch(self, _sql.as_uuid(batch_id, "batch_id"))

    async def batch_status(self, batch_id) -> BatchStatus:
        bid = _sql.as_uuid(batch_id, "batch_id")
        return _sql.batch_status(bid, await self._one(_sql.BATCH_STATUS, (bid,)))

    async def batch_files(self, batch_id) -> List[BatchFile]:
        bid = _sql.as_uuid(batch_id, "batch_id")
        return [_sql.batch_file(r) for r in await self._all(_sql.BATCH_FILES, (bid,))]

    async def retry_failed(self, batch_id) -> int:
        return int((await self._one(_sql.RETRY_FAILED, (_sql.as_uuid(batch_id, "batch_id"),)))["n"])

    async def delete_batch(self, batch_id) -> bool:
        return bool((await self._one(_sql.DELETE_BATCH, (_sql.as_uuid(batch_id, "batch_id"),)))["deleted"])

    async def progress_channel(self, batch_id) -> str:
        bid = _sql.as_uuid(batch_id, "batch_id")
        return _sql.channel(bid, await self._one(_sql.PROGRESS_CHANNEL, (bid,)))

    @contextlib.asynccontextmanager
    async def _listen_connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        if self._conninfo is not None and self._pinned.get() is None:
            with translated():
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            async with conn:
                yield conn
        else:
            async with self._connection() as conn:
                yield conn

    async def _wait(self, batch_id: uuid.UUID, progress: ProgressArg, timeout: Optional[float],
                    poll_interval: float) -> BatchStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        reporter = Reporter(progress, batch_id)
        try:
            async with self._listen_connection() as conn:
                with translated():
                    if conn.info.transaction_status != TransactionStatus.IDLE:
                        raise RagbenchError("AsyncBatch.wait() needs a connection outside a transaction: the "
                                            "upload must be committed before the worker can process it")
                    async with self._tx_on(conn) as cur:
                        await cur.execute(_sql.PROGRESS_CHANNEL, (batch_id,))
                        ch = _sql.channel(batch_id, await cur.fetchone())
                        await cur.execute(_sql.listen(ch))
                    try:
                        while True:
                            async with self._tx_on(conn) as cur:
                                await cur.execute(_sql.BATCH_STATUS, (batch_id,))
                                status = _sql.batch_status(batch_id, await cur.fetchone())
                            reporter.update(status)
                            if status.done:
                                return status
                            wait_for = poll_interval
                            if deadline is not None:
                                remaining = deadline - time.monotonic()
                                if remaining <= 0:
                                    raise BatchTimeout(
                                        f"batch {batch_id} is still {status.status} after {timeout} s "
                                        f"({status.completed + status.failed}/{status.total_files} files finished)",
                                        status)
                                wait_for = min(wait_for, remaining)
                            got = False
                            async for _ in conn.notifies(timeout=wait_for, stop_after=1):
                                got = True
                            if got:
                                async for _ in conn.notifies(timeout=0):
                                    pass
                    finally:
                        if not conn.closed:
                            with contextlib.suppress(psycopg.Error):
                                async with conn.transaction():
                                    await conn.execute(_sql.unlisten(ch))
                                async for _ in conn.notifies(timeout=0):
                                    pass
        finally:
            reporter.close()

    # --- chat ---------------------------------------------------------------------------------------

    async def create_session(self, title: str = "New Chat", llm_model: Optional[str] = None,
                             search_type: str = "hybrid", temporary: bool = False) -> Session:
        async with self._tx() as cur:
            await cur.execute(_sql.CREATE_SESSION, _sql.session_args(title, llm_model, search_type, temporary))
            sid = (await cur.fetchone())["id"]
            await cur.execute(_sql.GET_SESSION, (sid,))
            return _sql.session(await cur.fetchone(), sid)

    async def session(self, session) -> Session:
        sid = _sql.as_uuid(session, "session")
        return _sql.session(await self._one(_sql.GET_SESSION, (sid,)), sid)

    async def list_sessions(self, include_archived: bool = False) -> List[Session]:
        return [_sql.session(r) for r in await self._all(_sql.LIST_SESSIONS, (include_archived,))]

    async def rename_session(self, session, title: str) -> bool:
        return bool((await self._one(_sql.RENAME_SESSION, (_sql.as_uuid(session, "session"), title)))["ok"])

    async def archive_session(self, session, archived: bool = True) -> bool:
        return bool((await self._one(_sql.ARCHIVE_SESSION, (_sql.as_uuid(session, "session"), archived)))["ok"])

    async def delete_session(self, session) -> bool:
        return bool((await self._one(_sql.DELETE_SESSION, (_sql.as_uuid(session, "session"),)))["ok"])

    async def history(self, session, max_messages: Optional[int] = None) -> List[Message]:
        rows = await self._all(_sql.HISTORY, (_sql.as_uuid(session, "session"), max_messages))
        return [_sql.message(r) for r in rows]

    async def append(self, session, role: str, content: str,
                     metadata: Optional[Mapping[str, Any]] = None) -> int:
        return int((await self._one(_sql.APPEND, _sql.append_args(session, role, content, metadata)))["id"])

    async def ask(self, session, question: str, k: int = 5) -> Answer:
        sid = _sql.as_uuid(session, "session")
        return _sql.answer((await self._one(_sql.ASK, (sid, question, k)))["answer"], sid)

    async def delete_message(self, session, message_id: int) -> bool:
        return await self._one(_sql.DELETE_MESSAGE, (_sql.as_uuid(session, "session"), message_id)) is not None

    async def clear_history(self, session) -> int:
        async with self._tx() as cur:
            await cur.execute(_sql.CLEAR_HISTORY, (_sql.as_uuid(session, "session"),))
            return cur.rowcount
