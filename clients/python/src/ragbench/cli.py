"""`ragbench`: upload, follow, search and ask from the command line.

    ragbench upload DOCS/                  queue a directory's files, follow the batch with a progress bar
    ragbench status BATCH [--files]        a batch's status (and its files)
    ragbench search "query" [--mode bm25]  the best chunks
    ragbench ask SESSION "question"        an answer with its sources (SESSION: a uuid, or "new")
    ragbench documents | history SESSION

The connection: --url, else DATABASE_URL, else libpq's environment (PGHOST, PGPORT, PGUSER, ...).
Exit status: 0 on success, 1 on an error or a batch with failed files, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import uuid
from pathlib import Path
from typing import List, Optional

from . import __version__
from ._sql import files_in
from .client import Client
from .errors import BatchTimeout, RagbenchError
from .types import BatchStatus


def _json_default(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _dump(obj) -> None:
    def plain(o):
        if dataclasses.is_dataclass(o):
            return {f.name: plain(getattr(o, f.name)) for f in dataclasses.fields(o) if f.repr}
        if isinstance(o, list):
            return [plain(x) for x in o]
        return o
    print(json.dumps(plain(obj), default=_json_default, indent=2, ensure_ascii=False))


def _json_arg(text: Optional[str], what: str):
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"ragbench: {what} is not valid JSON: {exc}")
    if not isinstance(value, dict):
        raise SystemExit(f"ragbench: {what} must be a JSON object")
    return value


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _status_line(s: BatchStatus) -> str:
    line = (f"{s.status}: {s.completed}/{s.total_files} files completed, {s.failed} failed, "
            f"{s.chunks_done}/{s.chunks_total} chunks")
    for e in s.errors:
        line += f"\n  {e.get('file_name')}: {e.get('error')}"
    return line


def cmd_upload(rag: Client, args) -> int:
    items: List = []
    for p in args.paths:
        path = Path(p)
        if path.is_dir():
            found = files_in(path, args.pattern)
            if not found:
                print(f"ragbench: no files matching {args.pattern!r} in {path}", file=sys.stderr)
                return 1
            items.extend(found)
        else:
            items.append(path)
    batch = rag.upload(items, metadata=_json_arg(args.metadata, "--metadata"))
    print(batch.id, flush=True)
    if args.no_wait:
        return 0
    try:
        status = batch.wait(progress=not args.quiet, timeout=args.timeout)
    except BatchTimeout as exc:
        print(f"ragbench: {exc.message}", file=sys.stderr)
        return 1
    print(_status_line(status), file=sys.stderr if args.quiet else sys.stdout)
    return 0 if status.ok else 1


def cmd_status(rag: Client, args) -> int:
    status = rag.batch_status(args.batch)
    files = rag.batch_files(args.batch) if args.files else None
    if args.json:
        _dump({"status": dataclasses.asdict(status), **({"files": [dataclasses.asdict(f) for f in files]}
                                                        if files is not None else {})})
        return 0
    print(_status_line(status))
    for f in files or []:
        extra = f" {f.error}" if f.error else ""
        print(f"  {f.status:<10} {f.chunks_done or 0}/{f.chunks_total or 0} chunks  {f.file_name}{extra}")
    return 0


def cmd_search(rag: Client, args) -> int:
    hits = rag.search(args.query, mode=args.mode, k=args.k, filter=_json_arg(args.filter, "--filter"),
                      bm25_weight=args.bm25_weight, vector_weight=args.vector_weight)
    if args.json:
        _dump(hits)
        return 0
    for h in hits:
        ranks = " ".join(r for r in (f"bm25#{h.bm25_rank}" if h.bm25_rank else "",
                                     f"vec#{h.vector_rank}" if h.vector_rank else "") if r)
        print(f"{h.score:9.4f}  {ranks:<16} {h.file_name}#{h.chunk_index}  {_one_line(h.content, 80)}")
    if not hits:
        print("(no results)", file=sys.stderr)
    return 0


def _session_arg(rag: Client, text: str, title: str):
    if text == "new":
        session = rag.create_session(title=_one_line(title, 60) or "New Chat")
        print(f"session {session.id}", file=sys.stderr)
        return session.id
    return text


def cmd_ask(rag: Client, args) -> int:
    answer = rag.ask(_session_arg(rag, args.session, args.question), args.question, k=args.k)
    if args.json:
        _dump(answer)
        return 0
    print(answer.answer)
    if answer.sources:
        print("\nSources:")
        for s in answer.sources:
            print(f"  [{s.rank}] {s.file_name}#{s.chunk_index}  ({s.score:.4f})")
    return 0


def cmd_documents(rag: Client, args) -> int:
    docs = rag.documents()
    if args.json:
        _dump(docs)
        return 0
    for d in docs:
        print(f"{d.id}  {d.chunk_count:>5} chunks  {d.file_type or '?':<9} {d.file_name}")
    return 0


def cmd_history(rag: Client, args) -> int:
    messages = rag.history(args.session)
    if args.json:
        _dump(messages)
        return 0
    for m in messages:
        print(f"{m.role}: {m.content}\n")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ragbench", description="ragbench client: RAG inside PostgreSQL.",
                                epilog="Connection: --url, else DATABASE_URL, else libpq's environment "
                                       "(PGHOST, PGPORT, PGUSER, PGDATABASE, ...).")
    p.add_argument("--url", default=None, help="connection string (default: $DATABASE_URL, else libpq environment)")
    p.add_argument("--tenant", default=None, help="act for this tenant (rag.set_tenant)")
    p.add_argument("--version", action="version", version=f"ragbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("upload", help="queue files or directories for the background worker and follow the batch")
    up.add_argument("paths", nargs="+", metavar="PATH", help="files, or directories (their files, recursively)")
    up.add_argument("--pattern", default="**/*", help="glob for the files of a directory (default **/*)")
    up.add_argument("--metadata", help="JSON object given to every document")
    up.add_argument("--no-wait", action="store_true", help="print the batch id and return")
    up.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    up.set_defaults(func=cmd_upload)

    st = sub.add_parser("status", help="a batch's status")
    st.add_argument("batch")
    st.add_argument("--files", action="store_true", help="also each file's state")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    se = sub.add_parser("search", help="the best chunks for a query")
    se.add_argument("query")
    se.add_argument("--mode", choices=["hybrid", "bm25", "vector"], default="hybrid")
    se.add_argument("-k", type=int, default=10)
    se.add_argument("--filter", help="JSON object: metadata the chunks must contain")
    se.add_argument("--bm25-weight", type=float, default=None)
    se.add_argument("--vector-weight", type=float, default=None)
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_search)

    ask = sub.add_parser("ask", help="ask a question in a chat session")
    ask.add_argument("session", help='session id, or "new" to start one')
    ask.add_argument("question")
    ask.add_argument("-k", type=int, default=5)
    ask.add_argument("--json", action="store_true")
    ask.set_defaults(func=cmd_ask)

    docs = sub.add_parser("documents", help="the documents you see")
    docs.add_argument("--json", action="store_true")
    docs.set_defaults(func=cmd_documents)

    hist = sub.add_parser("history", help="a chat session's messages")
    hist.add_argument("session")
    hist.add_argument("--json", action="store_true")
    hist.set_defaults(func=cmd_history)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    url = args.url if args.url is not None else os.environ.get("DATABASE_URL", "")
    try:
        with Client(url, tenant=args.tenant) as rag:
            return args.func(rag, args)
    except RagbenchError as exc:
        print(f"ragbench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
