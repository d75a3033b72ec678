"""Where a conversion's artifacts go: ``ArtifactSink`` and the local ``FolderSink``."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from shared.layout import MANIFEST_NAME


class ArtifactSink(Protocol):
    """Where the artifacts go. ``commit`` is called once, last, after every artifact is closed."""

    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    def commit(self, version: str) -> None: ...


@runtime_checkable
class AssemblingSink(Protocol):
    """A sink that can build an artifact from ranges of files it published for earlier versions, without
    the bytes passing through this process (``shared.conversion.reuse``)."""

    def published_artifact(self, version: str, name: str) -> tuple[str, int] | None:
        """``(source, size)`` of artifact ``name`` of a published ``version`` (``source`` names it for
        ``assemble``), or None when it is not there."""
        ...

    def assemble(
        self, name: str, segments: Iterable[bytes | tuple[str, int, int]], *, base: str | None = None
    ) -> int:
        """Write artifact ``name`` as the concatenation of ``segments``: bytes (as small as one line: the sink
        groups them), or ``(source, offset, length)`` ranges of published artifacts. ``base``: the source
        most ranges come from, which the sink may copy whole first and cut (blob storage reuses its blocks).
        Returns its size."""
        ...


class FolderSink:
    """Writes the artifacts to a temporary folder next to ``out_dir`` and moves them into ``out_dir``
    on ``commit`` (``manifest.json`` last), so ``out_dir`` never holds a half-written conversion.
    ``abort`` removes the temporary folder (``convert_dataset`` calls it when it fails)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self._staging: Path | None = None
        self._written: list[str] = []

    def _staging_dir(self) -> Path:
        if self._staging is None:
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.partial-", dir=self.out_dir.parent))
        return self._staging

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        path = self._staging_dir() / name
        with open(path, "wb") as handle:
            yield handle
        if name not in self._written:
            self._written.append(name)

    def commit(self, version: str) -> None:
        staging = self._staging_dir()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # never an old manifest beside new data
        names = [n for n in self._written if n != MANIFEST_NAME] + [n for n in self._written if n == MANIFEST_NAME]
        for name in names:
            os.replace(staging / name, self.out_dir / name)
        shutil.rmtree(staging, ignore_errors=True)
        self._staging = None

    def abort(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
