"""Progress reporting for `Batch.wait()`: a tqdm bar, a callback, or nothing."""
from __future__ import annotations

import sys
from typing import Callable, Optional, Union

from .types import BatchStatus

ProgressArg = Union[bool, None, Callable[[BatchStatus], object]]


class Reporter:
    """`progress=True`: a tqdm bar counting finished files, with the status and chunk counts beside it;
    a callable: called with every status seen; False/None: silent."""

    def __init__(self, progress: ProgressArg, batch_id, file=None):
        self._callback: Optional[Callable[[BatchStatus], object]] = progress if callable(progress) else None
        self._bar_wanted = progress is True
        self._bar = None
        self._batch_id = batch_id
        self._file = file

    def update(self, status: BatchStatus) -> None:
        if self._callback is not None:
            self._callback(status)
        if not self._bar_wanted:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=status.total_files, unit="file", desc=f"batch {str(self._batch_id)[:8]}",
                             file=self._file or sys.stderr, dynamic_ncols=True)
        self._bar.total = status.total_files
        self._bar.n = status.completed + status.failed
        postfix = f"{status.status}, {status.chunks_done}/{status.chunks_total} chunks"
        if status.failed:
            postfix += f", {status.failed} failed"
        self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
