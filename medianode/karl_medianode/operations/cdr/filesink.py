"""The CDR file: JSON lines appended to `cdr.path`, fsync'ed per batch (blocking: run it in a thread).

The file is reopened when it was moved or deleted (logrotate's default `create` mode), and a line left
unfinished by a failed write (disk full) is ended before the next batch, so every record stays one line.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class FileSink:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._unclean = False

    def open(self) -> None:
        """Create the directory and open the file for appending; raises OSError."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)

    def _reopen_if_moved(self) -> None:
        if self._fd is None:
            return
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            self.close()
            return
        opened = os.fstat(self._fd)
        if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
            self.close()

    def _ends_cleanly(self) -> bool:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        return size == 0 or os.pread(self._fd, 1, size - 1) == b"\n"

    def append(self, lines: list[bytes]) -> None:
        """Append whole lines and fsync; raises OSError (the caller counts and logs it)."""
        if not lines:
            return
        self._reopen_if_moved()
        self.open()
        assert self._fd is not None
        data = b"".join(lines)
        if self._unclean and not self._ends_cleanly():
            data = b"\n" + data
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError:
            self._unclean = True
            raise
        self._unclean = False

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
