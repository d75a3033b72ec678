"""Which label a model's free-text answer names.

A fine-tuned classifier is trained to answer with the label alone, but models still wrap it: ``"Cat."``,
``"Label: cat"``, ``**cat**``, ``"cat"``. ``match_answer`` accepts those and nothing looser: it never
searches for a label inside a sentence, so an answer that names two labels (``"cat or dog"``) or explains
itself is off-label (``None``) instead of a guess.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache

# Stripped from both ends of answers and labels: ASCII punctuation, typographic quotes, whitespace.
_EDGE_CHARS = string.punctuation + string.whitespace + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026\u3002"
_SPACES = re.compile(r"\s+")
_SEPARATORS = re.compile(r"[\s_\-]+")
# "Label: cat", "Answer - cat", "The answer is: cat". At most four words before the colon.
_PREFIX = re.compile(
    r"^\s*(?:the\s+)?(?:label|answer|class|category|breed|species|prediction|predicted\s+label|output)"
    r"(?:\s+is)?\s*[:=\-]\s*",
    re.IGNORECASE,
)


def _strict_key(text: str) -> str:
    return _SPACES.sub(" ", text.strip(_EDGE_CHARS)).casefold()


def _loose_key(text: str) -> str:
    # "golden_retriever" == "golden retriever" == "Golden-Retriever"
    return _SEPARATORS.sub(" ", text.strip(_EDGE_CHARS)).strip().casefold()


class LabelMatcher:
    """Precomputed lookup tables for one label list: each match is a few dict lookups."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self._exact = {label: label for label in self.labels}
        self._strict = self._unique_index(_strict_key)
        self._loose = self._unique_index(_loose_key)

    def _unique_index(self, key: Callable[[str], str]) -> dict[str, str | None]:
        index: dict[str, str | None] = {}
        for label in self.labels:
            k = key(label)
            # Two labels with one key (e.g. "Cat" and "cat"): that key alone never decides.
            index[k] = None if k in index and index[k] != label else label
        return index

    def _lookup(self, text: str) -> tuple[bool, str | None]:
        """(found, label): found is True when some key matched, even an ambiguous one."""
        stripped = text.strip()
        if stripped in self._exact:
            return True, stripped
        for index, key in ((self._strict, _strict_key), (self._loose, _loose_key)):
            k = key(stripped)
            if k and k in index:
                return True, index[k]
        return False, None

    def match(self, answer: str | None) -> str | None:
        """The label ``answer`` names, or None (no answer, no label, or more than one label)."""
        if answer is None:
            return None
        text = answer.strip()
        if not text:
            return None
        for candidate in self._candidates(text):
            found, label = self._lookup(candidate)
            if found:
                return label
        return None

    @staticmethod
    def _candidates(text: str) -> Iterator[str]:
        yield text
        # Only the first line counts when the rest is empty; several non-empty lines are not one label.
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) == 1 and lines[0] != text:
            text = lines[0]
            yield text
        without_prefix = _PREFIX.sub("", text, count=1)
        if without_prefix != text:
            yield without_prefix
        if text.startswith("{") and text.endswith("}"):
            try:
                data = json.loads(text)
            except ValueError:
                return
            if isinstance(data, dict):
                values = [v for k, v in data.items() if str(k).lower() in {"label", "answer", "class"}]
                if len(values) == 1 and isinstance(values[0], str):
                    yield values[0]


@lru_cache(maxsize=64)
def label_matcher(labels: tuple[str, ...]) -> LabelMatcher:
    """A cached ``LabelMatcher`` for one label tuple."""
    return LabelMatcher(labels)


def match_answer(answer: str | None, labels: Sequence[str]) -> str | None:
    """The label that a model's free-text ``answer`` names, or None when it is off-label.

    Matches the whole answer against the labels after trimming whitespace, surrounding quotes and
    punctuation, and case; also accepts a ``"Label: x"``-style prefix, a single JSON ``{"label": x}``,
    and ``_``/``-``/space as the same separator when that does not make two labels equal. Never searches
    inside a sentence, so an answer naming two labels is off-label.
    """
    return label_matcher(tuple(labels)).match(answer)
