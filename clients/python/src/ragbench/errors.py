"""The client's exceptions.

Every error the client raises is a `RagbenchError`. Errors that come from the server keep what the
server said: `message` (its primary message), `sqlstate`, `detail` and `hint`; the psycopg exception is
chained as `__cause__`. Subclasses also derive from the matching built-in exception, so
`except ValueError` or `except PermissionError` work as one would expect.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import psycopg


class RagbenchError(Exception):
    """Base class of every error the ragbench client raises."""

    def __init__(self, message: str, *, sqlstate: Optional[str] = None, detail: Optional[str] = None,
                 hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint

    def __str__(self) -> str:
        text = self.message
        if self.sqlstate:
            text = f"{text} (SQLSTATE {self.sqlstate})"
        if self.detail:
            text = f"{text}\nDETAIL: {self.detail}"
        if self.hint:
            text = f"{text}\nHINT: {self.hint}"
        return text


class InvalidArgument(RagbenchError, ValueError):
    """An argument was refused: by the client before sending it, or by the server (SQLSTATE class 22)."""


class PermissionDenied(RagbenchError, PermissionError):
    """The connected role lacks the right (SQLSTATE 42501): grant it rag_reader, rag_writer or rag_admin."""


class NotFound(RagbenchError, LookupError):
    """The object does not exist, or row-level security hides it from the connected role."""


class ConnectionFailed(RagbenchError, ConnectionError):
    """The server could not be reached, or the connection was lost (SQLSTATE class 08, 57P)."""


class Canceled(RagbenchError):
    """The statement was canceled or hit `statement_timeout` (SQLSTATE 57014)."""


class ReadOnly(RagbenchError):
    """A write was sent to a read-only server, e.g. a hot standby (SQLSTATE 25006)."""


class ServerError(RagbenchError):
    """Any other error reported by the server."""


class BatchTimeout(RagbenchError, TimeoutError):
    """`Batch.wait()` gave up before the batch finished; `status` is the last status seen."""

    def __init__(self, message: str, status=None):
        super().__init__(message)
        self.status = status


def _class_for(sqlstate: Optional[str], exc: psycopg.Error) -> type:
    if sqlstate is None:
        return ConnectionFailed if isinstance(exc, psycopg.OperationalError) else ServerError
    if sqlstate == "42501":
        return PermissionDenied
    if sqlstate.startswith("22"):  # data exceptions: the extension's own refusals of an argument
        return InvalidArgument
    if sqlstate.startswith("08") or sqlstate.startswith("57P"):
        return ConnectionFailed
    if sqlstate == "57014":
        return Canceled
    if sqlstate == "25006":
        return ReadOnly
    return ServerError


def from_psycopg(exc: psycopg.Error) -> RagbenchError:
    """The client's error for a psycopg error, keeping the server's message, SQLSTATE, detail and hint."""
    diag = getattr(exc, "diag", None)
    sqlstate = getattr(exc, "sqlstate", None) or (diag.sqlstate if diag else None)
    message = (diag.message_primary if diag else None) or str(exc).strip() or type(exc).__name__
    detail = diag.message_detail if diag else None
    hint = diag.message_hint if diag else None
    cls = _class_for(sqlstate, exc)
    return cls(message, sqlstate=sqlstate, detail=detail, hint=hint)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Re-raise psycopg errors as the client's own, chained to the original."""
    try:
        yield
    except psycopg.Error as exc:
        raise from_psycopg(exc) from exc
