"""Typed results: one dataclass per kind of row the SQL API returns."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional

FINISHED = ("completed", "failed", "partially failed")


def _pick(cls, row: Mapping[str, Any], **extra):
    """Build `cls` from a row mapping, taking only the columns the dataclass declares."""
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in row.items() if k in names}
    values.update(extra)
    return cls(**values)


def _uuid(value) -> Optional[uuid.UUID]:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


@dataclass(frozen=True)
class SearchHit:
    """One chunk found by a search, best first.

    `score` is the leg's own score for `mode='bm25'` (BM25) and `mode='vector'` (cosine similarity) and
    the fused Reciprocal Rank Fusion score for `mode='hybrid'` (and for single-leg searches with a filter,
    which run as a one-legged hybrid search). `bm25_rank`/`vector_rank` are the chunk's 1-based rank in
    each leg, None where that leg did not return it."""
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    file_name: str
    chunk_index: int
    content: str
    score: float
    metadata: Dict[str, Any] = field(default_factory=dict)
    bm25_rank: Optional[int] = None
    vector_rank: Optional[int] = None


@dataclass(frozen=True)
class Document:
    """A row of `rag.documents`."""
    id: uuid.UUID
    file_name: str
    file_type: Optional[str]
    title: Optional[str]
    file_size_bytes: Optional[int]
    chunk_count: int
    uploaded_at: Optional[dt.datetime]
    metadata: Dict[str, Any] = field(default_factory=dict)
    owner: Optional[str] = None
    tenant: Optional[str] = None


@dataclass(frozen=True)
class BatchStatus:
    """`rag.batch_status(batch_id)`: the state of an asynchronous upload."""
    batch_id: uuid.UUID
    status: str  # pending, processing, completed, failed, partially failed
    total_files: int
    pending: int
    processing: int
    completed: int
    failed: int
    chunks_done: int
    chunks_total: int
    percent: float
    created_at: Optional[dt.datetime] = None
    updated_at: Optional[dt.datetime] = None
    errors: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """True once every file is completed or failed."""
        return self.status in FINISHED

    @property
    def ok(self) -> bool:
        """True when every file was ingested."""
        return self.status == "completed"

    @classmethod
    def from_row(cls, batch_id, row: Mapping[str, Any]) -> "BatchStatus":
        row = dict(row)
        row["percent"] = float(row["percent"]) if row.get("percent") is not None else 0.0
        row["errors"] = list(row.get("errors") or [])
        return _pick(cls, row, batch_id=_uuid(batch_id))


@dataclass(frozen=True)
class BatchFile:
    """One file of a batch (`rag.batch_files`)."""
    task_id: uuid.UUID
    file_name: str
    status: str
    attempts: int
    chunks_done: Optional[int]
    chunks_total: Optional[int]
    document_id: Optional[uuid.UUID]
    error: Optional[str]
    updated_at: Optional[dt.datetime] = None


@dataclass(frozen=True)
class Session:
    """A chat session (`rag.list_sessions`)."""
    id: uuid.UUID
    title: str
    llm_model: Optional[str]
    search_type: str
    is_archived: bool
    is_temporary: bool
    message_count: int
    created_at: Optional[dt.datetime] = None
    updated_at: Optional[dt.datetime] = None


@dataclass(frozen=True)
class Message:
    """A chat message (`rag.chat_history`), oldest first."""
    id: int
    role: str  # user, assistant, system, tool
    content: str
    metadata: Dict[str, Any] = field(default_factory=dict)
    created_at: Optional[dt.datetime] = None


@dataclass(frozen=True)
class Source:
    """A chunk an answer was built from."""
    rank: int
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    file_name: str
    chunk_index: int
    score: float

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Source":
        return cls(rank=int(d["rank"]), chunk_id=_uuid(d["chunk_id"]), document_id=_uuid(d["document_id"]),
                   file_name=d["file_name"], chunk_index=int(d["chunk_index"]), score=float(d["score"]))


@dataclass(frozen=True)
class Answer:
    """What `rag.ask` returned: the answer, its sources, the generator and the query that was searched."""
    answer: str
    sources: List[Source]
    model: str
    search_type: str
    search_query: str
    session_id: Optional[uuid.UUID] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], session_id=None) -> "Answer":
        return cls(answer=d.get("answer") or "", sources=[Source.from_json(s) for s in d.get("sources") or []],
                   model=d.get("model") or "", search_type=d.get("search_type") or "",
                   search_query=d.get("search_query") or "",
                   session_id=_uuid(d.get("session_id") or session_id), raw=dict(d))
