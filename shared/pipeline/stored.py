"""Documents stored one per blob under their ETag: the base models, reading one into its model, writing it
If-Match its ETag, and ``update_document``, the one read-modify-write loop every ETag-guarded document
(runs, ``production.json``, scheduled evaluations) goes through. The documents themselves are in
``shared.pipeline.documents``; the lease on a ``LeasedDocument`` is ``RunStore.claim_document`` /
``keep_lease``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, PrivateAttr, ValidationError

from shared.errors import VisiontuneError

if TYPE_CHECKING:  # pragma: no cover
    from azure.storage.blob import ContainerClient

# How often ``update_document`` reads again after losing the ETag race before it gives up.
UPDATE_ATTEMPTS = 10


class ConcurrentUpdateError(VisiontuneError, RuntimeError):
    """The document changed since it was read (ETag mismatch): re-read before writing again."""


class DocumentError(VisiontuneError, ValueError):
    """A stored document does not have the shape its model requires (the message names the blob)."""


class Lease(BaseModel):
    """Who works on a document (``RunStore.INSTANCE_ID`` of a process) and until when."""

    owner: str
    until: datetime


class StoredDocument(BaseModel):
    """A document read from (or written to) one blob; ``etag`` is the blob's ETag as last read or written,
    None for a document never stored (its first write uses If-None-Match *)."""

    _etag: str | None = PrivateAttr(default=None)

    @property
    def etag(self) -> str | None:
        return self._etag


class LeasedDocument(StoredDocument):
    """A stored document a worker leases before working on it (``RunStore.claim_document``); each subclass
    declares ``lease: Lease | None`` where it belongs in its own key order."""

    _lease_lost: bool = PrivateAttr(default=False)  # a renewal found another writer: never save this copy

    if TYPE_CHECKING:  # declared by each subclass (a field here would come first in every dump)
        lease: Lease | None

    @property
    def document_name(self) -> str:
        """The blob name this document is stored under."""
        raise NotImplementedError

    @property
    def key(self) -> str:
        """How logs name the document."""
        return self.document_name

    def document_metadata(self) -> dict[str, str] | None:
        """Blob metadata written with the document (None: none)."""
        return None

    def loaded(self) -> None:
        """Called by the store right after the document was read (a hook; nothing by default)."""


D = TypeVar("D", bound=StoredDocument)
M = TypeVar("M", bound=BaseModel)


def parse_document(model: type[M], data: bytes | str, name: str) -> M:
    """``data`` (JSON) parsed as ``model``; ``DocumentError`` naming ``name`` and the problems otherwise."""
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}" for e in error.errors()[:5]
        )
        more = f" (and {error.error_count() - 5} more)" if error.error_count() > 5 else ""
        raise DocumentError(f"{name} is not a valid {model.__name__}: {problems}{more}") from None


def read_model(container: ContainerClient, name: str, model: type[D]) -> D | None:
    """The blob ``name`` parsed as ``model``, carrying its ETag; None when there is no such blob."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        downloader = container.get_blob_client(name).download_blob()
        data = downloader.readall()
    except ResourceNotFoundError:
        return None
    document = parse_document(model, data, name)
    document._etag = downloader.properties.etag
    return document


def write_model(
    container: ContainerClient,
    name: str,
    document: D,
    *,
    indent: int | None = None,
    content_type: str | None = None,
    metadata: dict[str, str] | None = None,
) -> D:
    """Write ``document`` to ``name`` If-Match its ETag (If-None-Match * when it has none) and give it the
    new ETag. Raises ``ConcurrentUpdateError`` when the condition fails."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

    kwargs: dict[str, Any] = {"overwrite": document.etag is not None, "metadata": metadata}
    if document.etag is not None:
        kwargs.update(etag=document.etag, match_condition=MatchConditions.IfNotModified)
    if content_type is not None:
        from azure.storage.blob import ContentSettings

        kwargs["content_settings"] = ContentSettings(content_type=content_type)
    data = document.model_dump_json(indent=indent).encode()
    try:
        result = container.get_blob_client(name).upload_blob(data, **kwargs)
    except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as error:
        raise ConcurrentUpdateError(f"{name} changed since it was read") from error
    document._etag = result["etag"]
    return document


def update_document(
    read: Callable[[], D | None],
    mutate: Callable[[D | None], D | None],
    write: Callable[[D], D],
    *,
    what: str,
    attempts: int = UPDATE_ATTEMPTS,
) -> D | None:
    """Read, ``mutate``, write under the ETag; on a lost race read again and re-apply, ``attempts`` times.

    ``mutate`` gets the stored document (None when there is none) and returns the document to write: the
    one it got, changed, or a new one; either is written If-Match the stored one's ETag, or If-None-Match *
    when there was none. It returns None when there is nothing to write: the stored document is then
    returned as read. Raises ``ConcurrentUpdateError`` naming ``what`` when every attempt lost."""
    for _ in range(attempts):
        current = read()
        changed = mutate(current)
        if changed is None:
            return current
        changed._etag = current.etag if current is not None else None
        try:
            return write(changed)
        except ConcurrentUpdateError:
            continue
    raise ConcurrentUpdateError(f"{what}: still conflicting after {attempts} attempts")
