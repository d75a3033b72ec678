"""Where a dataset's files come from: a folder on disk or a zip archive (any seekable binary file).

A source only lists and reads files. Deciding what a path means (split, label, junk) is the
converter's job, so every source behaves the same way.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from shared.layout import SPLITS

# File names that operating systems and tools drop into folders; never images (compared lower-case).
JUNK_FILE_NAMES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})
JUNK_DIR_NAMES = frozenset({"__macosx"})
# Bytes added to an entry's span for a local extra field longer than the central directory's copy
# (zip64 sizes, timestamps that tools write in one place only).
ENTRY_SPAN_SLACK = 256


@dataclass(frozen=True)
class SourceEntry:
    """One file of a dataset source. ``problem`` (code, reason): the source already knows the entry cannot
    be used (a name outside the layout, a second entry of the same name, not a regular file); the
    converter reports it in ``rejected.json`` and never reads it."""

    path: str  # relative to the dataset root, '/' separators, e.g. "train/cat/1.jpg" or "cat/1.jpg"
    size: int
    problem: tuple[str, str] | None = None
    # An identifier that changes whenever the content does (a blob's ETag), or None. With a cache, an
    # entry whose path, size and etag match a cached version's is not read again.
    etag: str | None = None


@runtime_checkable
class DatasetSource(Protocol):
    """A dataset's files. ``entries`` may come in any order (the converter sorts).

    Optional: ``read_concurrency`` (int, default 1), how many ``read`` calls may run at once on threads
    (a source over a network store sets it high: each read waits on latency); ``process_reader()``, a
    picklable ``worker_pool.ProcessReader`` with which worker processes read the files themselves.
    """

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

    read_concurrency = 4

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")

    def entries(self) -> Iterator[SourceEntry]:
        for directory, _dirs, files in os.walk(self.root):
            base = Path(directory)
            for name in files:
                full = base / name
                relative = full.relative_to(self.root).as_posix()
                try:
                    status = full.stat()
                except OSError:  # a dangling link: listed, reading it reports the problem
                    yield SourceEntry(relative, 0)
                    continue
                kind = special_file_kind(status.st_mode)
                if kind is not None:
                    yield SourceEntry(relative, 0, ("not_a_file", f"{kind}, not a regular file; it was not opened"))
                    continue
                yield SourceEntry(relative, status.st_size)

    def read(self, path: str) -> bytes:
        return read_regular_file(str(self.local_path(path)))

    def local_path(self, path: str) -> Path:
        """The file on disk behind ``path``."""
        return self.root.joinpath(*path.split("/"))

    def process_reader(self) -> LocalFileReader:
        """How a worker process reads these files itself."""
        return LocalFileReader(str(self.root))


@dataclass(frozen=True)
class LocalFileReader:
    """Reads the files under ``root`` on this machine's disk (a ``worker_pool.ProcessReader``)."""

    root: str

    def read(self, path: str, etag: str | None, limit: int) -> bytes:
        return read_regular_file(os.path.join(self.root, *path.split("/")), limit)


class ZipSource:
    """The files of a zip archive, given as a path or ANY seekable binary file object.

    Directory entries are skipped. Backslashes (Windows tools) become ``/``. When every real file
    (junk such as ``__MACOSX/`` aside) sits under one top-level folder that is not a split name and
    holds sub-folders, that folder is the dataset root and is removed from the paths ("unwrapped").
    Reads are serialised by ``zipfile``; the file object must stay open while the source is used.
    """

    read_concurrency = 1  # one file object: zipfile serialises its seeks and reads

    def __init__(self, file: str | os.PathLike[str] | BinaryIO) -> None:
        try:
            self._zip = zipfile.ZipFile(file)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"not a readable zip archive: {exc}") from exc
        raw: dict[str, zipfile.ZipInfo] = {}
        # Entries that are never read, each with (code, reason): unsafe names, repeated names, links.
        self._problems: list[SourceEntry] = []
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            name, unsafe = normalise_entry_name(info.filename)
            if unsafe is not None:
                self._problems.append(SourceEntry(name, info.file_size, ("outside_layout", unsafe)))
                continue
            kind = special_file_kind(info.external_attr >> 16) if info.create_system == 3 else None
            if kind is not None:  # a symbolic link (or device) stored by a Unix zip tool
                self._problems.append(
                    SourceEntry(name, info.file_size, ("not_a_file", f"{kind} in the archive, not a regular file; not read"))
                )
                continue
            if name in raw:
                self._problems.append(
                    SourceEntry(
                        name,
                        info.file_size,
                        ("duplicate_name", "the archive holds another entry of the same name; the first one is used"),
                    )
                )
                continue
            raw[name] = info
        self.root_prefix = _single_root_folder(raw)
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for name, info in raw.items():
            if self.root_prefix and name.startswith(self.root_prefix):
                name = name[len(self.root_prefix):]
            self._infos[name] = info
        if self.root_prefix:
            self._problems = [
                SourceEntry(e.path.removeprefix(self.root_prefix), e.size, e.problem) for e in self._problems
            ]

    def entries(self) -> Iterator[SourceEntry]:
        for name, info in self._infos.items():
            yield SourceEntry(name, info.file_size)
        yield from self._problems

    def read(self, path: str) -> bytes:
        with self._zip.open(self._infos[path]) as member:
            return member.read()

    def entry_span(self, path: str) -> tuple[int, int]:
        """``(offset, length)``: where the archive holds ``path``'s local header, name, extra field and
        data, from the central directory. The local extra field may be longer than the central one
        (``ENTRY_SPAN_SLACK`` bytes are added for it): a reader that prefetches the span may still read
        past it, never before it."""
        info = self._infos[path]
        # the name's stored bytes: cp437 (one byte a character) or UTF-8, never longer than its UTF-8 form
        length = 30 + len(info.orig_filename.encode("utf-8")) + len(info.extra) + info.compress_size
        return info.header_offset, length + ENTRY_SPAN_SLACK

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> ZipSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def normalise_entry_name(name: str) -> tuple[str, str | None]:
    """An archive entry name with ``/`` separators (Windows tools write ``\\``) and leading ``./``
    removed, and why it is unsafe (``None`` if it is not): an absolute path, a drive letter, a ``..``
    component, an empty component or a NUL character. Unsafe entries are never read."""
    cleaned = name.replace("\\", "/")
    while cleaned.startswith("./"):
        cleaned = cleaned[2:]
    if "\x00" in cleaned:
        return cleaned.replace("\x00", "?"), "the entry name holds a NUL character"
    if _DRIVE_RE.match(cleaned):
        return cleaned, f"the entry name {name!r} starts with a drive letter (an absolute Windows path)"
    if cleaned.startswith("/"):
        return cleaned, f"the entry name {name!r} is an absolute path"
    parts = cleaned.split("/")
    if ".." in parts:
        return cleaned, f"the entry name {name!r} climbs out of the archive with '..'"
    if any(part in ("", ".") for part in parts):
        return cleaned, f"the entry name {name!r} has an empty or '.' path component"
    return cleaned, None


def special_file_kind(mode: int) -> str | None:
    """What a non-regular file is (``"a FIFO (named pipe)"``, ...) from its ``st_mode``; None for a
    regular file (and for a mode of 0, which zip tools write when they store no file type)."""
    if mode == 0 or stat.S_ISREG(mode):
        return None
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return kind
    return None if stat.S_IFMT(mode) == 0 else "not a regular file"


def read_regular_file(path: str, limit: int | None = None) -> bytes:
    """The bytes of ``path`` (at most ``limit + 1`` when given) if it is a regular file. The file is opened
    without blocking and checked after opening, so a FIFO or device swapped in after listing is reported
    (``OSError``), never waited on."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(descriptor, "rb") as handle:
        kind = special_file_kind(os.fstat(descriptor).st_mode)
        if kind is not None:
            raise OSError(f"{kind}, not a regular file; it was not read")
        return handle.read() if limit is None else handle.read(limit + 1)


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
