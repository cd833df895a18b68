"""ragbench: a Python client for the ragbench PostgreSQL extension (RAG inside PostgreSQL).

    from ragbench import Client
    with Client("postgresql://app@localhost/ragbench") as rag:
        batch = rag.upload(["handbook.pdf"])
        batch.wait(progress=True)
        for hit in rag.search("how do I rotate keys?", k=5):
            print(hit.score, hit.file_name, hit.content[:80])

Adapters: `ragbench.llamaindex` (extra `llamaindex`) and `ragbench.langchain` (extra `langchain`).
"""
from ._sql import files_in
from .aio import AsyncBatch, AsyncClient
from .client import Batch, Client
from .errors import (BatchTimeout, Canceled, ConnectionFailed, InvalidArgument, NotFound, PermissionDenied,
                     RagbenchError, ReadOnly, ServerError)
from .types import Answer, BatchFile, BatchStatus, Document, Message, SearchHit, Session, Source

__version__ = "0.1.0"

__all__ = [
    "Client", "AsyncClient", "Batch", "AsyncBatch", "files_in",
    "SearchHit", "Document", "BatchStatus", "BatchFile", "Session", "Message", "Answer", "Source",
    "RagbenchError", "InvalidArgument", "PermissionDenied", "NotFound", "ConnectionFailed", "Canceled",
    "ReadOnly", "ServerError", "BatchTimeout",
]
