"""The synchronous client."""
from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
import uuid
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Union

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from . import _sql
from .errors import BatchTimeout, RagbenchError, translated
from .progress import ProgressArg, Reporter
from .types import Answer, BatchFile, BatchStatus, Document, Message, SearchHit, Session

try:  # psycopg_pool is a dependency, but the client works without it
    from psycopg_pool import AsyncConnectionPool, ConnectionPool
except ImportError:  # pragma: no cover
    ConnectionPool = AsyncConnectionPool = ()  # type: ignore


class Batch:
    """An asynchronous upload: its id, and what can be asked about it."""

    def __init__(self, client: "Client", batch_id: uuid.UUID):
        self.client = client
        self.id = batch_id

    def __repr__(self) -> str:
        return f"Batch({str(self.id)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Batch) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def status(self) -> BatchStatus:
        return self.client.batch_status(self.id)

    def files(self) -> List[BatchFile]:
        return self.client.batch_files(self.id)

    def retry_failed(self) -> int:
        return self.client.retry_failed(self.id)

    def delete(self) -> bool:
        return self.client.delete_batch(self.id)

    def wait(self, progress: ProgressArg = False, timeout: Optional[float] = None,
             poll_interval: float = 5.0) -> BatchStatus:
        """Wait until every file is completed or failed; the final status.

        Follows the batch with `LISTEN` on its progress channel and reads `rag.batch_status` on each
        notification, and every `poll_interval` seconds in case one was missed. `progress=True` shows a
        tqdm bar; a callable is called with each status. Raises `BatchTimeout` (with the last status)
        after `timeout` seconds."""
        return self.client._wait(self.id, progress, timeout, poll_interval)


class Client:
    """A ragbench client over psycopg 3.

    `connection` is a connection string (the client opens and owns an autocommit connection), an open
    `psycopg.Connection`, or a `psycopg_pool.ConnectionPool`; None reads `DATABASE_URL`, else libpq's
    environment (PGHOST, PGUSER, ...). Each call is one transaction; on a connection that is inside a
    transaction of the caller's, a call joins it (as a savepoint) and the caller commits.

    `tenant`: act for this tenant (`rag.set_tenant`) in every transaction the client runs."""

    def __init__(self, connection: Union[str, psycopg.Connection, "ConnectionPool", None] = None, *,
                 tenant: Optional[str] = None):
        self.tenant = tenant
        self._pool = None
        self._conn: Optional[psycopg.Connection] = None
        self._conninfo: Optional[str] = None
        self._lock = threading.RLock()
        self._pinned: contextvars.ContextVar = contextvars.ContextVar(f"ragbench_pinned_{id(self)}", default=None)
        if connection is None:
            connection = os.environ.get("DATABASE_URL", "")
        if isinstance(connection, str):
            self._conninfo = connection
            with translated():
                self._conn = psycopg.connect(connection, autocommit=True)
        elif isinstance(connection, psycopg.Connection):
            self._conn = connection
        elif ConnectionPool and isinstance(connection, ConnectionPool):
            self._pool = connection
        elif isinstance(connection, psycopg.AsyncConnection) or (
                AsyncConnectionPool and isinstance(connection, AsyncConnectionPool)):
            raise TypeError("an async connection or pool needs ragbench.AsyncClient")
        else:
            raise TypeError(f"Client() takes a connection string, a psycopg.Connection or a "
                            f"psycopg_pool.ConnectionPool, not {type(connection).__name__}")

    # --- connections and transactions ---------------------------------------------------------------

    def close(self) -> None:
        """Close the connection the client opened itself (a given connection or pool stays open)."""
        if self._conninfo is not None and self._conn is not None:
            self._conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Client"]:
        """Run several calls in one transaction: `with rag.transaction(): rag.upload(...); rag.append(...)`.
        Commits at the end of the block, rolls back if it raises (a pool's connection is kept for the block)."""
        with translated(), self._connection() as conn, self._tx_on(conn):
            token = self._pinned.set(conn)
            try:
                yield self
            finally:
                self._pinned.reset(token)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        pinned = self._pinned.get()
        if pinned is not None:  # inside transaction(): its connection
            yield pinned
        elif self._pool is not None:
            with self._pool.connection() as conn:
                yield conn
        else:
            with self._lock:
                yield self._conn

    @contextlib.contextmanager
    def _tx_on(self, conn: psycopg.Connection) -> Iterator[psycopg.Cursor]:
        with conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            if self.tenant is not None:
                cur.execute(_sql.SET_TENANT, (self.tenant,))
            yield cur

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor]:
        with translated(), self._connection() as conn, self._tx_on(conn) as cur:
            yield cur

    def _one(self, query, params=()) -> Optional[dict]:
        with self._tx() as cur:
            return cur.execute(query, params).fetchone()

    def _all(self, query, params=()) -> List[dict]:
        with self._tx() as cur:
            return cur.execute(query, params).fetchall()

    # --- search and documents -----------------------------------------------------------------------

    def search(self, query: str, mode: str = "hybrid", k: int = 10, filter: Optional[Mapping[str, Any]] = None,
               bm25_weight: Optional[float] = None, vector_weight: Optional[float] = None, *, rrf_k: int = 60,
               candidates: Optional[int] = None) -> List[SearchHit]:
        """The `k` best chunks for `query`, best first. `mode`: 'hybrid' (both legs fused: normalised scores, 0.2 BM25 / 0.8 vector unless weights are given),
        'bm25' or 'vector'. `filter`: JSON containment on chunk metadata (which includes the document's),
        applied inside the legs. The weights apply to hybrid searches."""
        statement, params, rank_column = _sql.search(query, mode, k, filter, bm25_weight, vector_weight,
                                                     rrf_k, candidates)
        return _sql.hits(self._all(statement, params), rank_column)

    def documents(self) -> List[Document]:
        """The documents the role sees, oldest first."""
        return [_sql.document(r) for r in self._all(_sql.DOCUMENTS)]

    def delete_document(self, document_id) -> bool:
        """Delete a document and its chunks; False if there was none (or it is not the role's)."""
        return bool(self._one(_sql.DELETE_DOCUMENT, (_sql.as_uuid(document_id, "document_id"),))["deleted"])

    def ingest(self, name: str, content, metadata: Optional[Mapping[str, Any]] = None) -> uuid.UUID:
        """Ingest one document synchronously (parse, chunk, embed, store); its id. `content` is bytes,
        text or a path."""
        name, data = _sql._read(name, content)
        return self._one(_sql.INGEST, (name, data, _sql.jsonb(metadata, "metadata", default={})))["id"]

    # --- asynchronous ingestion ---------------------------------------------------------------------

    def upload(self, files: Iterable[_sql.FileItem], metadata: Optional[Mapping[str, Any]] = None) -> Batch:
        """Queue files for the background worker: paths, or (name, content) pairs with bytes, text or a
        path as content. `metadata` goes to every document. Returns the batch; `batch.wait()` follows it."""
        names, contents = _sql.files(files)
        row = self._one(_sql.UPLOAD, (names, contents, _sql.jsonb(metadata, "metadata", default={})))
        return Batch(self, row["id"])

    def batch(self, batch_id) -> Batch:
        """The handle of an existing batch (nothing is read until it is used)."""
        return Batch(self, _sql.as_uuid(batch_id, "batch_id"))

    def batch_status(self, batch_id) -> BatchStatus:
        bid = _sql.as_uuid(batch_id, "batch_id")
        return _sql.batch_status(bid, self._one(_sql.BATCH_STATUS, (bid,)))

    def batch_files(self, batch_id) -> List[BatchFile]:
        bid = _sql.as_uuid(batch_id, "batch_id")
        return [_sql.batch_file(r) for r in self._all(_sql.BATCH_FILES, (bid,))]

    def retry_failed(self, batch_id) -> int:
        """Re-queue the batch's failed files (rag_admin); how many."""
        return int(self._one(_sql.RETRY_FAILED, (_sql.as_uuid(batch_id, "batch_id"),))["n"])

    def delete_batch(self, batch_id) -> bool:
        return bool(self._one(_sql.DELETE_BATCH, (_sql.as_uuid(batch_id, "batch_id"),))["deleted"])

    def progress_channel(self, batch_id) -> str:
        bid = _sql.as_uuid(batch_id, "batch_id")
        return _sql.channel(bid, self._one(_sql.PROGRESS_CHANNEL, (bid,)))

    @contextlib.contextmanager
    def _listen_connection(self) -> Iterator[psycopg.Connection]:
        # a client on a connection of its own waits on a second one, so that it stays usable meanwhile
        if self._conninfo is not None and self._pinned.get() is None:
            with translated():
                conn = psycopg.connect(self._conninfo, autocommit=True)
            with conn:
                yield conn
        else:
            with self._connection() as conn:
                yield conn

    def _wait(self, batch_id: uuid.UUID, progress: ProgressArg, timeout: Optional[float],
              poll_interval: float) -> BatchStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        reporter = Reporter(progress, batch_id)
        try:
            with self._listen_connection() as conn, translated():
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    raise RagbenchError("Batch.wait() needs a connection outside a transaction: the upload must "
                                        "be committed before the worker can process it, and notifications "
                                        "arrive only between transactions")
                with self._tx_on(conn) as cur:
                    ch = _sql.channel(batch_id, cur.execute(_sql.PROGRESS_CHANNEL, (batch_id,)).fetchone())
                    cur.execute(_sql.listen(ch))
                try:
                    while True:
                        with self._tx_on(conn) as cur:
                            status = _sql.batch_status(batch_id, cur.execute(_sql.BATCH_STATUS, (batch_id,)).fetchone())
                        reporter.update(status)
                        if status.done:
                            return status
                        wait_for = poll_interval
                        if deadline is not None:
                            remaining = deadline - time.monotonic()
                            if remaining <= 0:
                                raise BatchTimeout(f"batch {batch_id} is still {status.status} after {timeout} s "
                                                   f"({status.completed + status.failed}/{status.total_files} files "
                                                   "finished)", status)
                            wait_for = min(wait_for, remaining)
                        if any(True for _ in conn.notifies(timeout=wait_for, stop_after=1)):
                            for _ in conn.notifies(timeout=0):  # one status read for a burst of them
                                pass
                finally:
                    if not conn.closed:
                        with contextlib.suppress(psycopg.Error):
                            with conn.transaction():
                                conn.execute(_sql.unlisten(ch))
                            for _ in conn.notifies(timeout=0):
                                pass
        finally:
            reporter.close()

    # --- chat ---------------------------------------------------------------------------------------

    def create_session(self, title: str = "New Chat", llm_model: Optional[str] = None,
                       search_type: str = "hybrid", temporary: bool = False) -> Session:
        with self._tx() as cur:
            sid = cur.execute(_sql.CREATE_SESSION, _sql.session_args(title, llm_model, search_type, temporary)
                              ).fetchone()["id"]
            return _sql.session(cur.execute(_sql.GET_SESSION, (sid,)).fetchone(), sid)

    def session(self, session) -> Session:
        sid = _sql.as_uuid(session, "session")
        return _sql.session(self._one(_sql.GET_SESSION, (sid,)), sid)

    def list_sessions(self, include_archived: bool = False) -> List[Session]:
        """The role's sessions, most recently updated first."""
        return [_sql.session(r) for r in self._all(_sql.LIST_SESSIONS, (include_archived,))]

    def rename_session(self, session, title: str) -> bool:
        return bool(self._one(_sql.RENAME_SESSION, (_sql.as_uuid(session, "session"), title))["ok"])

    def archive_session(self, session, archived: bool = True) -> bool:
        return bool(self._one(_sql.ARCHIVE_SESSION, (_sql.as_uuid(session, "session"), archived))["ok"])

    def delete_session(self, session) -> bool:
        return bool(self._one(_sql.DELETE_SESSION, (_sql.as_uuid(session, "session"),))["ok"])

    def history(self, session, max_messages: Optional[int] = None) -> List[Message]:
        """The session's messages, oldest first; the last `max_messages` when given."""
        return [_sql.message(r) for r in self._all(_sql.HISTORY, (_sql.as_uuid(session, "session"), max_messages))]

    def append(self, session, role: str, content: str, metadata: Optional[Mapping[str, Any]] = None) -> int:
        """Append a message (role user/assistant/system/tool), creating the session if needed; its id."""
        return int(self._one(_sql.APPEND, _sql.append_args(session, role, content, metadata))["id"])

    def ask(self, session, question: str, k: int = 5) -> Answer:
        """Retrieve with the session's search type, answer with the configured generator, and append
        question and answer to the session (created if needed)."""
        sid = _sql.as_uuid(session, "session")
        return _sql.answer(self._one(_sql.ASK, (sid, question, k))["answer"], sid)

    def delete_message(self, session, message_id: int) -> bool:
        """Delete one message of a session; False if it is not there."""
        row = self._one(_sql.DELETE_MESSAGE, (_sql.as_uuid(session, "session"), message_id))
        return row is not None

    def clear_history(self, session) -> int:
        """Delete the session's messages, keeping the session; how many."""
        with self._tx() as cur:
            return cur.execute(_sql.CLEAR_HISTORY, (_sql.as_uuid(session, "session"),)).rowcount
