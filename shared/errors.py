"""The root of the exceptions visiontune raises itself.

``transient`` says whether the failure usually passes on its own: the pipeline retries a run whose step
raised a transient error on a later tick (``shared.pipeline.failures.is_transient`` reads the flag on the
error and on its causes). SDK exceptions (openai, azure-core) are classified there by their status.
"""

from __future__ import annotations

from typing import ClassVar


class VisiontuneError(Exception):
    """Base of every visiontune exception. Subclasses keep their builtin base too (``ValueError``,
    ``RuntimeError``, ...), so existing ``except`` clauses still catch them."""

    transient: ClassVar[bool] = False


class SourceChangedError(VisiontuneError, OSError):
    """A dataset's source changed while it was being read (a replaced archive): the conversion stops as a
    whole rather than publish a mix of two drops, or the old drop minus the files read after the change."""

    transient = True  # the new drop is converted on the retry (or by its own event)
