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
