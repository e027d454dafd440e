"""Judge rubrics: what a model-graded metric asks its judge, and how the reply is read.

A **rubric** is a prompt template (:mod:`rai_harness.suites.judge_prompts`, each credited to
its source) plus the label set the judge must answer with. A judged suite turns each output
into :class:`JudgeTask` s (one per rubric); the run's judge phase sends them to the judge
provider through the runner (journaled, retried, cached) and :func:`parse_verdict` reads each
reply.

**Parsing never guesses** (DeepEval #929 is the failure this avoids: local judges emit
invalid JSON and the tool picks a default). In order:

1. ``<think>`` blocks and markdown are dropped. An empty reply is ``status="empty"``.
2. The whole reply is one label form, in any case (``"B"``, ``"incorrect"``, ``"No."``,
   ``"A: CORRECT"``) -> that label.
3. Explicit cues (``Grade: B``, ``the answer is "yes"``, ``Final verdict - NOT_ATTEMPTED``),
   then the reply's first word when punctuation or the end follows it, and lines that hold
   only a label (a reply that recites the options, ``A: CORRECT`` then ``B: INCORRECT``,
   names two), then (rubrics whose forms are distinctive upper-case words only) those words
   anywhere. The first tier that names labels decides: exactly one distinct label -> parsed;
   two or more -> ``status="ambiguous"`` (no label).
4. Nothing found -> ``status="unparseable"`` (no label).

What a tier found is then checked against the whole reply, so a grade is read only when the
reply stands by it:

* A form after a negation (``not CORRECT``, ``isn't A``, ``no longer correct``, ``neither A
  nor B``) is not that grade, in any tier.
* A first-word letter followed by more words is prose, not a grade (``A predicted
  answer...``); a first-word word form may go on (``Yes it is truthful``) except into an
  idiom that is no grade (``No comment``, ``No idea``, ``No longer...``).
* A reply that names another label anywhere it could be a grade (after punctuation or a
  conjunction, before punctuation, a conjunction or the end: ``Yes, but no.``, ``Yes and
  no``), or a label right after a correction cue and a few filler words (``actually B``,
  ``should be B``; not ``instead of Lyon. A common...``), is ambiguous; so is one that
  retracts what it said and then names another label (``B. Sorry, I meant A``; a retraction
  word inside double quotes, such as a quoted refusal's "sorry", does not count).
* A reply longer than :data:`MAX_REPLY_CHARS` is read only that far; a label found there is
  reported ambiguous (the unread rest could change it), never parsed.

An ambiguous, unparseable or empty reply has no label: it is counted and left out of the
judged metric's denominator, never mapped to a default grade (simple-evals maps a reply
without A/B/C to NOT_ATTEMPTED; we report it instead).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from rai_harness.errors import ConfigError
from rai_harness.stats import Estimate, clopper_pearson
from rai_harness.suites.answers import outputs_rate, strip_reasoning
from rai_harness.suites.base import ScoredOutput
from rai_harness.suites.common import fill_template
from rai_harness.suites.judge_prompts import HALUEVAL_QA, SIMPLEQA_GRADER, TRUTHFULQA_INFO, TRUTHFULQA_TRUTH
from rai_harness.types import ChatMessage

__all__ = [
    "JUDGE_KEY",
    "RUBRICS",
    "JudgeTask",
    "JudgedRates",
    "Rubric",
    "Verdict",
    "VerdictStatus",
    "any_judged",
    "get_rubric",
    "judge_entry",
    "judged_labels",
    "judged_rates",
    "neutralise",
    "parse_verdict",
]

VerdictStatus = Literal["parsed", "ambiguous", "unparseable", "empty"]

#: Longest judge reply parsed (characters); a longer reply is read only up to here.
MAX_REPLY_CHARS = 20_000


@dataclass(frozen=True)
class Rubric:
    """A judge prompt and the labels it asks for.

    Attributes:
        name: Registry name (recorded with every verdict).
        title: Human name for reports.
        template: The prompt; ``{placeholder}`` s are filled in one pass.
        placeholders: The placeholders a task must fill.
        labels: The canonical labels, in report order.
        forms: Surface form -> label: what the judge may write (``"A"``, ``"CORRECT"``, ``"yes"``).
        case_sensitive: Forms must match case exactly (SimpleQA's upper-case labels and
            letters; a lower-case "a" or "correct" in prose is not a grade).
        anywhere: Forms may be found anywhere in a chatty reply (only for distinctive forms).
        positive: The label a binary metric counts (``None``: no single positive label).
        max_tokens: Completion budget of a judge call with this rubric.
        source: Where the prompt comes from.
    """

    name: str
    title: str
    template: str
    placeholders: tuple[str, ...]
    labels: tuple[str, ...]
    forms: Mapping[str, str]
    case_sensitive: bool
    anywhere: bool
    positive: str | None
    max_tokens: int
    source: str
    _patterns: dict[str, re.Pattern[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        missing = [p for p in self.placeholders if "{" + p + "}" not in self.template]
        if missing:
            raise ValueError(f"rubric {self.name!r}: template lacks {missing}")
        bad = sorted(set(self.forms.values()) - set(self.labels))
        if bad:
            raise ValueError(f"rubric {self.name!r}: forms map to unknown labels {bad}")
        flags = 0 if self.case_sensitive else re.IGNORECASE

        def alts(forms: list[str]) -> str:
            # Longest first, so "NOT ATTEMPTED" wins over a shorter form inside it.
            return "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)) or "(?!)"

        every = alts(list(self.forms))
        # Only word forms may be found anywhere in prose (rubrics with anywhere=True), never letters.
        words = alts([f for f in self.forms if len(f) > 1])
        edge = r"(?<![A-Za-z0-9_])"
        loose = rf"{edge}({every})(?![A-Za-z0-9_])"
        # Where a form stands as an answer: punctuation (dashes and a slash included), a
        # conjunction or the end follows it.
        punct = "[:.()\\]\"',;!?\\-\u2013\u2014/]"
        conj = rf"{edge}(?i:and|but|or|then)(?![A-Za-z0-9_])"
        ends = rf"(?![A-Za-z0-9_])(?=\s*(?:$|{punct}|{conj}))"
        # As a reply's first word, a letter followed by more words is prose ("A predicted
        # answer..."); a word form may go on ("Yes it is truthful"), except into an idiom that
        # is no grade ("No comment", "No idea", "No longer...").
        idiom = r"(?i:comment|comments|idea|clue|way|one|doubt|problem|matter|thanks|longer|more|less|wonder)"
        word_ends = rf"(?![A-Za-z0-9_])(?=\s*(?:$|{punct}|{conj}|(?!{idiom}(?![A-Za-z0-9_]))[A-Za-z]))"
        letters = alts([f for f in self.forms if len(f) == 1])
        strict = rf"{edge}((?:{letters}){ends}|(?:{words}){word_ends})"
        cue = (
            r"(?i:(?:final\s+)?(?:grade|grading|answer|verdict|label|judgement|judgment|rating|decision|"
            r"classification)\s*(?:is|would\s+be|:|=|-|\u2014)?\s*(?:the\s+letter\s+)?)"
        )
        # A reply that is nothing but a label form is unambiguous in any case ("correct", "b").
        self._patterns["whole"] = re.compile(
            rf"\s*({every})\s*(?:[:.)\-]\s*({every})\s*)?[.!]?\s*", re.IGNORECASE
        )
        self._patterns["cue"] = re.compile(rf"{cue}[\"'(\[]*{loose}", flags)
        self._patterns["first"] = re.compile(rf"\s*[\"'(\[]*{strict}", flags)
        self._patterns["line"] = re.compile(
            rf"^[ \t]*[\"'(\[]*{loose}[\"')\].!]*[ \t]*$", flags | re.MULTILINE
        )
        self._patterns["any"] = re.compile(rf"{edge}({words})(?![A-Za-z0-9_])", flags)
        # A form that may be a second grade anywhere in the reply: after the start, punctuation or
        # a conjunction, and standing as an answer ("Yes, but no.", "Yes and no", "A\nactually, B").
        self._patterns["standalone"] = re.compile(
            rf"(?:^|[.,:;!?(\[\"'\-]|{edge}(?i:and|but|or|then|so)(?![A-Za-z0-9_]))[ \t]*{edge}({every}){ends}",
            flags | re.MULTILINE,
        )
        self._patterns["loose"] = re.compile(loose, flags)
        # Right after a correction cue, a few filler words, then a form standing as an answer:
        # "actually B", "should be B.", "actually, it is B" (not "instead of Lyon. A common...").
        filler = (
            r"(?i:it|it's|its|is|be|was|the|grade|answer|letter|option|label|verdict|should|would|"
            r"must|have|been|really|probably|i|think|say|mean|meant|that|to)"
        )
        self._patterns["corrected"] = re.compile(
            rf"[\s,:]*(?:{filler}[\s,:]+){{0,5}}[\"'(\[]*{edge}({every}){ends}", flags
        )

    def label_of(self, form: str) -> str:
        """The label a surface form stands for."""
        if form in self.forms:
            return self.forms[form]
        lowered = {k.lower(): v for k, v in self.forms.items()}
        return lowered[form.lower()]

    def render(self, values: Mapping[str, str]) -> tuple[ChatMessage, ...]:
        """The judge's messages for one item (one user message).

        Every value is untrusted (a model's answer, a dataset's question): it is neutralised
        (:func:`neutralise`) so that it cannot close the block or tag that holds it.

        Raises:
            ConfigError: A placeholder has no value.
        """
        missing = [p for p in self.placeholders if p not in values]
        if missing:
            raise ConfigError(f"judge rubric {self.name!r} needs {', '.join(missing)}")
        tags = tuple(sorted(set(re.findall(r"</([A-Za-z_]+)>", self.template))))
        safe = {p: neutralise(str(values[p]), tags) for p in self.placeholders}
        return (ChatMessage("user", fill_template(self.template, safe)),)


def neutralise(text: str, tags: Sequence[str] = ()) -> str:
    """``text`` made unable to close the delimiter a judge prompt puts around it.

    A run of three or more backticks (a markdown fence) becomes as many modifier grave
    accents (U+02CB, which look alike but close no fence), and ``</tag`` or ``<tag`` of a
    delimiting tag becomes ``\u2039/tag`` / ``\u2039tag`` (a single angle quote), so an answer that
    writes ```` ``` ```` or ``</answer>`` followed by instructions stays inside its block.
    Other text is unchanged.
    """
    text = re.sub(r"`{3,}", lambda m: "\u02cb" * len(m.group(0)), text)
    if tags:
        names = "|".join(re.escape(t) for t in tags)
        text = re.sub(rf"<(\s*/?\s*(?:{names}))(?![A-Za-z0-9_])", "\u2039\\1", text, flags=re.IGNORECASE)
    return text


@dataclass(frozen=True, slots=True)
class JudgeTask:
    """One judge prompt for one output: which rubric, and the messages to send."""

    rubric: str
    messages: tuple[ChatMessage, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A parsed judge reply: the label (``None`` unless ``status == "parsed"``) and how it was found."""

    label: str | None
    status: VerdictStatus
    #: Which rule found it ("whole", "cue", "first", "line", "any") or why none did.
    how: str


#: A negation right before a form (a few filler words allowed): "not CORRECT", "isn't A",
#: "no longer correct", "neither A nor B", "not be considered CORRECT". Case-insensitive.
_NEGATION = re.compile(
    r"(?:(?<![A-Za-z0-9_])(?:not|never|hardly|neither|nor|no\s+longer|non)|n't|n\u2019t)[\s-]+"
    r"(?:(?:be|been|being|really|quite|fully|entirely|completely|exactly|necessarily|considered|"
    r"graded|marked|rated|judged|labell?ed|deemed|as|a|an|the|grade|label|letter|option)\s+)*"
    r"[\"'(\[]*$",
    re.IGNORECASE,
)
#: Characters before a form searched for a negation.
_NEGATION_WINDOW = 80
#: A reply that withdraws what it said: a different grade named after one of these makes it ambiguous.
_RETRACTION = re.compile(
    r"(?<![A-Za-z0-9_])(?:wait|sorry|apologi[sz]e|correction|scratch\s+that|i\s+meant|i\s+mean"
    r"|on\s+(?:second\s+thought|reflection)|(?:i\s+made\s+a|my)\s+mistake|i\s+was\s+wrong"
    r"|let\s+me\s+(?:reconsider|correct|revise|re-?evaluate)|change\s+(?:my|the)\s+(?:grade|answer|mind))"
    r"(?![A-Za-z0-9_])",
    re.IGNORECASE,
)
#: A cue that the text right after it may change the grade ("actually B", "should be B").
_CORRECTION = re.compile(
    r"(?<![A-Za-z0-9_])(?:actually|should\s+(?:be|have\s+been)|instead|rather|in\s+fact|or\s+maybe|"
    r"more\s+precisely|to\s+be\s+precise|make\s+that)(?![A-Za-z0-9_])",
    re.IGNORECASE,
)


def _clean(text: str) -> str:
    text = strip_reasoning(text[:MAX_REPLY_CHARS])
    # Markdown emphasis and code marks around a grade ("**B**", "`CORRECT`"); keep "_" (NOT_ATTEMPTED).
    return re.sub(r"[*`#]+", " ", text).replace("\u201c", '"').replace("\u201d", '"').strip()


def _negated(reply: str, start: int) -> bool:
    """Whether the form starting at ``start`` follows a negation ("not CORRECT" is no grade)."""
    return _NEGATION.search(reply[max(0, start - _NEGATION_WINDOW) : start]) is not None


def _forms(pattern: re.Pattern[str], reply: str, start: int = 0) -> list[tuple[str, int]]:
    """``(form, offset)`` of each match of ``pattern`` (group 1) from ``start`` that no negation precedes."""
    found = ((m.group(1), m.start(1)) for m in pattern.finditer(reply, start))
    return [(form, at) for form, at in found if not _negated(reply, at)]


def _mentions(rubric: Rubric, reply: str) -> list[tuple[str, int]]:
    """Every place the reply may name a grade, beyond the tier that decided (for contradictions).

    Forms standing as answers anywhere, distinctive word forms anywhere (``anywhere`` rubrics),
    and any form after a correction cue ("A ... actually B").
    """
    p = rubric._patterns
    found = _forms(p["standalone"], reply)
    if rubric.anywhere:
        found += _forms(p["any"], reply)
    for cue in _CORRECTION.finditer(reply):
        after = p["corrected"].match(reply, cue.end())
        if after is not None and not _negated(reply, after.start(1)):
            found.append((after.group(1), after.start(1)))
    return found


_QUOTED = re.compile(r'"[^"\n]*"')


def _retracted_to(rubric: Rubric, reply: str, start: int) -> set[str]:
    """The labels a reply names after withdrawing what it said from ``start`` on ("A. Sorry, I
    meant B"): a retraction word outside quotes (a quoted refusal says "sorry" too), then a form."""
    quoted = [m.span() for m in _QUOTED.finditer(reply)]
    out: set[str] = set()
    for retraction in _RETRACTION.finditer(reply, start):
        if any(a <= retraction.start() < b for a, b in quoted):
            continue
        out |= {
            rubric.label_of(f)
            for f, at in _forms(rubric._patterns["loose"], reply, retraction.end())
            if not any(a <= at < b for a, b in quoted)
        }
    return out


def _tiers(rubric: Rubric, reply: str) -> list[tuple[str, list[tuple[str, int]]]]:
    """The parse tiers of the module docstring, in order: name -> forms found (negated ones dropped)."""
    p = rubric._patterns
    # A line that is a whole label ("A: CORRECT") counts with both its forms, so a reply that
    # recites the options ("A: CORRECT\nB: INCORRECT") names two labels and is ambiguous.
    pair_lines = []
    offset = 0
    for line in reply.splitlines(keepends=True):
        if w := p["whole"].fullmatch(line.rstrip("\r\n")):
            pair_lines += [(g, offset) for g in w.groups() if g]
        offset += len(line)
    first = p["first"].match(reply)
    tiers = [
        ("cue", _forms(p["cue"], reply)),
        (
            "first/line",
            _forms(p["line"], reply)
            + pair_lines
            + ([(first.group(1), first.start(1))] if first and not _negated(reply, first.start(1)) else []),
        ),
    ]
    if rubric.anywhere:
        tiers.append(("any", _forms(p["any"], reply)))
    return tiers


def _read(rubric: Rubric, reply: str) -> Verdict:
    """Parse a cleaned, non-empty reply (module docstring, steps 2-4 and the checks after them)."""
    whole = rubric._patterns["whole"].fullmatch(reply)
    if whole:
        found = {rubric.label_of(g) for g in whole.groups() if g}
        if len(found) == 1:
            return Verdict(found.pop(), "parsed", "whole")
        return Verdict(None, "ambiguous", "whole reply names two labels")
    mentions = _mentions(rubric, reply)
    for how, forms in _tiers(rubric, reply):
        labels = {rubric.label_of(f) for f, _ in forms}
        if len(labels) > 1:
            return Verdict(None, "ambiguous", f"{how}: names {', '.join(sorted(labels))}")
        if not labels:
            continue
        label = labels.pop()
        others = sorted({rubric.label_of(f) for f, _ in mentions} - {label})
        if others:
            return Verdict(None, "ambiguous", f"{how}: names {label}, later also {', '.join(others)}")
        first_at = min(at for _, at in forms + mentions)
        retracted = _retracted_to(rubric, reply, first_at) - {label}
        if retracted:
            return Verdict(
                None,
                "ambiguous",
                f"{how}: names {label}, then corrects itself to {', '.join(sorted(retracted))}",
            )
        return Verdict(label, "parsed", how)
    labels = {rubric.label_of(f) for f, _ in mentions}
    if len(labels) > 1:
        return Verdict(None, "ambiguous", f"names {', '.join(sorted(labels))}")
    return Verdict(None, "unparseable", "no label found")


def parse_verdict(rubric: Rubric, text: str | None) -> Verdict:
    """Read a judge reply as one of the rubric's labels, or say why it cannot (module docstring)."""
    raw = text or ""
    reply = _clean(raw)
    cut = len(raw) > MAX_REPLY_CHARS
    if not re.search(r"[A-Za-z0-9]", reply):
        if cut:  # a long reply whose start holds nothing (an unclosed <think>) is not an empty one
            return Verdict(None, "unparseable", f"nothing in the first {MAX_REPLY_CHARS:,} characters")
        return Verdict(None, "empty", "empty reply")
    verdict = _read(rubric, reply)
    if not cut:
        return verdict
    # The unread rest may name another grade or withdraw this one: never a grade.
    note = f"reply longer than {MAX_REPLY_CHARS:,} characters, only its start read"
    if verdict.label is not None:
        return Verdict(None, "ambiguous", f"{note}: names {verdict.label} there")
    return Verdict(None, verdict.status, f"{verdict.how}; {note}")


_YES_NO = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}

#: Built-in rubrics by name.
RUBRICS: dict[str, Rubric] = {
    r.name: r
    for r in (
        Rubric(
            name="simpleqa_grader",
            title="SimpleQA grader",
            template=SIMPLEQA_GRADER,
            placeholders=("question", "target", "predicted_answer"),
            labels=("CORRECT", "INCORRECT", "NOT_ATTEMPTED"),
            forms={
                "A": "CORRECT",
                "B": "INCORRECT",
                "C": "NOT_ATTEMPTED",
                "CORRECT": "CORRECT",
                "INCORRECT": "INCORRECT",
                "NOT_ATTEMPTED": "NOT_ATTEMPTED",
                "NOT ATTEMPTED": "NOT_ATTEMPTED",
            },
            case_sensitive=True,
            anywhere=True,
            positive="CORRECT",
            max_tokens=16,
            source="Wei et al. 2024 (SimpleQA), GRADER_TEMPLATE of openai/simple-evals (MIT)",
        ),
        Rubric(
            name="truthfulqa_truth",
            title="TruthfulQA truthfulness judge (prompted)",
            template=TRUTHFULQA_TRUTH,
            placeholders=("question", "answer", "correct_answers", "incorrect_answers"),
            labels=("yes", "no"),
            forms=_YES_NO,
            case_sensitive=False,
            anywhere=False,
            positive="yes",
            max_tokens=8,
            source="Lin et al. 2022 (TruthfulQA) GPT-judge definition; prompt written for rai-harness",
        ),
        Rubric(
            name="truthfulqa_info",
            title="TruthfulQA informativeness judge (prompted)",
            template=TRUTHFULQA_INFO,
            placeholders=("question", "answer"),
            labels=("yes", "no"),
            forms=_YES_NO,
            case_sensitive=False,
            anywhere=False,
            positive="yes",
            max_tokens=8,
            source="Lin et al. 2022 (TruthfulQA) GPT-info definition; prompt written for rai-harness",
        ),
        Rubric(
            name="halueval_qa",
            title="HaluEval QA hallucination judge",
            template=HALUEVAL_QA,
            placeholders=("knowledge", "question", "answer"),
            labels=("yes", "no"),
            forms=_YES_NO,
            case_sensitive=False,
            anywhere=False,
            positive="yes",
            max_tokens=8,
            source="Li et al. 2023 (HaluEval), QA evaluation instruction (RUCAIBox/HaluEval, MIT)",
        ),
    )
}


def get_rubric(name: str) -> Rubric:
    """The rubric registered as ``name``.

    Raises:
        ConfigError: Unknown name (the message lists the known ones).
    """
    try:
        return RUBRICS[name]
    except KeyError:
        raise ConfigError(f"unknown judge rubric {name!r}; known: {', '.join(sorted(RUBRICS))}") from None


# -- reading verdicts back in a suite's aggregate -------------------------------------------

#: Key of the judge's verdicts in a scored output's ``scores``.
JUDGE_KEY = "judge"


def judge_entry(output: ScoredOutput, rubric: str) -> Mapping[str, Any] | None:
    """The judge's record for one output and rubric (``None`` when it was not judged)."""
    judged = (output.scores or {}).get(JUDGE_KEY)
    if not isinstance(judged, Mapping):
        return None
    entry = (judged.get("rubrics") or {}).get(rubric)
    return entry if isinstance(entry, Mapping) else None


def judged_labels(output: ScoredOutput, rubric: str) -> list[str]:
    """The parsed labels of one output (one per judge repeat that gave one)."""
    entry = judge_entry(output, rubric)
    return [str(x) for x in (entry or {}).get("labels", ()) if x is not None]


def any_judged(outputs: Sequence[ScoredOutput]) -> bool:
    """Whether some output carries judge verdicts (the suite ran with a judge)."""
    return any(isinstance((o.scores or {}).get(JUDGE_KEY), Mapping) for o in outputs)


class JudgedRates(NamedTuple):
    """A rubric's labels over one provider's outputs, as rates with intervals."""

    #: Label -> share of parsed grades (every judge repeat a grade, items resampled whole).
    rates: dict[str, Estimate]
    #: Outputs with at least one parsed grade (the items the judged metrics are over).
    judged: list[ScoredOutput]
    #: Share of outputs graded >= 2 times whose parsed grades are not all the same (Clopper-Pearson).
    flip_rate: Estimate
    counts: dict[str, Any]


def judged_rates(
    outputs: Sequence[ScoredOutput], rubric: Rubric, *, n_resamples: int, seed: int
) -> JudgedRates:
    """Rates of each label of ``rubric`` over the outputs' judge verdicts.

    Each parsed grade is a unit; with ``judge_repeats`` k an output has up to k grades and
    the interval is a bootstrap that resamples whole items with all their grades, so it
    widens with the judge's own disagreement (the variance-aware interval). Replies
    without a label and failed judge calls are counted, never graded.
    """
    flags: dict[str, list[bool]] = {label: [] for label in rubric.labels}
    ids: list[str] = []
    judged: list[ScoredOutput] = []
    tally: Counter[str] = Counter()
    flips = graded_twice = 0
    for o in outputs:
        entry = judge_entry(o, rubric.name)
        if entry is None:
            tally["not_judged"] += 1
            continue
        for status in entry.get("status", ()):
            tally[str(status)] += 1
        labels = [str(x) for x in entry.get("labels", ()) if x is not None]
        if not labels:
            continue
        judged.append(o)
        if len(labels) > 1:
            graded_twice += 1
            flips += len(set(labels)) > 1
        for label in labels:
            ids.append(o.sample.id)
            for name in rubric.labels:
                flags[name].append(label == name)
    rates = {
        label: outputs_rate(flags[label], ids, n_resamples=n_resamples, seed=seed)
        if ids
        else Estimate.empty("no parsed judge grades")
        for label in rubric.labels
    }
    counts = {
        "rubric": rubric.name,
        "outputs": len(outputs),
        "judged_outputs": len(judged),
        "grades": len(ids),
        "unparsed": tally["ambiguous"] + tally["unparseable"] + tally["empty"],
        "by_status": {k: v for k, v in sorted(tally.items()) if k != "not_judged"},
        "failed_calls": tally["failed"],
        "not_judged": tally["not_judged"],
        "graded_twice_or_more": graded_twice,
    }
    flip = (
        clopper_pearson(flips, graded_twice) if graded_twice else Estimate.empty("no output was graded twice")
    )
    return JudgedRates(rates, judged, flip, counts)
