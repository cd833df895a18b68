"""What the sync and async clients share: argument checks, the SQL they send, and rows → dataclasses.

Every statement names its columns and casts its parameters, so the client does not depend on the
connection's row factory or on how psycopg guesses a parameter's type."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from psycopg import sql
from psycopg.types.json import Jsonb

from .errors import InvalidArgument, NotFound
from .types import Answer, BatchFile, BatchStatus, Document, Message, SearchHit, Session, _pick

MODES = ("hybrid", "bm25", "vector")
ROLES = ("user", "assistant", "system", "tool")

FileItem = Union[str, "os.PathLike[str]", Tuple[str, Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]]]

_HIT_COLUMNS = "chunk_id, document_id, file_name, chunk_index, content, score, metadata"

DOCUMENTS = ("SELECT id, file_name, file_type, title, file_size_bytes, chunk_count, uploaded_at, metadata, owner, tenant "
             "FROM rag.documents ORDER BY uploaded_at, file_name, id")
DELETE_DOCUMENT = "SELECT rag.delete_document(%s::uuid) AS deleted"
INGEST = "SELECT rag.ingest_document(%s::text, %s::bytea, %s::jsonb) AS id"
UPLOAD = "SELECT rag.upload(%s::text[], %s::bytea[], %s::jsonb) AS id"
BATCH_STATUS = ("SELECT status, total_files, pending, processing, completed, failed, chunks_done, chunks_total, "
                "percent, created_at, updated_at, errors FROM rag.batch_status(%s::uuid)")
BATCH_FILES = ("SELECT task_id, file_name, status, attempts, chunks_done, chunks_total, document_id, error, updated_at "
               "FROM rag.batch_files(%s::uuid)")
PROGRESS_CHANNEL = "SELECT rag.progress_channel(%s::uuid) AS channel"
RETRY_FAILED = "SELECT rag.retry_failed(%s::uuid) AS n"
DELETE_BATCH = "SELECT rag.delete_batch(%s::uuid) AS deleted"
SET_TENANT = "SELECT rag.set_tenant(%s::text)"

_SESSION_COLUMNS = ("id, title, llm_model, search_type, is_archived, is_temporary, message_count, created_at, "
                    "updated_at")
CREATE_SESSION = "SELECT rag.create_session(%s::text, %s::text, %s::text, %s::boolean) AS id"
LIST_SESSIONS = f"SELECT {_SESSION_COLUMNS} FROM rag.list_sessions(%s::boolean)"
GET_SESSION = f"SELECT {_SESSION_COLUMNS} FROM rag.list_sessions(true) WHERE id = %s::uuid"
RENAME_SESSION = "SELECT rag.rename_session(%s::uuid, %s::text) AS ok"
ARCHIVE_SESSION = "SELECT rag.archive_session(%s::uuid, %s::boolean) AS ok"
DELETE_SESSION = "SELECT rag.delete_session(%s::uuid) AS ok"
HISTORY = "SELECT id, role, content, metadata, created_at FROM rag.chat_history(%s::uuid, %s::int)"
APPEND = "SELECT rag.chat_append(%s::uuid, %s::text, %s::text, %s::jsonb) AS id"
ASK = "SELECT rag.ask(%s::uuid, %s::text, %s::int) AS answer"
# Row-level security limits both to the caller's own messages (rag_reader may delete its messages).
DELETE_MESSAGE = "DELETE FROM rag.chat_messages WHERE session_id = %s::uuid AND id = %s::bigint RETURNING id"
CLEAR_HISTORY = "DELETE FROM rag.chat_messages WHERE session_id = %s::uuid"


def listen(channel: str) -> sql.Composed:
    return sql.SQL("LISTEN {}").format(sql.Identifier(channel))


def unlisten(channel: str) -> sql.Composed:
    return sql.SQL("UNLISTEN {}").format(sql.Identifier(channel))


# --- arguments ------------------------------------------------------------------------------------

def as_uuid(value: Any, what: str) -> uuid.UUID:
    """A uuid from a UUID, its text, or an object with an `id` (Session, Batch, Document)."""
    if isinstance(value, uuid.UUID):
        return value
    inner = getattr(value, "id", None)
    if isinstance(inner, uuid.UUID):
        return inner
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"{what} must be a UUID, got {value!r}") from None


def jsonb(value: Optional[Mapping[str, Any]], what: str, default: Optional[dict] = None) -> Optional[Jsonb]:
    if value is None:
        return None if default is None else Jsonb(default)
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{what} must be a dict (a JSON object), got {type(value).__name__}")
    return Jsonb(dict(value))


def search(query: str, mode: str, k: int, filter: Optional[Mapping[str, Any]], bm25_weight: Optional[float],
           vector_weight: Optional[float], rrf_k: int = 60, candidates: Optional[int] = None,
           fusion: str = "convex") -> Tuple[str, tuple, Optional[str]]:
    """The statement of a search, its parameters, and which leg's rank the row position is (single-leg
    searches without a filter return no rank columns)."""
    if mode not in MODES:
        raise InvalidArgument(f"unknown search mode {mode!r}", hint="Use 'hybrid', 'bm25' or 'vector'.")
    if not isinstance(query, str):
        raise InvalidArgument(f"query must be a string, got {type(query).__name__}")
    if isinstance(k, bool) or not isinstance(k, int):
        raise InvalidArgument(f"k must be an integer, got {k!r}")
    f = jsonb(filter, "filter")
    if mode == "hybrid" or f is not None:
        # a filter is applied inside both legs of rag.hybrid_search; a single leg with a filter is a
        # hybrid search whose other leg has weight 0 (it is then not run at all)
        if mode == "bm25":
            bm25_weight, vector_weight = 1.0, 0.0
        elif mode == "vector":
            bm25_weight, vector_weight = 0.0, 1.0
        return (f"SELECT {_HIT_COLUMNS}, bm25_rank, vector_rank FROM rag.hybrid_search("
                "%s::text, %s::int, %s::jsonb, %s::float8, %s::float8, %s::int, %s::int, %s::text)",
                (query, k, f, None if bm25_weight is None else float(bm25_weight),
                 None if vector_weight is None else float(vector_weight), rrf_k, candidates, fusion), None)
    fn = "rag.bm25_search" if mode == "bm25" else "rag.vector_search"
    return f"SELECT {_HIT_COLUMNS} FROM {fn}(%s::text, %s::int)", (query, k), f"{mode}_rank"


def hits(rows: Sequence[Mapping[str, Any]], rank_column: Optional[str]) -> List[SearchHit]:
    out = []
    for position, row in enumerate(rows, start=1):
        row = dict(row)
        row["metadata"] = row.get("metadata") or {}
        if rank_column:
            row[rank_column] = position
        out.append(_pick(SearchHit, row))
    return out


def _read(name: str, content: Any) -> Tuple[str, bytes]:
    if isinstance(content, (bytes, bytearray, memoryview)):
        return name, bytes(content)
    if isinstance(content, str):
        return name, content.encode("utf-8")
    if isinstance(content, os.PathLike):
        return name, _read_path(Path(content))
    raise InvalidArgument(f"content of {name!r} must be bytes, str or a path, got {type(content).__name__}")


def _read_path(path: Path) -> bytes:
    if path.is_dir():
        raise InvalidArgument(f"{path} is a directory", hint="Pass its files, e.g. ragbench.files_in(directory).")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from exc


def files(items: Union[FileItem, Iterable[FileItem]]) -> Tuple[List[str], List[bytes]]:
    """Names and contents for rag.upload from paths and (name, content) pairs; content is bytes, text
    (sent as UTF-8) or a path to read."""
    if isinstance(items, (str, os.PathLike)) or (isinstance(items, tuple) and len(items) == 2
                                                 and isinstance(items[0], str)
                                                 and not isinstance(items[1], (str, os.PathLike, tuple))):
        items = [items]
    names, contents = [], []
    for item in items:
        if isinstance(item, tuple):
            if len(item) != 2 or not isinstance(item[0], str):
                raise InvalidArgument(f"a file must be a path or a (name, content) pair, got {item!r}"[:200])
            name, data = _read(*item)
        elif isinstance(item, (str, os.PathLike)):
            path = Path(item)
            name, data = path.name, _read_path(path)
        else:
            raise InvalidArgument(f"a file must be a path or a (name, content) pair, got {type(item).__name__}")
        names.append(name)
        contents.append(data)
    if not names:
        raise InvalidArgument("no files to upload")
    return names, contents


def files_in(directory: Union[str, "os.PathLike[str]"], pattern: str = "**/*") -> List[Tuple[str, Path]]:
    """The regular files under `directory` matching `pattern` (hidden ones skipped), sorted, each as
    (its path relative to `directory`, its path): ready for `Client.upload`."""
    root = Path(directory)
    if not root.is_dir():
        raise InvalidArgument(f"{root} is not a directory")
    out = []
    for p in sorted(root.glob(pattern)):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append((rel.as_posix(), p))
    return out


def session_args(title: str, llm_model: Optional[str], search_type: str, temporary: bool) -> tuple:
    if search_type not in MODES:
        raise InvalidArgument(f"unknown search_type {search_type!r}", hint="Use 'hybrid', 'bm25' or 'vector'.")
    return (title, llm_model, search_type, bool(temporary))


def append_args(session: Any, role: str, content: str, metadata: Optional[Mapping[str, Any]]) -> tuple:
    if role not in ROLES:
        raise InvalidArgument(f"unknown role {role!r}", hint="Use user, assistant, system or tool.")
    if not isinstance(content, str):
        raise InvalidArgument(f"message content must be a string, got {type(content).__name__}")
    return (as_uuid(session, "session"), role, content, jsonb(metadata, "metadata", default={}))


# --- rows -------------------------------------------------------------------------------------------

def document(row: Mapping[str, Any]) -> Document:
    row = dict(row)
    row["metadata"] = row.get("metadata") or {}
    row["chunk_count"] = int(row.get("chunk_count") or 0)
    return _pick(Document, row)


def batch_status(batch_id: uuid.UUID, row: Optional[Mapping[str, Any]]) -> BatchStatus:
    if row is None:
        raise NotFound(f"batch {batch_id} does not exist or is not visible to this role",
                       hint="Batches are visible to the role that uploaded them (and to rag_admin), "
                            "in the tenant they were uploaded in.")
    return BatchStatus.from_row(batch_id, row)


def channel(batch_id: uuid.UUID, row: Optional[Mapping[str, Any]]) -> str:
    if row is None or row["channel"] is None:
        batch_status(batch_id, None)
    return row["channel"]


def batch_file(row: Mapping[str, Any]) -> BatchFile:
    return _pick(BatchFile, row)


def session(row: Optional[Mapping[str, Any]], session_id: Any = None) -> Session:
    if row is None:
        raise NotFound(f"chat session {session_id} does not exist or is not visible to this role")
    return _pick(Session, row)


def message(row: Mapping[str, Any]) -> Message:
    row = dict(row)
    row["metadata"] = row.get("metadata") or {}
    return _pick(Message, row)


def answer(value: Optional[Dict[str, Any]], session_id: uuid.UUID) -> Answer:
    if value is None:
        raise NotFound(f"rag.ask returned no answer for session {session_id}")
    return Answer.from_json(value, session_id=session_id)
