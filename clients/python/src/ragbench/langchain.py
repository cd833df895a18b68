"""LangChain adapters (`pip install ragbench[langchain]`): a retriever over rag.*_search and a chat
message history over a ragbench chat session.

    from ragbench import Client
    from ragbench.langchain import RagbenchRetriever, RagbenchChatMessageHistory
    rag = Client(url)
    docs = RagbenchRetriever(client=rag, k=5).invoke("how do I tune HNSW?")
    history = RagbenchChatMessageHistory(rag, session_id)   # e.g. for RunnableWithMessageHistory
"""
from __future__ import annotations

import uuid
from typing import Any, Dict, List, Optional, Sequence

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.documents import Document
    from langchain_core.messages import (AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage,
                                         message_to_dict, messages_from_dict)
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict, field_validator
except ImportError as exc:  # pragma: no cover
    raise ImportError("ragbench.langchain needs langchain-core: pip install 'ragbench[langchain]'") from exc

from . import _sql
from .aio import AsyncClient
from .client import Client
from .types import Message, SearchHit

META = "langchain"   # where a message's full LangChain form is kept
EMPTY = "[no text]"  # rag.chat_append refuses empty content (e.g. an AI message with tool calls only)
_ROLE_OF_TYPE = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}


def hit_to_document(hit: SearchHit, mode: str) -> Document:
    """A search hit as a LangChain Document: id = chunk id; the chunk's metadata plus document_id,
    file_name, chunk_index, score and each leg's rank."""
    metadata: Dict[str, Any] = dict(hit.metadata)
    metadata.update(chunk_id=str(hit.chunk_id), document_id=str(hit.document_id), file_name=hit.file_name,
                    chunk_index=hit.chunk_index, score=hit.score, bm25_rank=hit.bm25_rank,
                    vector_rank=hit.vector_rank, search_mode=mode)
    return Document(id=str(hit.chunk_id), page_content=hit.content, metadata=metadata)


class RagbenchRetriever(BaseRetriever):
    """Retrieves chunks with `rag.hybrid_search` (or `rag.bm25_search` / `rag.vector_search`).

    `client` is a `ragbench.Client` (invoke/ainvoke) or an `AsyncClient` (ainvoke only)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Any
    mode: str = "hybrid"
    k: int = 10
    filter: Optional[Dict[str, Any]] = None
    bm25_weight: Optional[float] = None
    vector_weight: Optional[float] = None

    @field_validator("client")
    @classmethod
    def _check_client(cls, v):
        if not isinstance(v, (Client, AsyncClient)):
            raise ValueError(f"client must be a ragbench.Client or AsyncClient, not {type(v).__name__}")
        return v

    @field_validator("mode")
    @classmethod
    def _check_mode(cls, v):
        if v not in _sql.MODES:
            raise ValueError(f"unknown search mode {v!r}: use 'hybrid', 'bm25' or 'vector'")
        return v

    def _search_args(self, query: str) -> Dict[str, Any]:
        return dict(query=query, mode=self.mode, k=self.k, filter=self.filter, bm25_weight=self.bm25_weight,
                    vector_weight=self.vector_weight)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> List[Document]:
        if isinstance(self.client, AsyncClient):
            raise TypeError("this retriever has an AsyncClient: use ainvoke()")
        return [hit_to_document(h, self.mode) for h in self.client.search(**self._search_args(query))]

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun) -> List[Document]:
        if isinstance(self.client, AsyncClient):
            return [hit_to_document(h, self.mode) for h in await self.client.search(**self._search_args(query))]
        return await super()._aget_relevant_documents(query, run_manager=run_manager)


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def _to_db(message: BaseMessage) -> tuple:
    role = _ROLE_OF_TYPE.get(message.type)
    if role is None:  # ChatMessage(role=...)
        role = getattr(message, "role", "user")
        role = role if role in _sql.ROLES else "user"
    text = _text(message)
    return role, text if text.strip() else EMPTY, {META: message_to_dict(message)}


def _from_db(m: Message) -> BaseMessage:
    stored = m.metadata.get(META)
    if isinstance(stored, dict):
        try:
            return messages_from_dict([stored])[0]
        except (KeyError, ValueError, TypeError):
            pass
    # a message written by other means (rag.ask, rag.chat_append, another framework)
    kwargs = {"content": m.content, "id": str(m.id)}
    if m.role == "user":
        return HumanMessage(**kwargs)
    if m.role == "assistant":
        return AIMessage(response_metadata={"ragbench": m.metadata}, **kwargs)
    if m.role == "system":
        return SystemMessage(**kwargs)
    return ChatMessage(role=m.role, **kwargs)


class RagbenchChatMessageHistory(BaseChatMessageHistory):
    """The messages of one ragbench chat session (created on the first message if it does not exist).
    LangChain messages round-trip exactly (their full form is kept in the message metadata); messages
    written by `rag.ask` read as HumanMessage/AIMessage, the answer's sources in `response_metadata`."""

    def __init__(self, client: Client, session_id: Any):
        if not isinstance(client, Client):
            raise TypeError(f"client must be a ragbench.Client, not {type(client).__name__}")
        self.client = client
        self.session_id: uuid.UUID = _sql.as_uuid(session_id, "session_id")

    @property
    def messages(self) -> List[BaseMessage]:  # type: ignore[override]
        return [_from_db(m) for m in self.client.history(self.session_id)]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        with self.client.transaction():
            for message in messages:
                role, text, meta = _to_db(message)
                self.client.append(self.session_id, role, text, meta)

    def clear(self) -> None:
        self.client.clear_history(self.session_id)


__all__ = ["RagbenchRetriever", "RagbenchChatMessageHistory", "hit_to_document"]
