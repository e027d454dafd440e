"""A deterministic deny-list classifier: a label scores 1.0 when one of its phrases occurs.

Cheap enough for every request (a compiled regular expression per label, microseconds a
text), exact and explainable: the matches are reported as spans, so a rail can redact
them. Also the deterministic scorer the test suite uses where a model's numbers would be
in the way.

Matching is case-insensitive and on word boundaries: ``"idiot"`` matches ``"Idiot!"`` but
not ``"idiotic"``; a phrase's inner spaces match any run of whitespace, so
``"kill yourself"`` also matches ``"kill\\n  yourself"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rai_harness.classifiers.base import ClassifierSpec, LabelScores, Span
from rai_harness.errors import ConfigError

__all__ = ["KeywordClassifier", "from_spec"]


def _pattern(phrases: Sequence[str]) -> re.Pattern[str]:
    # Longest first, so "kill yourself" wins over "kill" at the same position.
    parts = [
        r"\s+".join(re.escape(word) for word in p.split()) for p in sorted(phrases, key=len, reverse=True)
    ]
    # (?<!\w) / (?!\w) rather than \b, so phrases that start or end in punctuation
    # (":(", "f*ck") still only match as whole tokens.
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


class KeywordClassifier:
    """Scores each label 1.0 when any of its phrases occurs in the text, else 0.0.

    Args:
        phrases: Label -> phrases (words or multi-word phrases; case is ignored).
        name: Report name.

    Raises:
        ConfigError: A label has no phrases, or a phrase is empty.
    """

    #: Every match is reported as a span, so ``redact`` rails can use it.
    produces_spans = True

    def __init__(self, phrases: Mapping[str, Sequence[str]], *, name: str = "keyword") -> None:
        if not phrases:
            raise ConfigError(
                "a keyword classifier needs at least one label with phrases", key_path="options"
            )
        self.name = name
        self.labels = tuple(phrases)
        self.phrases = {label: tuple(words) for label, words in phrases.items()}
        patterns: dict[str, re.Pattern[str]] = {}
        for label, words in self.phrases.items():
            if (
                isinstance(words, str)
                or not words
                or not all(isinstance(w, str) and w.strip() for w in words)
            ):
                raise ConfigError(
                    "must be a non-empty list of non-empty phrases", key_path=f"options.{label}"
                )
            patterns[label] = _pattern(words)
        self._patterns = patterns

    def score(self, text: str) -> LabelScores:
        """Score one text (what :meth:`predict` does for each)."""
        scores: dict[str, float] = {}
        spans: list[Span] = []
        for label, pattern in self._patterns.items():
            found = [Span(m.start(), m.end(), label, 1.0) for m in pattern.finditer(text)]
            scores[label] = 1.0 if found else 0.0
            spans.extend(found)
        spans.sort(key=lambda s: (s.start, s.end))
        return LabelScores(scores=scores, spans=tuple(spans))

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        """Score every text; spans give the matched character ranges.

        Args:
            texts: The texts to check.

        Returns:
            One :class:`LabelScores` per text, in input order.
        """
        return [self.score(text) for text in texts]

    def info(self) -> dict[str, Any]:
        """Backend, labels and the number of phrases per label (the phrases themselves stay out)."""
        return {
            "name": self.name,
            "backend": "keyword",
            "labels": list(self.labels),
            "phrases": {label: len(words) for label, words in self.phrases.items()},
        }


def from_spec(spec: ClassifierSpec) -> KeywordClassifier:
    """Build a :class:`KeywordClassifier` (``backend: keyword``).

    ``options`` maps each label to its phrases: ``{"insult": ["idiot", "moron"]}``;
    ``model``, when set, is used as the report name.
    """
    for label, words in spec.options.items():
        if not isinstance(words, list | tuple):
            raise ConfigError("must be a list of phrases", key_path=f"options.{label}")
    return KeywordClassifier(
        {str(k): [str(w) for w in v] for k, v in spec.options.items()},
        name=f"keyword:{spec.model}" if spec.model else "keyword",
    )
