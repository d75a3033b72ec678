"""``SizedRawReader``: the position keeping of a read-only, seekable raw file of a known size."""

from __future__ import annotations

import io


class SizedRawReader(io.RawIOBase):
    """A read-only, seekable raw file of ``size`` bytes: ``seek``/``tell`` move ``_position`` (anywhere
    from 0, past the end included, as files allow); subclasses implement ``readinto`` from it."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence}")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position
