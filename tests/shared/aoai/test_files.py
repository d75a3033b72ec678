"""File uploads: parts are full-sized whatever the stream hands out (no server needed)."""

from __future__ import annotations

import io
from typing import Any

from shared.aoai import files as aoai_files


class _TrickleStream(io.RawIOBase):
    """Returns at most 7 bytes per read, like a slow socket."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._inner.read(min(7, len(buffer)))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_upload_parts_are_full_sized_even_from_short_reads() -> None:
    data = bytes(range(256)) * 4
    parts = list(aoai_files._read_parts(_TrickleStream(data), 100))
    assert [len(p) for p in parts] == [100] * 10 + [24]
    assert b"".join(parts) == data
