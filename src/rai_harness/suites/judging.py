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
   then the reply's first word and lines that hold only a label (a reply that recites the
   options, ``A: CORRECT`` then ``B: INCORRECT``, names two), then (rubrics whose
   forms are distinctive upper-case words only) those words anywhere. The first tier that
   names labels decides: exactly one distinct label -> parsed; two or more ->
   ``status="ambiguous"`` (no label).
4. Nothing found -> ``status="unparseable"`` (no label).

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
        words = alts([f for f in self.forms if len(f) > 1])
        letters = alts([f for f in self.forms if len(f) == 1])
        edge = r"(?<![A-Za-z0-9_])"
        # A word form ends at a non-word character; a lone letter ("A") only at punctuation or the
        # end, so prose that starts "A predicted answer..." is not read as grade A.
        loose = rf"{edge}({every})(?![A-Za-z0-9_])"
        strict = rf"{edge}((?:{words})(?![A-Za-z0-9_])|(?:{letters})(?=\s*(?:$|[:.)\]\"',;!\-])))"
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

    def label_of(self, form: str) -> str:
        """The label a surface form stands for."""
        if form in self.forms:
            return self.forms[form]
        lowered = {k.lower(): v for k, v in self.forms.items()}
        return lowered[form.lower()]

    def render(self, values: Mapping[str, str]) -> tuple[ChatMessage, ...]:
        """The judge's messages for one item (one user message).

        Raises:
            ConfigError: A placeholder has no value.
        """
        missing = [p for p in self.placeholders if p not in values]
        if missing:
            raise ConfigError(f"judge rubric {self.name!r} needs {', '.join(missing)}")
        text = fill_template(self.template, {p: str(values[p]) for p in self.placeholders})
        return (ChatMessage("user", text),)


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


def _clean(text: str) -> str:
    text = strip_reasoning(text[:MAX_REPLY_CHARS])
    # Markdown emphasis and code marks around a grade ("**B**", "`CORRECT`"); keep "_" (NOT_ATTEMPTED).
    return re.sub(r"[*`#]+", " ", text).replace("\u201c", '"').replace("\u201d", '"').strip()


def parse_verdict(rubric: Rubric, text: str | None) -> Verdict:
    """Read a judge reply as one of the rubric's labels, or say why it cannot (module docstring)."""
    reply = _clean(text or "")
    if not re.search(r"[A-Za-z0-9]", reply):
        return Verdict(None, "empty", "empty reply")
    p = rubric._patterns
    whole = p["whole"].fullmatch(reply)
    if whole:
        found = {rubric.label_of(g) for g in whole.groups() if g}
        if len(found) == 1:
            return Verdict(found.pop(), "parsed", "whole")
        return Verdict(None, "ambiguous", "whole reply names two labels")
    # A line that is a whole label ("A: CORRECT") counts with both its forms, so a reply that
    # recites the options ("A: CORRECT\nB: INCORRECT") names two labels and is ambiguous.
    pair_lines = [
        g for line in reply.splitlines() if (w := p["whole"].fullmatch(line)) for g in w.groups() if g
    ]
    tiers: list[tuple[str, list[str]]] = [
        ("cue", [m.group(1) for m in p["cue"].finditer(reply)]),
        (
            "first/line",
            [m.group(1) for m in p["line"].finditer(reply)]
            + pair_lines
            + ([m.group(1)] if (m := p["first"].match(reply)) else []),
        ),
    ]
    if rubric.anywhere:
        tiers.append(("any", [m.group(1) for m in p["any"].finditer(reply)]))
    for how, forms in tiers:
        labels = {rubric.label_of(f) for f in forms}
        if len(labels) == 1:
            return Verdict(labels.pop(), "parsed", how)
        if len(labels) > 1:
            return Verdict(None, "ambiguous", f"{how}: names {', '.join(sorted(labels))}")
    return Verdict(None, "unparseable", "no label found")


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
