"""Token counting with ``tiktoken``, fully offline.

``tiktoken`` downloads its BPE files on first use. The ``bpe-openai`` package ships the same files
(gzipped), so the encodings are built from those: the pattern and special tokens still come from
``tiktoken_ext.openai_public``, the BPE ranks are checked against tiktoken's expected SHA-256, and no
network or cache directory is ever touched.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.util
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import VisiontuneError

if TYPE_CHECKING:
    import tiktoken

# Chat formatting overhead, as in the OpenAI cookbook's num_tokens_from_messages.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMER = 3
# A "detail": "low" image costs a flat 85 tokens.
LOW_DETAIL_IMAGE_TOKENS = 85

_BUNDLED = {"o200k_base": "o200k_base.tiktoken.gz", "cl100k_base": "cl100k_base.tiktoken.gz"}
_build_lock = threading.Lock()


class TokenizerError(VisiontuneError, RuntimeError):
    """An encoding cannot be built offline."""


def _bundled_file(name: str) -> Path:
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerError("the bpe-openai package (bundled tiktoken encodings) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / _BUNDLED[name]
    if not path.is_file():
        raise TokenizerError(f"bundled encoding file missing: {path}")
    return path


def _load_ranks(name: str, expected_hash: str | None) -> dict[bytes, int]:
    contents = gzip.decompress(_bundled_file(name).read_bytes())
    if expected_hash and hashlib.sha256(contents).hexdigest() != expected_hash:
        raise TokenizerError(f"bundled {name} does not match tiktoken's expected hash {expected_hash}")
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@functools.cache
def get_encoding(name: str = "o200k_base") -> tiktoken.Encoding:
    """The ``tiktoken.Encoding`` called ``name`` (``o200k_base`` or ``cl100k_base``), built offline."""
    import tiktoken
    import tiktoken_ext.openai_public as openai_public

    if name not in _BUNDLED:
        raise TokenizerError(f"no bundled encoding {name!r}; available: {', '.join(sorted(_BUNDLED))}")

    def offline_loader(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        if not url.endswith(f"/{name}.tiktoken"):
            raise TokenizerError(f"unexpected encoding file {url}")
        return _load_ranks(name, expected_hash)

    # The constructor in tiktoken_ext knows the exact regex and special tokens; only its loader is
    # swapped (under a lock, restored at once) so it reads the bundled file instead of the network.
    with _build_lock:
        original = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = offline_loader
        try:
            spec = getattr(openai_public, name)()
        finally:
            openai_public.load_tiktoken_bpe = original
    return tiktoken.Encoding(**spec)


def encoding_name_for_model(model: str) -> str:
    """The encoding a model uses: tiktoken's own table, o200k_base for unknown (newer) models.

    Fine-tuned ids (``gpt-4.1-2025-04-14.ft-...``) resolve through their base model's name."""
    from tiktoken.model import encoding_name_for_model as lookup

    try:
        name = lookup(model.split(".ft-")[0])
    except KeyError:
        return "o200k_base"
    return name if name in _BUNDLED else "o200k_base"


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """The offline ``tiktoken.Encoding`` for ``model``."""
    return get_encoding(encoding_name_for_model(model))


@dataclass(frozen=True)
class MessageTokens:
    """Tokens of a chat example: text (with the chat format overhead) and images (low detail)."""

    text: int
    images: int
    image_tokens: int

    @property
    def total(self) -> int:
        return self.text + self.image_tokens


def count_message_tokens(messages: Iterable[Mapping[str, Any]], model: str) -> MessageTokens:
    """Count the tokens of chat ``messages`` as the cookbook does (3 per message + 3 for the reply
    primer); list content counts its text parts, and each image counts 85 tokens (low detail; a
    high-detail image is also counted as 85 here, a lower bound)."""
    encoding = encoding_for_model(model)
    text = TOKENS_REPLY_PRIMER
    images = 0
    for message in messages:
        text += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                text += len(encoding.encode(value, disallowed_special=()))
            elif key == "content" and isinstance(value, list):
                for part in value:
                    if part.get("type") == "text":
                        text += len(encoding.encode(str(part.get("text", "")), disallowed_special=()))
                    elif part.get("type") == "image_url":
                        images += 1
            if key == "name":
                text += TOKENS_PER_NAME
    return MessageTokens(text=text, images=images, image_tokens=images * LOW_DETAIL_IMAGE_TOKENS)
