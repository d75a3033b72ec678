"""``SizedRawReader``: seek/tell of a read-only raw file of known size, as ``io`` files behave."""

from __future__ import annotations

import io

import pytest

from shared.seekable import SizedRawReader


class BytesReader(SizedRawReader):
    def __init__(self, data: bytes) -> None:
        super().__init__(len(data))
        self._data = data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._data[self._position : self._position + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)


def test_seek_moves_from_the_start_the_current_position_or_the_end() -> None:
    reader = BytesReader(b"0123456789")
    assert reader.readable() and reader.seekable() and reader.tell() == 0
    assert reader.seek(3) == 3 and reader.read(2) == b"34"
    assert reader.seek(1, io.SEEK_CUR) == 6 and reader.read(1) == b"6"
    assert reader.seek(-2, io.SEEK_END) == 8 and reader.read() == b"89"
    assert reader.seek(5, io.SEEK_END) == 15 and reader.read() == b""


def test_a_negative_position_or_an_unknown_whence_is_refused() -> None:
    reader = BytesReader(b"abc")
    with pytest.raises(ValueError, match="negative seek position -1"):
        reader.seek(-4, io.SEEK_END)
    with pytest.raises(ValueError, match="invalid whence 7"):
        reader.seek(0, 7)
    assert reader.tell() == 0
