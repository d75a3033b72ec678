"""Where a dataset's files come from: a folder on disk or a zip archive (any seekable binary file).

A source only lists and reads files. Deciding what a path means (split, label, junk) is the
converter's job, so every source behaves the same way.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from shared.layout import SPLITS

# File names that operating systems and tools drop into folders; never images (compared lower-case).
JUNK_FILE_NAMES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})
JUNK_DIR_NAMES = frozenset({"__macosx"})


@dataclass(frozen=True)
class SourceEntry:
    """One file of a dataset source."""

    path: str  # relative to the dataset root, '/' separators, e.g. "train/cat/1.jpg" or "cat/1.jpg"
    size: int


@runtime_checkable
class DatasetSource(Protocol):
    """A dataset's files. ``entries`` may come in any order (the converter sorts)."""

    def entries(self) -> Iterable[SourceEntry]: ...

    def read(self, path: str) -> bytes: ...


def ignored_reason(path: str) -> str | None:
    """Why ``path`` is junk that is never an image (``None`` if it is not junk).

    Junk: ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, anything under ``__MACOSX/`` and hidden files
    or folders (a name starting with ``.``, which includes macOS ``._x.jpg`` resource forks).
    """
    parts = path.split("/")
    for part in parts[:-1]:
        if part.lower() in JUNK_DIR_NAMES:
            return f"macOS archive metadata ({part}/)"
        if part.startswith("."):
            return f"inside hidden folder {part}/"
    name = parts[-1]
    if name.lower() in JUNK_FILE_NAMES:
        return f"system file {name}"
    if name.startswith("."):
        return "hidden file"
    return None


class FolderSource:
    """The files under ``root`` (symbolic links to folders are not followed)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")

    def entries(self) -> Iterator[SourceEntry]:
        for directory, _dirs, files in os.walk(self.root):
            base = Path(directory)
            for name in files:
                full = base / name
                try:
                    size = full.stat().st_size
                except OSError:  # a dangling link: listed, reading it reports the problem
                    size = 0
                yield SourceEntry(full.relative_to(self.root).as_posix(), size)

    def read(self, path: str) -> bytes:
        return self.local_path(path).read_bytes()

    def local_path(self, path: str) -> Path:
        """The file on disk behind ``path``, so worker processes can read it themselves."""
        return self.root.joinpath(*path.split("/"))


class ZipSource:
    """The files of a zip archive, given as a path or ANY seekable binary file object.

    Directory entries are skipped. Backslashes (Windows tools) become ``/``. When every real file
    (junk such as ``__MACOSX/`` aside) sits under one top-level folder that is not a split name and
    holds sub-folders, that folder is the dataset root and is removed from the paths ("unwrapped").
    Reads are serialised by ``zipfile``; the file object must stay open while the source is used.
    """

    def __init__(self, file: str | os.PathLike[str] | BinaryIO) -> None:
        try:
            self._zip = zipfile.ZipFile(file)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"not a readable zip archive: {exc}") from exc
        raw: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            name = info.filename.replace("\\", "/")
            while name.startswith("./"):
                name = name[2:]
            raw.setdefault(name, info)
        self.root_prefix = _single_root_folder(raw)
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for name, info in raw.items():
            if self.root_prefix and name.startswith(self.root_prefix):
                name = name[len(self.root_prefix):]
            self._infos.setdefault(name, info)

    def entries(self) -> Iterator[SourceEntry]:
        for name, info in self._infos.items():
            yield SourceEntry(name, info.file_size)

    def read(self, path: str) -> bytes:
        with self._zip.open(self._infos[path]) as member:
            return member.read()

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> ZipSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _single_root_folder(names: Iterable[str]) -> str:
    """``"folder/"`` if every non-junk file is under that one folder (and deeper), else ``""``."""
    tops: set[str] = set()
    deep = False
    for name in names:
        if ignored_reason(name) is not None:
            continue
        parts = name.split("/")
        if len(parts) < 2:
            return ""
        tops.add(parts[0])
        deep = deep or len(parts) >= 3
        if len(tops) > 1:
            return ""
    if len(tops) != 1 or not deep:
        return ""
    (top,) = tops
    return "" if top in SPLITS else top + "/"


def open_source(path: Path) -> FolderSource | ZipSource:
    """A source for a folder or a ``.zip`` file on disk; ``ValueError`` for anything else."""
    path = Path(path)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return ZipSource(path)
    if not path.exists():
        raise FileNotFoundError(f"no such folder or .zip: {path}")
    raise ValueError(f"{path} is neither a folder nor a zip archive")
