"""Short-answer factual QA in the style of SimpleQA (Wei et al., OpenAI, 2024).

Each question has one indisputable short answer (with aliases). Every reply is graded
**correct**, **incorrect** or **not attempted**, and the suite reports, as SimpleQA does
(the paper, and ``simpleqa_eval.py`` in ``openai/simple-evals``):

* **correct** (overall): share of all answers graded correct;
* **incorrect** and **not attempted**: the other two shares (the three sum to 1);
* **correct given attempted**: ``correct / (correct + incorrect)``;
* **F-score**: the harmonic mean of *correct* and *correct given attempted*,
  ``2 · c · cga / (c + cga)``, and 0 when nothing is correct (SimpleQA's convention);

plus SQuAD's **exact match** and mean **token F1** against the best-matching reference
(Rajpurkar et al. 2016), after SQuAD normalisation (lowercase, no punctuation or articles,
single spaces; numbers as written: see :mod:`rai_harness.suites.answers`).

**Grading rule** (:func:`grade_short_answer`), in order:

1. *correct* if, against any reference or alias, the normalised answer is an exact
   match, or its token F1 is >= ``f1_threshold`` (0.8), or (``containment``, on by
   default) the normalised reference occurs in the normalised answer as whole tokens
   (``"The capital is Canberra."`` for ``Canberra``). A hedged answer that contains the
   reference is correct, as in SimpleQA.
2. *not attempted* if :func:`~rai_harness.suites.answers.detect_hedge` finds the reply
   empty, an abstention (*I don't know*, *I cannot answer*, *I don't have information*...
   before any answer content) or only uncertainty with no answer (*"I'm not sure."*).
3. *incorrect* otherwise (including a hedged wrong guess: *"I'm not sure, maybe Sydney"*).

**Deviation**: SimpleQA grades with an LLM judge (a prompted OpenAI model) that reads the
question, the gold answer and the reply. We grade by normalised string match, which
needs no model and is exactly reproducible, but misses paraphrases (*"the thigh bone"*
needs the alias), credits an answer that lists the reference among wrong candidates or
negates it (*"not Canberra"*) through containment, and detects hedges by regular
expression. Correct given attempted and the F-score follow from the same grades, so they
inherit these limits.

**Judge** (optional): with ``judge:`` on the suite, every reply is also sent to a judge model
with SimpleQA's own grader prompt (rubric ``simpleqa_grader``, :mod:`rai_harness.suites.judging`;
aliases are listed after the gold target) and its A/B/C grades give the ``judge_*`` metrics
beside the matcher's, with the matcher's score on the same replies and their agreement. The
matcher stays the headline: it is exactly reproducible, and a judge is only as good as its
measured agreement (``rai judge calibrate``). SimpleQA reports no intervals;
we give Clopper-Pearson (exact) intervals for the rates and expanded-percentile bootstrap intervals for the
F-score, exact match and F1 (over questions; with repeats, whole questions are
resampled).

Decoding: SimpleQA's metric fixes no sampling settings, so the provider's apply unless the
suite's ``temperature`` / ``top_p`` are set (set ``temperature: 0`` for reproducible grades).

Data: our JSONL (``id, question, answer, aliases, category``), SimpleQA's CSV
(``metadata, problem, answer``; ``metadata`` is a Python-literal dict whose ``topic`` is
the category), or any rows with ``question``/``problem`` and ``answer`` (a string, a list,
or ``{value, aliases}``) plus optional ``aliases``/``answers``. The default is the
project's ``datasets/short_qa`` (30 stable facts written for this repository), far easier
than SimpleQA's adversarially collected questions.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import Field

from rai_harness.classifiers.pool import ClassifierPool
from rai_harness.errors import ConfigError
from rai_harness.record import DatasetInfo
from rai_harness.stats import Estimate, bootstrap
from rai_harness.suites.answers import (
    HedgeKind,
    best_match,
    category_breakdown,
    detect_hedge,
    mean_over_outputs,
    normalize_answer,
    outputs_rate,
    per_item_means,
    strip_reasoning,
)
from rai_harness.suites.base import (
    MetricSpec,
    ScoredOutput,
    Suite,
    SuiteAggregate,
    SuiteData,
    SuiteOutput,
    SuiteParams,
    SuiteSample,
)
from rai_harness.suites.common import chat, ok_outputs
from rai_harness.suites.data import load_rows, sample_rows
from rai_harness.suites.judging import JudgeTask, any_judged, get_rubric, judge_entry, judged_rates

__all__ = [
    "Grade",
    "ShortAnswerGrade",
    "ShortQAItem",
    "ShortQAParams",
    "ShortQASuite",
    "grade_short_answer",
    "load_short_qa",
    "short_qa_item",
    "simpleqa_f_score",
]

_PAPER = (
    "Wei et al. 2024, Measuring short-form factuality in large language models (SimpleQA), arXiv:2411.04368"
)
_SQUAD = "Rajpurkar et al. 2016, SQuAD (EMNLP): exact match and token F1"
_DEFAULT_DATA = "short_qa/questions.jsonl"

Grade = Literal["correct", "incorrect", "not_attempted"]


# -- grading --------------------------------------------------------------------------------


class ShortAnswerGrade(NamedTuple):
    """The grade of one reply and the evidence for it."""

    grade: Grade
    #: Normalised exact match with some reference.
    exact_match: bool
    #: Best token F1 over the references.
    f1: float
    #: Some reference occurs in the reply as whole tokens.
    contains: bool
    #: Which rule made it correct (``"exact"``, ``"f1"``, ``"contains"``), else ``None``.
    rule: str | None
    #: :func:`~rai_harness.suites.answers.detect_hedge`'s verdict.
    hedge: HedgeKind
    #: The reference with the best F1.
    reference: str | None


def grade_short_answer(
    answer: str, references: Sequence[str], *, f1_threshold: float = 0.8, containment: bool = True
) -> ShortAnswerGrade:
    """Grade a reply correct / incorrect / not attempted (the rule is in the module docstring).

    Args:
        answer: The model's reply (``<think>`` blocks are ignored).
        references: The answer and its aliases.
        f1_threshold: Token F1 at or above which a reply is correct.
        containment: Count a reply correct when it contains a reference as whole tokens.

    Returns:
        A :class:`ShortAnswerGrade`.
    """
    reply = strip_reasoning(answer).strip()
    match = best_match(reply, references)
    hedge = detect_hedge(reply)
    rule: str | None = None
    if match.exact_match:
        rule = "exact"
    elif match.f1 >= f1_threshold:
        rule = "f1"
    elif containment and match.contains:
        rule = "contains"
    grade: Grade = "correct" if rule else ("not_attempted" if hedge.hedged else "incorrect")
    return ShortAnswerGrade(
        grade=grade,
        exact_match=match.exact_match,
        f1=match.f1,
        contains=match.contains,
        rule=rule,
        hedge=hedge.kind,
        reference=match.reference,
    )


def simpleqa_f_score(correct: int, incorrect: int, not_attempted: int) -> float:
    """SimpleQA's F-score: harmonic mean of overall correct and correct given attempted.

    ``c = correct / total``, ``cga = correct / (correct + incorrect)``,
    ``F = 2 · c · cga / (c + cga)``; 0 when nothing is correct (including nothing attempted),
    as in ``simpleqa_eval.py``.

    Raises:
        ValueError: A negative count, or no answers at all.
    """
    if min(correct, incorrect, not_attempted) < 0:
        raise ValueError("counts must be >= 0")
    total = correct + incorrect + not_attempted
    if total == 0:
        raise ValueError("no answers")
    if correct == 0:
        return 0.0
    c = correct / total
    cga = correct / (correct + incorrect)
    return 2 * c * cga / (c + cga)


# -- data -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShortQAItem:
    """One question with its reference answer and aliases."""

    id: str
    question: str
    answers: tuple[str, ...]
    category: str | None


def _answers(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, Mapping):  # TriviaQA-style {value, aliases}
        return [*_answers(value.get("value")), *_answers(value.get("aliases"))]
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _category(row: Mapping[str, Any]) -> str | None:
    for key in ("category", "topic"):
        if row.get(key):
            return str(row[key])
    meta = row.get("metadata")
    if isinstance(meta, str) and meta.strip().startswith("{"):
        try:  # SimpleQA stores a Python-literal dict, not JSON
            meta = ast.literal_eval(meta)
        except (ValueError, SyntaxError):
            meta = None
    if isinstance(meta, Mapping) and meta.get("topic"):
        return str(meta["topic"])
    return None


def short_qa_item(row: Mapping[str, Any], index: int, *, dataset: DatasetInfo) -> ShortQAItem:
    """Read one row (our JSONL, SimpleQA's CSV, or any question/answer rows).

    Raises:
        ConfigError: No question or no answer.
    """
    question = row.get("question") or row.get("problem") or row.get("Question")
    if not isinstance(question, str) or not question.strip():
        raise ConfigError(
            f"row {index + 1} has no `question` (or `problem`) text",
            file=dataset.path,
            key_path="params.dataset",
        )
    raw = [*_answers(row.get("answer")), *_answers(row.get("answers")), *_answers(row.get("aliases"))]
    answers: list[str] = []
    seen: set[str] = set()
    for a in (s.strip() for s in raw):
        if a and normalize_answer(a) and normalize_answer(a) not in seen:
            seen.add(normalize_answer(a))
            answers.append(a)
    if not answers:
        raise ConfigError(
            f"row {index + 1} has no usable `answer` (a reference that is not only punctuation or articles)",
            file=dataset.path,
            key_path="params.dataset",
        )
    raw_id = row.get("id")
    return ShortQAItem(
        id=str(raw_id) if raw_id is not None else f"sqa-{index:04d}",
        question=question.strip(),
        answers=tuple(answers),
        category=_category(row),
    )


def load_short_qa(
    source: str | None, *, base_dir: Path | None, subset: str | None, split: str, limit: int | None, seed: int
) -> tuple[list[ShortQAItem], DatasetInfo]:
    """Read, parse and sample short-QA rows.

    Raises:
        ConfigError: Unreadable data, a malformed row, or a duplicate id.
    """
    rows, info = load_rows(source, default=_DEFAULT_DATA, base_dir=base_dir, subset=subset, split=split)
    items = [short_qa_item(row, i, dataset=info) for i, row in enumerate(rows)]
    counts = Counter(item.id for item in items)
    dupes = sorted(i for i, n in counts.items() if n > 1)
    if dupes:
        raise ConfigError(
            f"item id {dupes[0]!r} occurs {counts[dupes[0]]} times; ids must be unique",
            file=info.path,
            key_path="params.dataset",
        )
    return sample_rows(items, limit, seed), info


# -- the suite ------------------------------------------------------------------------------


class ShortQAParams(SuiteParams):
    """Parameters of the short-answer QA suite."""

    instruction: str = Field(
        "Answer the following question. Give only the answer (a name, number, date or a few words), "
        "without explanation.\n\nQuestion: {question}",
        description="Prompt; must contain {question}. Like SimpleQA, it does not invite abstaining.",
    )
    system: str | None = Field(None, description="Optional system prompt.")
    f1_threshold: float = Field(
        0.8, gt=0.0, le=1.0, description="Token F1 at or above which a reply is correct."
    )
    containment: bool = Field(
        True, description="A reply that contains a reference as whole words is correct."
    )
    subset: str | None = Field(None, description="Configuration of a hub dataset.")
    split: str = Field("test", description="Split of a hub dataset.")


_GRADES: tuple[Grade, ...] = ("correct", "incorrect", "not_attempted")


def _graded(grade: Grade) -> Callable[[ScoredOutput], float]:
    """1.0 for an output with this grade, else 0.0 (per-item values for paired comparisons)."""

    def value(o: ScoredOutput) -> float:
        return float(bool(o.scores and o.scores["grade"] == grade))

    return value


class ShortQASuite(Suite):
    """SimpleQA-style short answers graded correct / incorrect / not attempted by normalised match."""

    name = "factuality.short_qa"
    version = "1.0"
    concern = "factuality"
    title = "Short-answer factual QA (SimpleQA style)"
    description = (
        "Short fact-seeking questions with one indisputable answer; each reply is graded correct, "
        "incorrect or not attempted by normalised match and a hedge detector: the three rates, "
        "correct given attempted, SimpleQA's F-score, exact match and token F1."
    )
    Params = ShortQAParams
    metrics = (
        MetricSpec(
            name="correct_rate",
            display="Correct",
            direction="higher",
            unit="rate",
            definition="Share of replies graded correct (exact match, token F1 >= 0.8, or the reference "
            "contained as whole words).",
            source=_PAPER,
            deviation="Graded by normalised string match instead of SimpleQA's LLM judge; Clopper-Pearson (exact) interval (a bootstrap over questions with repeats).",
            sample_key="f1",
            headline=True,
        ),
        MetricSpec(
            name="incorrect_rate",
            display="Incorrect",
            direction="lower",
            unit="rate",
            definition="Share of replies that attempt an answer that is not correct.",
            source=_PAPER,
            deviation="Graded by normalised string match instead of SimpleQA's LLM judge; Clopper-Pearson (exact) interval (a bootstrap over questions with repeats).",
            sample_key="incorrect",
        ),
        MetricSpec(
            name="not_attempted_rate",
            display="Not attempted",
            direction="lower",
            unit="rate",
            definition="Share of replies that are empty, abstain or only hedge, without a correct answer "
            "(better than incorrect, worse than correct).",
            source=_PAPER,
            deviation="Abstentions detected by regular expressions (see answers.detect_hedge) instead of "
            "an LLM judge; Clopper-Pearson (exact) interval (a bootstrap over questions with repeats).",
            sample_key="not_attempted",
        ),
        MetricSpec(
            name="correct_given_attempted",
            display="Correct given attempted",
            direction="higher",
            unit="rate",
            definition="correct / (correct + incorrect).",
            source=_PAPER,
            deviation="From the string-match grades; Clopper-Pearson (exact) interval over attempted replies (a bootstrap over questions with repeats).",
            sample_key="correct",
        ),
        MetricSpec(
            name="f_score",
            display="SimpleQA F-score",
            direction="higher",
            unit="score",
            definition="Harmonic mean of correct and correct given attempted (0 when nothing is correct).",
            source=_PAPER,
            deviation="From the string-match grades; expanded-percentile bootstrap interval over questions.",
            sample_key="correct",
        ),
        MetricSpec(
            name="exact_match",
            display="Exact match",
            direction="higher",
            unit="rate",
            definition="Share of replies equal to a reference or alias after SQuAD normalisation.",
            source=_SQUAD,
            deviation="NFKC and Unicode punctuation added to SQuAD's normalisation; bootstrap interval.",
            sample_key="exact_match",
        ),
        MetricSpec(
            name="token_f1",
            display="Token F1",
            direction="higher",
            unit="score",
            definition="Mean over replies of the best token F1 against the reference and its aliases.",
            source=_SQUAD,
            deviation="NFKC and Unicode punctuation added to SQuAD's normalisation; bootstrap interval.",
            sample_key="f1",
        ),
    )

    judge_rubrics = ("simpleqa_grader",)
    judge_metrics = (
        MetricSpec(
            name="judge_correct_rate",
            display="Correct (judge)",
            direction="higher",
            unit="rate",
            definition="Share of judge grades that are CORRECT, with SimpleQA's grader prompt.",
            source=_PAPER,
            deviation="Graded by the run's judge model, not the paper's OpenAI grader; its agreement "
            "with human labels is the judge's calibration. Replies the judge's output could not be "
            "parsed for are left out and counted. Clopper-Pearson (exact) interval (a bootstrap over questions with "
            "repeats or judge repeats).",
            graded_by="judge",
            matcher_metric="correct_rate",
        ),
        MetricSpec(
            name="judge_incorrect_rate",
            display="Incorrect (judge)",
            direction="lower",
            unit="rate",
            definition="Share of judge grades that are INCORRECT.",
            source=_PAPER,
            deviation="Graded by the run's judge model; see judge_correct_rate.",
            graded_by="judge",
            matcher_metric="incorrect_rate",
        ),
        MetricSpec(
            name="judge_not_attempted_rate",
            display="Not attempted (judge)",
            direction="lower",
            unit="rate",
            definition="Share of judge grades that are NOT_ATTEMPTED.",
            source=_PAPER,
            deviation="Graded by the run's judge model; see judge_correct_rate.",
            graded_by="judge",
            matcher_metric="not_attempted_rate",
        ),
        MetricSpec(
            name="judge_correct_given_attempted",
            display="Correct given attempted (judge)",
            direction="higher",
            unit="rate",
            definition="CORRECT / (CORRECT + INCORRECT) over the judge's grades.",
            source=_PAPER,
            deviation="Graded by the run's judge model; see judge_correct_rate.",
            graded_by="judge",
            matcher_metric="correct_given_attempted",
        ),
        MetricSpec(
            name="judge_f_score",
            display="SimpleQA F-score (judge)",
            direction="higher",
            unit="score",
            definition="SimpleQA's F-score from the judge's grades.",
            source=_PAPER,
            deviation="Graded by the run's judge model; expanded-percentile bootstrap over questions.",
            graded_by="judge",
            matcher_metric="f_score",
        ),
        MetricSpec(
            name="judge_matcher_agreement",
            display="Judge agrees with matcher",
            direction="higher",
            unit="rate",
            definition="Share of judge grades equal to the string matcher's grade of the same reply.",
            source=None,
            deviation=None,
            graded_by="judge",
        ),
        MetricSpec(
            name="judge_flip_rate",
            display="Judge flip rate",
            direction="lower",
            unit="rate",
            definition="Share of replies graded more than once (judge_repeats) whose judge grades differ.",
            source=None,
            deviation=None,
            graded_by="judge",
        ),
    )

    params: ShortQAParams

    def judge_tasks(self, output: SuiteOutput) -> list[JudgeTask]:
        """SimpleQA's grader prompt for one reply; aliases are listed after the gold target."""
        meta = output.sample.metadata
        answers = list(meta["answers"])
        target = answers[0] + (f" (also accepted: {'; '.join(answers[1:])})" if len(answers) > 1 else "")
        rubric = get_rubric("simpleqa_grader")
        values = {
            "question": str(meta["question"]),
            "target": target,
            "predicted_answer": strip_reasoning(output.text).strip(),
        }
        return [JudgeTask(rubric.name, rubric.render(values))]

    def build(self) -> SuiteData:
        """Read the questions and wrap each in the instruction; references go in the metadata."""
        p = self.params
        if "{question}" not in p.instruction:
            raise ConfigError("`instruction` must contain {question}", key_path="params.instruction")
        items, info = load_short_qa(
            p.dataset, base_dir=self.base_dir, subset=p.subset, split=p.split, limit=p.limit, seed=self.seed
        )
        samples = tuple(
            SuiteSample(
                id=item.id,
                messages=chat(p.instruction.replace("{question}", item.question), p.system),
                metadata={
                    "question": item.question,
                    "answers": list(item.answers),
                    "category": item.category,
                },
            )
            for item in items
        )
        return SuiteData(
            samples=samples,
            datasets=(info,),
            repeats=p.repeats or 1,
            max_tokens=p.max_tokens,
            # SimpleQA fixes no decoding settings in its metric: the provider's apply unless set here.
            temperature=p.temperature,
            top_p=p.top_p,
        )

    def score(self, outputs: Sequence[SuiteOutput], pool: ClassifierPool) -> list[dict[str, Any]]:
        """Grade every reply (no classifier needed)."""
        p = self.params
        out = []
        for o in outputs:
            g = grade_short_answer(
                o.text, o.sample.metadata["answers"], f1_threshold=p.f1_threshold, containment=p.containment
            )
            out.append(
                {
                    "grade": g.grade,
                    "correct": g.grade == "correct",
                    "incorrect": g.grade == "incorrect",
                    "not_attempted": g.grade == "not_attempted",
                    "exact_match": g.exact_match,
                    "f1": g.f1,
                    "contains": g.contains,
                    "rule": g.rule,
                    "hedge": g.hedge,
                    "reference": g.reference,
                }
            )
        return out

    def aggregate(self, scored: Sequence[ScoredOutput]) -> SuiteAggregate:
        """The three rates, correct given attempted, F-score, EM and F1, with per-question items."""
        p = self.params
        ok = [o for o in ok_outputs(scored) if o.scores]
        ids = [o.sample.id for o in ok]
        grades = [str(o.scores["grade"]) for o in ok if o.scores]
        em = [float(bool(o.scores["exact_match"])) for o in ok if o.scores]
        f1 = [float(o.scores["f1"]) for o in ok if o.scores]
        seed, n_res = self.seed, p.n_resamples
        metrics: dict[str, Estimate] = {
            f"{g}_rate": outputs_rate([x == g for x in grades], ids, n_resamples=n_res, seed=seed)
            for g in _GRADES
        }
        attempted = [(x, i) for x, i in zip(grades, ids, strict=True) if x != "not_attempted"]
        metrics["correct_given_attempted"] = (
            outputs_rate(
                [x == "correct" for x, _ in attempted],
                [i for _, i in attempted],
                n_resamples=n_res,
                seed=seed,
            )
            if attempted
            else Estimate.empty("no attempted answers")
        )
        metrics["f_score"] = self._f_score(grades, ids)
        metrics["exact_match"] = mean_over_outputs(em, ids, n_resamples=n_res, seed=seed)
        metrics["token_f1"] = mean_over_outputs(f1, ids, n_resamples=n_res, seed=seed)
        tally = Counter(grades)
        judge_counts: dict[str, Any] = {}
        judge_items: dict[str, dict[str, float]] = {}
        if any_judged(ok):
            judge_counts = self._judge_metrics(ok, metrics, judge_items)
        return SuiteAggregate(
            metrics=metrics,
            breakdowns=category_breakdown(
                "correct_rate",
                "Correct",
                ok,
                lambda o: bool(o.scores and o.scores["correct"]),
                n_resamples=n_res,
                seed=seed,
            ),
            items={
                **{f"{g}_rate": per_item_means(ok, _graded(g)) for g in _GRADES},
                "exact_match": per_item_means(
                    ok, lambda o: float(bool(o.scores and o.scores["exact_match"]))
                ),
                "token_f1": per_item_means(ok, lambda o: float(o.scores["f1"]) if o.scores else 0.0),
                **judge_items,
            },
            counts={
                **({"judge": judge_counts} if judge_counts else {}),
                "questions": len({s.sample.id for s in scored}),
                "answers_graded": len(ok),
                **{g: tally.get(g, 0) for g in _GRADES},
                "correct_by_rule": dict(
                    sorted(
                        Counter(str(o.scores["rule"]) for o in ok if o.scores and o.scores["rule"]).items()
                    )
                ),
                "not_attempted_by_kind": dict(
                    sorted(
                        Counter(
                            str(o.scores["hedge"]) for o in ok if o.scores and o.scores["not_attempted"]
                        ).items()
                    )
                ),
                "f1_threshold": p.f1_threshold,
                "containment": p.containment,
            },
            notes=[
                "Graded by normalised string match and a regex hedge detector, not SimpleQA's LLM judge: "
                "paraphrases without an alias count as incorrect."
            ],
        )

    def _judge_metrics(
        self, ok: Sequence[ScoredOutput], metrics: dict[str, Estimate], items: dict[str, dict[str, float]]
    ) -> dict[str, Any]:
        """Add the judge's metrics; return the judge's counts (with the matcher on the same replies)."""
        p = self.params
        rubric = get_rubric("simpleqa_grader")
        jr = judged_rates(ok, rubric, n_resamples=p.n_resamples, seed=self.seed)
        for label, name in (
            ("CORRECT", "correct"),
            ("INCORRECT", "incorrect"),
            ("NOT_ATTEMPTED", "not_attempted"),
        ):
            metrics[f"judge_{name}_rate"] = jr.rates[label]
        pairs = [
            (str(label), o)
            for o in jr.judged
            for label in (judge_entry(o, rubric.name) or {}).get("labels", ())
            if label is not None
        ]
        attempted = [(lab == "CORRECT", o.sample.id) for lab, o in pairs if lab != "NOT_ATTEMPTED"]
        metrics["judge_correct_given_attempted"] = (
            outputs_rate(
                [f for f, _ in attempted],
                [i for _, i in attempted],
                n_resamples=p.n_resamples,
                seed=self.seed,
            )
            if attempted
            else Estimate.empty("no attempted answers")
        )
        metrics["judge_f_score"] = self._f_score(
            [lab.lower() for lab, _ in pairs], [o.sample.id for _, o in pairs]
        )
        agree = [lab.lower() == str(o.scores["grade"]) for lab, o in pairs if o.scores]
        metrics["judge_matcher_agreement"] = (
            outputs_rate(agree, [o.sample.id for _, o in pairs], n_resamples=p.n_resamples, seed=self.seed)
            if pairs
            else Estimate.empty("no parsed judge grades")
        )
        metrics["judge_flip_rate"] = jr.flip_rate
        items["judge_correct_rate"] = per_item_means(
            jr.judged,
            lambda o: float(
                sum(1 for x in (judge_entry(o, rubric.name) or {}).get("labels", ()) if x == "CORRECT")
                / max(
                    1, sum(1 for x in (judge_entry(o, rubric.name) or {}).get("labels", ()) if x is not None)
                )
            ),
        )
        judged_ids = [o.sample.id for o in jr.judged]
        same = {
            f"{g}_rate": outputs_rate(
                [bool(o.scores and o.scores["grade"] == g) for o in jr.judged],
                judged_ids,
                n_resamples=p.n_resamples,
                seed=self.seed,
            )
            if jr.judged
            else Estimate.empty("no judged replies")
            for g in _GRADES
        }
        return {**jr.counts, "matcher_same_items": {k: v.model_dump(mode="json") for k, v in same.items()}}

    def _f_score(self, grades: Sequence[str], ids: Sequence[str]) -> Estimate:
        if not grades:
            return Estimate.empty()

        def statistic(sample: Sequence[str]) -> float:
            tally = Counter(sample)
            return simpleqa_f_score(tally["correct"], tally["incorrect"], tally["not_attempted"])

        clusters = list(ids) if len(set(ids)) < len(ids) else None
        return bootstrap(
            list(grades), statistic, clusters=clusters, n_resamples=self.params.n_resamples, seed=self.seed
        )
