"""``rai judge calibrate``: measure a judge against human labels before trusting its grades.

The judge (any provider config) grades a labelled set with one rubric; its calls go through
the runner like a run's (journaled in ``<out>/journal.sqlite``, so an interrupted
calibration resumes, retried, cached by key), and the agreement of its parsed grades with
the gold labels is computed by :func:`rai_harness.stats.agreement` (accuracy, Cohen's kappa,
confusion matrix, each with an interval; an unparsable reply is its own column, never a
guess). The result is ``<out>/calibration.json``, which a suite's ``judge_calibration``
names so the run record and report carry the judge's measured agreement.

A failed judge call (an outage, a rate limit, a timeout after the retries) is not a reply:
it is counted in ``calls.failed`` and left out of the agreement, which is over the items the
judge answered. When more than ``max_error_rate`` of the calls failed (or all of them), the
calibration is written with ``usable: false`` and its ``problems``, and a run refuses it as
a suite's ``judge_calibration``: the agreement of a judge that mostly did not answer
measures the outage.

Labelled sets:

* HaluEval's QA pairs (``knowledge, question, right_answer, hallucinated_answer`` per row,
  e.g. ``qa_one-turn_data.json``): each row gives two items for the ``halueval_qa`` rubric,
  the right answer (gold ``no``: not hallucinated) and the hallucinated one (gold ``yes``).
* Rows that name their ``rubric``, carry its placeholders and a gold ``label`` (e.g.
  ``datasets/judge_simpleqa/grading.jsonl`` for ``simpleqa_grader``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rai_harness import __version__
from rai_harness.errors import ConfigError
from rai_harness.pricing import PriceTable
from rai_harness.providers.base import ProviderConfig, build_provider
from rai_harness.record import CallRecord, DatasetInfo, write_json_atomic, write_samples
from rai_harness.run.execute import _apply_prices, _seed_requests
from rai_harness.run.journal import Journal, call_key
from rai_harness.run.judge import judge_params
from rai_harness.run.runner import RetryPolicy, generate_calls
from rai_harness.run.score import summarize_provider
from rai_harness.stats import Agreement, agreement
from rai_harness.suites.data import load_rows, sample_rows
from rai_harness.suites.judging import Rubric, get_rubric, parse_verdict
from rai_harness.types import ChatRequest

__all__ = [
    "CALIBRATION_FILE",
    "Calibration",
    "LabelledItem",
    "calibrate_judge",
    "calibrate_sync",
    "load_labelled",
]

CALIBRATION_FILE = "calibration.json"
#: Version of the calibration.json format (2: failed calls left out of the agreement; ``usable``,
#: ``problems``).
CALIBRATION_SCHEMA = 2
_HALUEVAL_FIELDS = ("knowledge", "question", "right_answer", "hallucinated_answer")


@dataclass(frozen=True)
class LabelledItem:
    """One item to grade: the rubric's placeholder values and the gold label."""

    id: str
    values: Mapping[str, str]
    gold: str


def _halueval_items(rows: Sequence[Mapping[str, Any]]) -> list[LabelledItem]:
    items = []
    for i, row in enumerate(rows):
        base = {"knowledge": str(row["knowledge"]), "question": str(row["question"])}
        items.append(LabelledItem(f"halu-{i:04d}-right", {**base, "answer": str(row["right_answer"])}, "no"))
        items.append(
            LabelledItem(f"halu-{i:04d}-halluc", {**base, "answer": str(row["hallucinated_answer"])}, "yes")
        )
    return items


def load_labelled(
    path: str | Path, *, limit: int | None = None, seed: int = 0
) -> tuple[Rubric, list[LabelledItem], DatasetInfo]:
    """Read a labelled set (see the module docstring); ``limit`` keeps a seeded sample of rows.

    Raises:
        ConfigError: Unreadable file, unknown format, mixed rubrics, missing fields or a label
            outside the rubric's labels (naming the file and row).
    """
    if not Path(path).is_file():
        raise ConfigError(
            "no such labelled set (a JSONL file: see `rai judge calibrate --help`)", file=str(path)
        )
    rows, info = load_rows(str(path), default=str(path), base_dir=None, subset=None, split="test")
    if not rows:
        raise ConfigError("the labelled set is empty", file=str(path))
    rows = sample_rows(rows, limit, seed)
    if all(all(k in row for k in _HALUEVAL_FIELDS) for row in rows):
        return get_rubric("halueval_qa"), _halueval_items(rows), info
    rubrics = {str(row.get("rubric")) for row in rows}
    if len(rubrics) != 1 or "None" in rubrics:
        raise ConfigError(
            "each row needs HaluEval's QA fields (knowledge, question, right_answer, hallucinated_answer) "
            "or one `rubric` shared by every row, its placeholders and a gold `label`",
            file=str(path),
        )
    rubric = get_rubric(rubrics.pop())
    items = []
    for i, row in enumerate(rows):
        missing = [p for p in rubric.placeholders if p not in row]
        label = row.get("label")
        if missing or label not in rubric.labels:
            why = (
                f"lacks {', '.join(missing)}"
                if missing
                else f"has label {label!r}, not one of {rubric.labels}"
            )
            raise ConfigError(f"row {row.get('id', i + 1)!r} {why}", file=str(path))
        values = {p: "" if row[p] is None else str(row[p]) for p in rubric.placeholders}
        items.append(LabelledItem(str(row.get("id", f"row-{i + 1:04d}")), values, str(label)))
    ids = Counter(item.id for item in items)
    dupes = [k for k, n in ids.items() if n > 1]
    if dupes:
        raise ConfigError(f"item id {dupes[0]!r} occurs {ids[dupes[0]]} times", file=str(path))
    return rubric, items, info


@dataclass(frozen=True)
class Calibration:
    """A judge's measured agreement on a labelled set (also written to ``calibration.json``)."""

    judge: dict[str, Any]
    rubric: str
    data: DatasetInfo
    agreement: Agreement
    calls: dict[str, Any]
    examples: list[dict[str, Any]]
    #: Why the agreement must not be used (too many failed calls); empty when it may.
    problems: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        """Whether the agreement measures the judge (not an outage)."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The calibration.json document."""
        return {
            "schema": CALIBRATION_SCHEMA,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "harness_version": __version__,
            "judge": self.judge,
            "rubric": self.rubric,
            "data": self.data.model_dump(mode="json"),
            "agreement": self.agreement.to_dict(),
            "calls": self.calls,
            "usable": self.usable,
            "problems": list(self.problems),
            "disagreements": self.examples,
        }


async def calibrate_judge(
    judge: ProviderConfig,
    data: str | Path,
    *,
    out_dir: str | Path,
    limit: int | None = None,
    seed: int = 0,
    n_resamples: int = 2000,
    prices: PriceTable | None = None,
    max_error_rate: float = 0.05,
) -> Calibration:
    """Grade a labelled set with ``judge``; write and return its agreement with the gold labels.

    Args:
        judge: The judge's provider config (``judges:`` entry of a run config).
        data: The labelled set (module docstring).
        out_dir: Folder for ``journal.sqlite``, ``judge_calls.jsonl`` and ``calibration.json``.
        limit: Use a seeded sample of this many rows.
        seed: Seeds the row sample, the request seeds and the bootstrap.
        n_resamples: Bootstrap resamples for the kappa interval.
        prices: Price table for the judge's cost (default: the shipped one).
        max_error_rate: Largest share of failed judge calls a usable calibration may have
            (a run config's ``runner.max_error_rate``).
    """
    rubric, items, info = load_labelled(data, limit=limit, seed=seed)
    judge.check_requirements()
    params = judge_params(judge, rubric.max_tokens)
    requests = _seed_requests(
        [
            ChatRequest(
                sample_id=f"calibrate:{rubric.name}:{item.id}",
                messages=rubric.render(item.values),
                params=params,
                metadata={"item": item.id, "rubric": rubric.name, "gold": item.gold},
            )
            for item in items
        ],
        seed,
    )
    price = (prices or PriceTable.default()).resolve(judge.kind, judge.model, judge.pricing)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    journal = Journal(out / "journal.sqlite")
    provider = build_provider(judge)
    try:
        identity = judge.cache_identity()
        # A finished calibration re-parsed (e.g. after a parser change) loads no model.
        if any(journal.get(call_key(identity, r)) is None for r in requests):
            await provider.load()
        records = await generate_calls(
            provider,
            requests,
            provider_id=judge.provider_id,
            provider_identity=identity,
            concurrency=judge.concurrency,
            rpm=judge.rpm,
            policy=RetryPolicy(max_retries=judge.max_retries, timeout_s=judge.timeout_s),
            journal=journal,
            price=price,
            seed=seed,
        )
    finally:
        with contextlib.suppress(Exception):
            await provider.aclose()
        journal.close()
    records = _apply_prices(list(records), price)
    write_samples(out / "judge_calls.jsonl", records)
    verdicts = [parse_verdict(rubric, r.output) if r.ok else None for r in records]
    judged = [v.label if v is not None else None for v in verdicts]
    # Failed calls are no replies: the agreement is over the items the judge answered.
    answered = [i for i, v in enumerate(verdicts) if v is not None]
    result = agreement(
        [items[i].gold for i in answered],
        [judged[i] for i in answered],
        rubric.labels,
        n_resamples=n_resamples,
        seed=seed,
    )
    summary = summarize_provider(judge.kind, judge.model, records, price, {})
    calls = {
        "calls": summary.calls,
        "failed": summary.failed,
        "answered": len(answered),
        "reused": summary.reused,
        "status": dict(Counter(v.status if v is not None else "failed" for v in verdicts)),
        "latency_s": summary.latency_s.model_dump(mode="json"),
        "cost_usd": summary.cost.total_usd,
    }
    calibration = Calibration(
        judge={
            "id": judge.provider_id,
            "kind": judge.kind,
            "model": judge.model,
            "identity": judge.cache_identity(),
        },
        rubric=rubric.name,
        data=info,
        agreement=result,
        calls=calls,
        examples=_disagreements(items, records, judged),
        problems=_failure_problems(summary.failed, summary.calls, max_error_rate),
    )
    write_json_atomic(out / CALIBRATION_FILE, _dumps(calibration.to_dict()))
    return calibration


def _failure_problems(failed: int, calls: int, max_error_rate: float) -> tuple[str, ...]:
    """Why a calibration with this many failed judge calls is unusable (empty when it is usable)."""
    if calls and failed == calls:
        return (f"all {calls} judge calls failed: nothing was measured",)
    if calls and failed / calls > max_error_rate:
        return (
            f"{failed} of {calls} judge calls failed ({failed / calls:.1%} > max_error_rate "
            f"{max_error_rate:.1%}): the agreement would be over a subset the failures chose",
        )
    return ()


def _disagreements(
    items: Sequence[LabelledItem], records: Sequence[CallRecord], judged: Sequence[str | None], keep: int = 20
) -> list[dict[str, Any]]:
    """The first items the judge got wrong, with its reply (for a reader to see why)."""
    out = []
    for item, record, label in zip(items, records, judged, strict=True):
        if label != item.gold:
            reply = record.output if record.ok else (record.error.message if record.error else None)
            row = {"id": item.id, "gold": item.gold, "judge": label, "reply": (reply or "")[:300]}
            out.append(row if record.ok else {**row, "failed": True})
        if len(out) >= keep:
            break
    return out


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def calibrate_sync(judge: ProviderConfig, data: str | Path, **kwargs: Any) -> Calibration:
    """Blocking wrapper around :func:`calibrate_judge`."""
    return asyncio.run(calibrate_judge(judge, data, **kwargs))
