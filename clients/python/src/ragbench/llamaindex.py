"""LlamaIndex adapters (`pip install ragbench[llamaindex]`): a retriever over rag.*_search and a chat
store over the rag.chat_* functions.

    from ragbench import Client
    from ragbench.llamaindex import RagbenchRetriever, RagbenchChatStore
    rag = Client(url)
    retriever = RagbenchRetriever(rag, mode="hybrid", k=5, filter={"team": "db"})
    nodes = retriever.retrieve("how do I tune HNSW?")   # NodeWithScore, ranks in node.metadata
    memory_store = RagbenchChatStore(rag)                # e.g. ChatMemoryBuffer(chat_store=...)
"""
from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Dict, List, Optional, Set

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.llms import ChatMessage, MessageRole
    from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode
    from llama_index.core.storage.chat_store.base import BaseChatStore
except ImportError as exc:  # pragma: no cover
    raise ImportError("ragbench.llamaindex needs llama-index-core: pip install 'ragbench[llamaindex]'") from exc

from . import _sql
from .aio import AsyncClient
from .client import Client
from .types import Message, SearchHit

# Keys that are not UUIDs name a session whose id is derived from the key (and whose title is the key).
KEY_NAMESPACE = uuid.UUID("5f0c6f4e-3c38-4e0b-9d54-6a2a6c0b7f21")
META = "llama_index"  # where a message's LlamaIndex role and additional_kwargs are kept
EMPTY = "[no text]"   # rag.chat_append refuses empty content (e.g. an assistant message with tool calls only)

_TO_DB = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system", "tool": "tool",
          "function": "tool", "chatbot": "assistant", "model": "assistant"}
_FROM_DB = {"user": MessageRole.USER, "assistant": MessageRole.ASSISTANT, "system": MessageRole.SYSTEM,
            "tool": MessageRole.TOOL}


def hit_to_node(hit: SearchHit, mode: str) -> NodeWithScore:
    """A search hit as a LlamaIndex node: id = chunk id, the document as the SOURCE relationship, and the
    document's name, the chunk's position and each leg's rank in the metadata (beside the chunk's own)."""
    metadata: Dict[str, Any] = dict(hit.metadata)
    metadata.update(document_id=str(hit.document_id), file_name=hit.file_name, chunk_index=hit.chunk_index,
                    bm25_rank=hit.bm25_rank, vector_rank=hit.vector_rank, search_mode=mode)
    hidden = ["document_id", "chunk_index", "bm25_rank", "vector_rank", "search_mode"]
    node = TextNode(id_=str(hit.chunk_id), text=hit.content, metadata=metadata,
                    excluded_llm_metadata_keys=hidden, excluded_embed_metadata_keys=hidden,
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=str(hit.document_id),
                                                                            metadata={"file_name": hit.file_name})})
    return NodeWithScore(node=node, score=hit.score)


class RagbenchRetriever(BaseRetriever):
    """Retrieves chunks with `rag.hybrid_search` (or `rag.bm25_search` / `rag.vector_search`).

    `client` is a `ragbench.Client` (retrieve/aretrieve) or an `AsyncClient` (aretrieve only)."""

    def __init__(self, client: Any, *, mode: str = "hybrid", k: int = 10,
                 filter: Optional[Dict[str, Any]] = None, bm25_weight: Optional[float] = None, vector_weight: Optional[float] = None,
                 **kwargs: Any):
        if not isinstance(client, (Client, AsyncClient)):
            raise TypeError(f"client must be a ragbench.Client or AsyncClient, not {type(client).__name__}")
        _sql.search("", mode, k, filter, bm25_weight, vector_weight)  # refuse bad arguments now
        self.client = client
        self.mode = mode
        self.k = k
        self.filter = filter
        self.bm25_weight = bm25_weight
        self.vector_weight = vector_weight
        super().__init__(**kwargs)

    def _search_args(self, query_bundle: QueryBundle) -> Dict[str, Any]:
        return dict(query=query_bundle.query_str, mode=self.mode, k=self.k, filter=self.filter,
                    bm25_weight=self.bm25_weight, vector_weight=self.vector_weight)

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        if isinstance(self.client, AsyncClient):
            raise TypeError("this retriever has an AsyncClient: use aretrieve()")
        return [hit_to_node(h, self.mode) for h in self.client.search(**self._search_args(query_bundle))]

    async def _aretrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        if isinstance(self.client, AsyncClient):
            hits = await self.client.search(**self._search_args(query_bundle))
            return [hit_to_node(h, self.mode) for h in hits]
        return await asyncio.to_thread(self._retrieve, query_bundle)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _to_db(message: ChatMessage) -> tuple:
    role = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
    text = message.content or ""
    meta = {"role": role, "additional_kwargs": _jsonable(message.additional_kwargs or {})}
    if not text.strip():
        meta["empty"] = True
        text = EMPTY
    return _TO_DB.get(role, "user"), text, {META: meta}


def _from_db(m: Message) -> ChatMessage:
    meta = m.metadata.get(META) if isinstance(m.metadata.get(META), dict) else {}
    try:
        role = MessageRole(meta["role"]) if "role" in meta else _FROM_DB[m.role]
    except (ValueError, KeyError):
        role = _FROM_DB.get(m.role, MessageRole.USER)
    content = "" if meta.get("empty") else m.content
    return ChatMessage(role=role, content=content, additional_kwargs=dict(meta.get("additional_kwargs") or {}))


class RagbenchChatStore(BaseChatStore):
    """A LlamaIndex chat store whose keys are ragbench chat sessions.

    A key that is a UUID is that session (e.g. one made by `Client.create_session`, or used by `rag.ask`);
    any other key names a session whose id is derived from it (uuid5) and whose title is the key.
    Messages keep their LlamaIndex role and `additional_kwargs` in the message metadata."""

    _client: Client = PrivateAttr()
    _titled: Set[uuid.UUID] = PrivateAttr(default_factory=set)

    def __init__(self, client: Client, **kwargs: Any):
        if not isinstance(client, Client):
            raise TypeError(f"client must be a ragbench.Client, not {type(client).__name__}")
        super().__init__(**kwargs)
        self._client = client

    @classmethod
    def class_name(cls) -> str:
        return "RagbenchChatStore"

    @staticmethod
    def session_id(key: str) -> uuid.UUID:
        """The session id a key stands for."""
        try:
            return uuid.UUID(str(key))
        except ValueError:
            return uuid.uuid5(KEY_NAMESPACE, str(key))

    def _title(self, key: str, sid: uuid.UUID) -> None:
        if sid not in self._titled and str(sid) != str(key).lower():
            self._client.rename_session(sid, str(key)[:1024] or "New Chat")
        self._titled.add(sid)

    def _append(self, key: str, message: ChatMessage) -> None:
        role, text, meta = _to_db(message)
        self._client.append(self.session_id(key), role, text, meta)

    def set_messages(self, key: str, messages: List[ChatMessage]) -> None:
        sid = self.session_id(key)
        with self._client.transaction():
            self._client.clear_history(sid)
            for m in messages:
                self._append(key, m)
            if messages:
                self._title(key, sid)

    def get_messages(self, key: str) -> List[ChatMessage]:
        return [_from_db(m) for m in self._client.history(self.session_id(key))]

    def add_message(self, key: str, message: ChatMessage) -> None:
        with self._client.transaction():
            self._append(key, message)
            self._title(key, self.session_id(key))

    def delete_messages(self, key: str) -> Optional[List[ChatMessage]]:
        sid = self.session_id(key)
        with self._client.transaction():
            messages = self._client.history(sid)
            self._client.delete_session(sid)
        self._titled.discard(sid)
        return [_from_db(m) for m in messages] or None

    def delete_message(self, key: str, idx: int) -> Optional[ChatMessage]:
        sid = self.session_id(key)
        with self._client.transaction():
            messages = self._client.history(sid)
            if not -len(messages) <= idx < len(messages):
                return None
            target = messages[idx]
            self._client.delete_message(sid, target.id)
        return _from_db(target)

    def delete_last_message(self, key: str) -> Optional[ChatMessage]:
        return self.delete_message(key, -1)

    def get_keys(self) -> List[str]:
        keys = []
        for s in self._client.list_sessions(include_archived=True):
            derived = s.title and uuid.uuid5(KEY_NAMESPACE, s.title) == s.id
            keys.append(s.title if derived else str(s.id))
        return keys


__all__ = ["RagbenchRetriever", "RagbenchChatStore", "hit_to_node"]
