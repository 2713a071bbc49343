"""Event journal of a book: the append-only list of its accepted commands, in memory and optionally on disk.

Rejected commands change nothing, so replaying the accepted ones into an empty book with the same config
rebuilds the book exactly (orders, queue order, and the set of ids it has seen): `trading.book.replay`.

File layout: one JSON header line {"format": "commodex.book.journal", "version": 1, "config": {...}} then
fixed 56-byte little-endian records of COMMAND_DTYPE. A file whose tail is not a whole record (a torn write)
is refused on open rather than silently shortened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import msgspec
import numpy as np

from trading.book_types import COMMAND_DTYPE, BookConfig

if TYPE_CHECKING:
    from trading.book import OrderBook

FORMAT = "commodex.book.journal"
VERSION = 1
_DISK_DTYPE = COMMAND_DTYPE.newbyteorder("<")


class JournalHeader(msgspec.Struct, frozen=True):
    format: str
    version: int
    config: BookConfig


class Journal:
    def __init__(self, config: BookConfig, path: Path | str | None = None) -> None:
        """A new, empty journal; with `path`, the file is created (an existing one is refused)."""
        self.config = config
        self.path = Path(path) if path is not None else None
        self._chunks: list[np.ndarray] = []
        self._n = 0
        self._fh: BinaryIO | None = None
        if self.path is not None:
            self._fh = self.path.open("xb")
            self._fh.write(msgspec.json.encode(JournalHeader(FORMAT, VERSION, config)) + b"\n")
            self._fh.flush()

    @classmethod
    def open(cls, path: Path | str) -> Journal:
        """Load a journal file; further appends go to the end of the same file."""
        p = Path(path)
        data = p.read_bytes()
        nl = data.find(b"\n")
        if nl < 0:
            raise ValueError(f"{p}: no journal header")
        header = msgspec.json.decode(data[:nl], type=JournalHeader)
        if header.format != FORMAT or header.version != VERSION:
            raise ValueError(f"{p}: not a {FORMAT} v{VERSION} file ({header.format} v{header.version})")
        body = data[nl + 1:]
        if len(body) % _DISK_DTYPE.itemsize:
            raise ValueError(f"{p}: torn tail ({len(body) % _DISK_DTYPE.itemsize} bytes after the last whole record)")
        journal = cls(header.config)
        recs = np.frombuffer(body, dtype=_DISK_DTYPE).astype(COMMAND_DTYPE)
        if recs.shape[0]:
            journal._chunks.append(recs)
            journal._n = recs.shape[0]
        journal.path = p
        journal._fh = p.open("ab")
        return journal

    def append(self, commands: np.ndarray) -> None:
        if commands.shape[0] == 0:
            return
        recs = np.array(commands, dtype=COMMAND_DTYPE, copy=True)
        self._chunks.append(recs)
        self._n += recs.shape[0]
        if self._fh is not None:
            self._fh.write(recs.astype(_DISK_DTYPE).tobytes())
            self._fh.flush()

    def commands(self) -> np.ndarray:
        """Every accepted command so far, oldest first (COMMAND_DTYPE)."""
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, COMMAND_DTYPE)

    def __len__(self) -> int:
        return self._n

    def rebuild(self, impl: Literal["numba", "python"] = "numba") -> OrderBook:
        """A new book holding exactly what the journaled book held (same as trading.book.replay)."""
        from trading.book import replay  # book.py imports this module

        return replay(self, impl)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
