"""A realistic synthetic run folder (``run.json`` + ``samples.jsonl``) for report tests and benchmarks.

:func:`write_synthetic_run` writes what ``rai run`` would write for ``n_samples`` calls per
provider spread over the nine built-in suites, without calling a model. Only the *generate*
phase is synthetic: the real suites build their real samples, a seeded generator answers
each one as a provider of a given harm and skill would (and times, prices, fails and guards
the calls), and then the real score and aggregate phases run
(:func:`~rai_harness.run.score.score_suites`, :func:`~rai_harness.run.score.summarize_provider`).
So every metric, interval, breakdown, paired comparison and headline in the record is exactly
what the suites compute; this module keeps no copy of any suite's metric list, and a change
to a suite shows up here and in the report tests that use it.

The suites' models are replaced by cheap stand-ins in the classifier pool (their ``info()``
says so): a toxicity lexicon for ``minilm-toxicity``/``hf``/``detoxify``, the report's PII
regexes for ``presidio`` and a hashed bag-of-words for ``embedding``. Keyword specs load the
real keyword backend. Some outputs are hostile on purpose (``<script>``, ``onerror=``,
``javascript:`` links, RTL text, emoji) so that the report's escaping is exercised, and some
carry synthetic PII so that redaction is.

Same arguments, same bytes: everything is derived from ``seed``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rai_harness.classifiers.base import Classifier, ClassifierSpec, Embedder, LabelScores
from rai_harness.classifiers.pool import ClassifierPool, load
from rai_harness.pricing import ResolvedPrice
from rai_harness.record import CallError, CallRecord, RunRecord, write_json_atomic, write_run
from rai_harness.report.redaction import regex_spans
from rai_harness.run.execute import BuiltSuite, build_suite
from rai_harness.run.score import PlannedSuite, item_key, run_status, score_suites, summarize_provider
from rai_harness.suites import SUITES
from rai_harness.suites.base import SuiteSample

__all__ = [
    "DEFAULT_PROVIDERS",
    "HOSTILE_STRINGS",
    "SUITE_NAMES",
    "SyntheticProvider",
    "stand_in_pool",
    "write_synthetic_run",
]

#: Strings that must only ever appear escaped (or as inert text) in a report.
HOSTILE_STRINGS: tuple[str, ...] = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "javascript:alert(1)",
)
#: Right-to-left text and emoji that a report must render without garbling its layout.
_INTL = ("مرحبا بالعالم 🙂", "שלום עולם 🔥", "Grüße, naïve café 👋🏽", "数据 🤖")

#: The suites a synthetic run holds: every built-in suite, from the registry.
SUITE_NAMES: tuple[str, ...] = tuple(SUITES)


@dataclass(frozen=True)
class SyntheticProvider:
    """How one synthetic provider behaves.

    Attributes:
        id: Provider id.
        kind: Provider kind (``hf-local``, ``openai``...).
        model: Model name.
        guarded: Wrapped in a guard policy (blocks some inputs, replaces harmful answers).
        pricing: ``"tokens"``, ``"hourly"`` or ``"none"`` (not priced).
        stream: Streams (so TTFT is measured).
        latency_s: Median end-to-end latency, seconds.
        harm: Multiplier on toxicity, bias and leakage (1.0: a small untuned model).
        skill: Probability of a correct factual answer.
        failure_rate: Share of calls that fail for good.
    """

    id: str
    kind: str = "openai"
    model: str = "gpt-4o-mini"
    guarded: bool = False
    pricing: Literal["tokens", "hourly", "none"] = "tokens"
    stream: bool = True
    latency_s: float = 1.0
    harm: float = 0.5
    skill: float = 0.6
    failure_rate: float = 0.02


DEFAULT_PROVIDERS: tuple[SyntheticProvider, ...] = (
    SyntheticProvider(
        "smollm2", kind="hf-local", model="smollm2", pricing="hourly", latency_s=2.4, harm=1.0, skill=0.3
    ),
    SyntheticProvider(
        "smollm2+guard",
        kind="hf-local",
        model="smollm2",
        guarded=True,
        pricing="hourly",
        latency_s=2.6,
        harm=0.45,
        skill=0.3,
    ),
    SyntheticProvider("gpt-4o-mini", latency_s=0.9, harm=0.3, skill=0.72, failure_rate=0.01),
)

# ---------------------------------------------------------------------------------------------
# Stand-in scorers (the suites' own score() and aggregate() run on their outputs)
# ---------------------------------------------------------------------------------------------

#: Words the toxicity stand-in counts; the synthetic toxic answers use them.
_TOXIC_WORDS = ("idiot", "moron", "stupid", "pathetic", "worthless", "disgusting", "waste of space")
_TOXIC_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in _TOXIC_WORDS) + r")\b", re.IGNORECASE)


def _jitter(text: str, scale: float) -> float:
    """A deterministic number in [0, scale) from the text (scores vary like a model's)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest()
    return scale * int.from_bytes(digest, "big") / 2**32


class _ToxicityStandIn:
    """Scores ``toxic`` (and every other label asked for) from a lexicon: 1 - 0.5^hits, plus jitter."""

    produces_spans = False

    def __init__(self, spec: ClassifierSpec) -> None:
        self.name = spec.backend
        self._spec = spec
        self.labels: tuple[str, ...] = ("toxic",)

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        out = []
        for text in texts:
            hits = len(_TOXIC_RE.findall(text))
            score = min(0.999, 1.0 - 0.5**hits + _jitter(text, 0.08))
            out.append(LabelScores({"toxic": round(score, 6)}))
        return out

    def info(self) -> dict[str, Any]:
        return {
            "name": self._spec.backend,
            "backend": "synthetic stand-in (toxicity lexicon)",
            "stands_in_for": self._spec.model_dump(mode="json"),
        }


class _PIIStandIn:
    """Finds PII by shape (the report's redaction regexes) in place of presidio."""

    produces_spans = True

    def __init__(self, spec: ClassifierSpec) -> None:
        self.name = spec.backend
        self._spec = spec
        self.labels: tuple[str, ...] = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN")

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        out = []
        for text in texts:
            spans = tuple(regex_spans(text))
            scores = {
                label: max((s.score for s in spans if s.label == label), default=0.0) for label in self.labels
            }
            out.append(LabelScores(scores, spans=spans))
        return out

    def info(self) -> dict[str, Any]:
        return {
            "name": self._spec.backend,
            "backend": "synthetic stand-in (PII regexes)",
            "stands_in_for": self._spec.model_dump(mode="json"),
        }


class _EmbeddingStandIn:
    """Unit-length hashed bag-of-words vectors: copying a reference answer is similarity 1."""

    def __init__(self, spec: ClassifierSpec, *, fail_with: str | None = None) -> None:
        self.name = spec.backend
        self.dim = 256
        self._spec = spec
        self._fail_with = fail_with

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._fail_with is not None:
            # A scorer that breaks mid-run: the real score phase records the suite as failed.
            raise RuntimeError(self._fail_with)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.blake2b(word.encode(), digest_size=2).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)

    def info(self) -> dict[str, Any]:
        return {
            "name": self._spec.backend,
            "backend": "synthetic stand-in (hashed bag of words)",
            "stands_in_for": self._spec.model_dump(mode="json"),
        }


def stand_in_pool(*, broken_similarity: bool) -> ClassifierPool:
    """A pool that loads keyword specs for real and a cheap stand-in for every model.

    Args:
        broken_similarity: The embedding stand-in raises on use (a scorer failing mid-run).
    """

    def loader(spec: ClassifierSpec) -> Classifier | Embedder:
        if spec.backend == "keyword":
            return load(spec)
        if spec.backend == "presidio":
            return _PIIStandIn(spec)
        if spec.backend == "embedding":
            fail = (
                "similarity model failed on output <script>alert(1)</script>" if broken_similarity else None
            )
            return _EmbeddingStandIn(spec, fail_with=fail)
        return _ToxicityStandIn(spec)

    return ClassifierPool(loader=loader)


# ---------------------------------------------------------------------------------------------
# Answers: what a provider of a given harm and skill replies to each suite's real samples
# ---------------------------------------------------------------------------------------------

_FILLER = (
    *("the", "model", "answered", "that", "it", "would", "consider", "the", "question", "carefully"),
    *("and", "provide", "a", "balanced", "view", "of", "the", "topic", "with", "several", "examples"),
    *("from", "history", "science", "and", "daily", "life"),
)
_REFUSAL = "I'm sorry, I can't help with that request."


def _filler(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_FILLER) for _ in range(words))


def _maybe_hostile(rng: random.Random, text: str, p: float = 0.01) -> str:
    r = rng.random()
    if r < p:
        return f"{text} {rng.choice(HOSTILE_STRINGS)}"
    if r < 2 * p:
        return f"{rng.choice(_INTL)} {text}"
    return text


class _Answer:
    """A synthetic reply and whether a guard on the output would want to block it."""

    __slots__ = ("harmful", "text")

    def __init__(self, text: str, harmful: bool = False) -> None:
        self.text = text
        self.harmful = harmful


def _toxic_text(rng: random.Random) -> str:
    words = rng.sample(_TOXIC_WORDS, rng.randint(1, 3))
    if rng.random() < 0.3:
        # The most toxic continuations are the ones a report shows: make some of them hostile too.
        return f"you {' and '.join(words)}, {rng.choice(HOSTILE_STRINGS)} get lost"
    return f"a {', '.join(words)} mess, and everyone knows it. {_filler(rng, rng.randint(3, 25))}"


def _toxicity(sample: SuiteSample, prov: SyntheticProvider, rng: random.Random) -> _Answer:
    base = 0.35 if sample.metadata.get("challenging") else 0.08
    if rng.random() < base * prov.harm:
        return _Answer(_toxic_text(rng), harmful=True)
    return _Answer(_maybe_hostile(rng, _filler(rng, rng.randint(5, 80))))


def _letter(index: int) -> str:
    return "ABCDEFGHIJ"[index]


def _bbq(sample: SuiteSample, prov: SyntheticProvider, rng: random.Random) -> _Answer:
    meta = sample.metadata
    n = len(meta["options"])
    label, biased = int(meta["label"]), meta.get("biased_answer")
    ambiguous = meta.get("context_condition") == "ambig"
    p_correct = (0.25 + 0.6 * prov.skill) if ambiguous else (0.4 + 0.5 * prov.skill)
    if rng.random() < p_correct:
        choice = label
    elif biased is not None and rng.random() < 0.5 + 0.3 * prov.harm:
        choice = int(biased)
    else:
        choice = rng.choice([i for i in range(n) if i != label] or [label])
    return _Answer(f"{_letter(choice)}. {meta['options'][choice]}")


def _counterfactual(sample: SuiteSample, prov: SyntheticProvider, rng: random.Random) -> _Answer:
    # Some groups draw more negative words from a harmful model: the gap the suite measures.
    group_bias = int(hashlib.sha256(str(sample.metadata.get("group")).encode()).hexdigest(), 16) % 5 / 10
    r = rng.random()
    if r < 0.03:
        return _Answer(_REFUSAL)
    if r < 0.03 + 0.04 * prov.harm:
        return _Answer(_toxic_text(rng), harmful=True)
    negative = rng.random() < 0.1 + group_bias * prov.harm
    mood = "They seemed rude and a bit lazy at first." if negative else "They were friendly and helpful."
    return _Answer(_maybe_hostile(rng, f"{mood} {_filler(rng, rng.randint(4, 30))}"))


def _stereotype(sample: SuiteSample, prov: SyntheticProvider, rng: random.Random) -> _Answer:
    r = rng.random()
    if r < 0.03:
        return _Answer(_filler(rng, rng.randint(5, 20)))  # no verdict
    verdict = "I agree." if r < 0.03 + 0.22 * prov.harm else "I disagree."
    return _Answer(f"{_maybe_hostile(rng, _filler(rng, rng.randint(0, 20)))} {verdict}")


_RECORD_LINE = re.compile(r"^- [A-Za-z ]+: .+$", re.MULTILINE)
_LEAK_BOOST = {"direct": 0.5, "role_play": 1.2, "repeat_context": 1.6, "multi_turn": 1.0}


def _leakage(sample: SuiteSample, prov: SyntheticProvider, rng: random.Random) -> _Answer:
    boost = _LEAK_BOOST.get(str(sample.metadata.get("attack")), 0.8)
    lines = [m for msg in sample.messages for m in _RECORD_LINE.findall(msg.content)]
    if lines and rng.random() < min(0.95, 0.2 * prov.harm * boost):
        quoted = "\n".join(rng.sample(lines, min(len(lines), rng.randint(1, 3))))
        return _Answer(f"Sure! Here is what I have on file:\n{quoted}", harmful=True)
    return _Answer("I'm sorry, but I can't share personal information from customer records.")


#: Synthetic PII that the report's redaction must mask.
_PII_REPLY = (
    "Dear Jane Doe, reach me at jane.doe@example.com or 415-555-0123. "
    "Card 4111 1111 1111 1111, SSN 123-45-6789."
)


def _emission(sample: SuiteSample, prov: SyntheticProvider, rng: random.Random) -> _Answer:
    if rng.random() < 0.3 * prov.harm:
        return _Answer(_PII_REPLY, harmful=True)
    return _Answer(_maybe_hostile(rng, _filler(rng, rng.randint(10, 60))))


def _mc1(sample: SuiteSample, prov: SyntheticProvider, rng: random.Random) -> _Answer:
    meta = sample.metadata
    n = len(meta["permutation"]) if "permutation" in meta else 4
    r = rng.random()
    if r < 0.03:
        return _Answer("I am not sure.")  # unparsed
    if r < 0.03 + 0.15 + 0.55 * prov.skill:
        return _Answer(str(meta["correct_letter"]))
    wrong = [_letter(i) for i in range(n) if _letter(i) != meta["correct_letter"]]
    return _Answer(rng.choice(wrong))


def _gen(sample: SuiteSample, prov: SyntheticProvider, rng: random.Random) -> _Answer:
    meta = sample.metadata
    pool = meta["correct_answers"] if rng.random() < 0.2 + 0.6 * prov.skill else meta["incorrect_answers"]
    return _Answer(f"{rng.choice(list(pool))} {_filler(rng, rng.randint(0, 6))}".strip())


def _short_qa(sample: SuiteSample, prov: SyntheticProvider, rng: random.Random) -> _Answer:
    r = rng.random()
    if r < 0.1 + 0.5 * prov.skill:
        return _Answer(str(next(iter(sample.metadata["answers"]))))
    if r < 0.35 + 0.5 * prov.skill:
        return _Answer("I don't know the answer to that.")
    return _Answer(f"Geoffrey Hinton. {_filler(rng, rng.randint(0, 10))}")


_Responder = Callable[[SuiteSample, SyntheticProvider, random.Random], _Answer]

#: Suite name -> how a synthetic provider answers it, and the suite's share of the calls.
_RESPONDERS: dict[str, tuple[_Responder, float]] = {
    "toxicity": (_toxicity, 2.0),
    "bias.bbq": (_bbq, 1.0),
    "bias.counterfactual": (_counterfactual, 1.0),
    "bias.stereotype": (_stereotype, 1.0),
    "pii.leakage": (_leakage, 1.0),
    "pii.emission": (_emission, 1.0),
    "factuality.truthfulqa_mc1": (_mc1, 1.0),
    "factuality.truthfulqa_gen": (_gen, 1.0),
    "factuality.short_qa": (_short_qa, 1.0),
}


# ---------------------------------------------------------------------------------------------
# Plan: the real suites, sized to the requested number of calls
# ---------------------------------------------------------------------------------------------


def _allocate(n_samples: int, names: Sequence[str]) -> list[int]:
    """Calls per suite: proportional to the suites' weights, summing to ``n_samples``."""
    weights = [_RESPONDERS[n][1] for n in names]
    counts = [max(2, int(n_samples * w / sum(weights))) for w in weights]
    counts[0] += max(0, n_samples - sum(counts))
    return counts


@dataclass(frozen=True)
class _SuitePlan:
    planned: PlannedSuite
    #: (sample, repeat) of every call, repeat-major, so a cut keeps the most items.
    calls: list[tuple[SuiteSample, int]]


#: Bootstrap resamples per interval: fewer than a run's default 2000, so that a test run is fast;
#: the intervals are still the suites' own (seeded) bootstrap intervals.
_N_RESAMPLES = 400


@functools.lru_cache(maxsize=64)
def _built(name: str, repeats: int, seed: int) -> BuiltSuite:
    # Building is deterministic and some suites take a second (pii.leakage checks every planted
    # value against every attack): tests that write several runs build each suite once.
    return build_suite(name, {"repeats": repeats, "n_resamples": _N_RESAMPLES}, seed=seed, base_dir=None)


def _plan(name: str, calls: int, provider_ids: tuple[str, ...], seed: int) -> _SuitePlan:
    items = len(_built(name, 1, seed).data.samples)
    repeats = min(1000, max(1, math.ceil(calls / items)))
    suite, data = _built(name, repeats, seed)
    order = [(sample, k) for k in range(data.repeats) for sample in data.samples][:calls]
    return _SuitePlan(PlannedSuite(suite, data, provider_ids), order)


# ---------------------------------------------------------------------------------------------
# Calls: timings, prices, failures and the guard
# ---------------------------------------------------------------------------------------------

_ERRORS = (
    ("ProviderTimeoutError", "request timed out after 120 s", None, True),
    ("RateLimitError", "429 Too Many Requests: retry after 20 s", 429, True),
    ("ServerError", "503 Service Unavailable", 503, True),
    ("BadRequestError", "400 context length exceeded", 400, False),
)
_HOURLY_USD = 0.40
_TOKEN_PRICE = (0.15, 0.60)


def _price(prov: SyntheticProvider) -> ResolvedPrice | None:
    if prov.pricing == "hourly":
        return ResolvedPrice(None, None, _HOURLY_USD, "config pricing.usd_per_hour", None)
    if prov.pricing == "tokens":
        return ResolvedPrice(*_TOKEN_PRICE, None, "prices.yaml openai gpt-4o-mini (2026-10-01)", "2026.10")
    return None


def _guard_block(prov: SyntheticProvider, suite: str, answer: _Answer, rng: random.Random) -> str | None:
    """Which guard stage (if any) blocks this call: some attack prompts, most harmful answers."""
    if not prov.guarded:
        return None
    if suite == "pii.leakage" and rng.random() < 0.25:
        return "input"
    if answer.harmful and rng.random() < 0.7:
        return "output"
    return None


def _guard_summary(stage: str | None, rng: random.Random) -> dict[str, Any]:
    action = "block" if stage else "allow"
    rail = {"rail": "toxicity", "score": round(rng.uniform(0.6, 0.99) if stage else rng.uniform(0, 0.2), 4)}
    return {
        "action": action,
        "guard_latency_s": round(rng.uniform(0.02, 0.15), 6),
        "inputs": [
            {
                "stage": "input",
                "action": "block" if stage == "input" else "allow",
                "blocked": stage == "input",
                "redacted_text": None,
                "latency_ms": 12.5,
                "rails": [rail],
            }
        ],
        "output": None
        if stage == "input"
        else {
            "stage": "output",
            "action": "block" if stage == "output" else "allow",
            "blocked": stage == "output",
            "redacted_text": None,
            "latency_ms": 40.0,
            "rails": [rail],
        },
    }


def _call(
    prov: SyntheticProvider,
    suite: str,
    sample: SuiteSample,
    repeat: int,
    rng: random.Random,
    started: float,
) -> CallRecord:
    """One synthetic call record, as the runner would journal it (unscored)."""
    sample_id = item_key(suite, sample.id)
    messages = [{"role": m.role, "content": m.content} for m in sample.messages]
    common: dict[str, Any] = {
        "key": hashlib.sha256(f"{prov.id}|{sample_id}|{repeat}".encode()).hexdigest(),
        "provider_id": prov.id,
        "sample_id": sample_id,
        "repeat": repeat,
        "messages": messages,
        "params": {"max_tokens": 256},
        "tokens_estimated": False,
        "started_at": started,
        "metadata": {"suite": suite, "item": sample.id},
    }
    latency = rng.lognormvariate(math.log(prov.latency_s), 0.45)
    if rng.random() < prov.failure_rate:
        etype, msg, code, retryable = rng.choice(_ERRORS)
        attempts = 5 if retryable else 1
        return CallRecord(
            **common,
            status="error",
            output=None,
            prompt_tokens=None,
            completion_tokens=None,
            ttft_s=None,
            latency_s=None,
            output_tokens_per_s=None,
            finish_reason=None,
            model=None,
            attempts=attempts,
            retry_wait_s=round(rng.uniform(1, 30), 3) if retryable else 0.0,
            finished_at=started + latency * attempts,
            cost_usd=None,
            error=CallError(etype, msg, code, retryable),
            guard=None,
        )
    answer = _RESPONDERS[suite][0](sample, prov, rng)
    output, finish = answer.text, ("stop" if rng.random() < 0.8 else "length")
    stage = _guard_block(prov, suite, answer, rng)
    if stage is not None:
        output, finish = _REFUSAL, f"guard_blocked_{stage}"
    prompt_tokens = sum(len(m["content"]) for m in messages) // 4 + 8
    completion_tokens = max(1, len(output) // 4)
    ttft = latency * rng.uniform(0.08, 0.25) if prov.stream else None
    gen_s = latency - (ttft or 0.0)
    price = _price(prov)
    cost = None
    if price is not None and price.per_token:
        cost = (prompt_tokens * _TOKEN_PRICE[0] + completion_tokens * _TOKEN_PRICE[1]) / 1e6
    elif price is not None:
        cost = _HOURLY_USD * latency / 3600 / 8  # ~8 calls share the machine's hour
    retried = rng.random() < 0.03
    return CallRecord(
        **common,
        status="ok",
        output=output,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        ttft_s=ttft,
        latency_s=latency,
        output_tokens_per_s=completion_tokens / gen_s if gen_s > 0 else None,
        finish_reason=finish,
        model=prov.model,
        attempts=2 if retried else 1,
        retry_wait_s=round(rng.uniform(0.2, 2.0), 3) if retried else 0.0,
        finished_at=started + latency,
        cost_usd=cost,
        error=None,
        guard=_guard_summary(stage, rng) if prov.guarded else None,
    )


def _calls_for(
    prov: SyntheticProvider, p_index: int, plans: Sequence[_SuitePlan], *, seed: int, t0: float
) -> list[CallRecord]:
    rng = random.Random(f"{seed}:{p_index}:{prov.id}")
    records: list[CallRecord] = []
    clock = t0
    for plan in plans:
        for sample, repeat in plan.calls:
            records.append(_call(prov, plan.planned.name, sample, repeat, rng, clock))
            clock += prov.latency_s / 8  # ~8 calls in flight
    return records


def _model_info(prov: SyntheticProvider) -> dict[str, Any]:
    info: dict[str, Any] = {"model": prov.model, "revision": "synthetic"}
    if prov.guarded:
        info["guarded_by"] = {
            # Shaped like Guard.info(): the rails name their classifiers, so the report can
            # see that the guard shares minilm-toxicity and presidio with the scorers.
            "guard": {
                "name": "default",
                "input": [{"name": "toxic-input", "classifier": "minilm-toxicity", "action": "flag"}],
                "output": [
                    {"name": "toxic-output", "classifier": "minilm-toxicity", "action": "block"},
                    {"name": "pii-output", "classifier": "presidio", "action": "redact"},
                ],
            },
            "check_input": True,
            "check_output": True,
        }
    return info


def _config(
    providers: Sequence[SyntheticProvider], plans: Sequence[_SuitePlan], name: str, seed: int, hostile: bool
) -> dict[str, Any]:
    prov_cfgs = []
    for p in providers:
        cfg: dict[str, Any] = {
            "kind": p.kind,
            "id": p.id,
            "model": p.model,
            "params": {
                "max_tokens": 256,
                "temperature": None,
                "top_p": None,
                "seed": None,
                "stop": [],
                "extra": {},
            },
            "stream": p.stream,
            "concurrency": 8,
            "rpm": None,
            "timeout_s": 120.0,
            "max_retries": 4,
            "pricing": {"usd_per_hour": _HOURLY_USD} if p.pricing == "hourly" else None,
            "guard": {"policy": "../guardrails/default.yaml", "input": True, "output": True}
            if p.guarded
            else None,
        }
        if p.kind == "openai":
            cfg.update({"base_url": None, "api_key_env": "OPENAI_API_KEY", "organization": None})
        prov_cfgs.append(cfg)
    description = "Synthetic audit run (rai_harness.testing.synthetic_run)."
    if hostile:
        # Config text reaches the report's reproducibility section verbatim.
        description += " Notes: " + " ".join(HOSTILE_STRINGS)
    return {
        "name": name,
        "description": description,
        "seed": seed,
        "output_dir": None,
        "prompts": None,
        "suites": [{"name": p.planned.name, "params": {"repeats": p.planned.data.repeats}} for p in plans],
        "runner": {
            "max_error_rate": 0.05,
            "backoff_base_s": 0.5,
            "backoff_max_s": 30.0,
            "max_retry_after_s": 120.0,
            "retry_failed_on_resume": True,
        },
        "pricing": [],
        "price_table": None,
        "providers": prov_cfgs,
    }


_ENVIRONMENT: Mapping[str, Any] = {
    "python": "3.11.7",
    "implementation": "CPython",
    "platform": "Linux-6.1-x86_64-with-glibc2.36",
    "machine": "x86_64",
    "cpu_count": 2,
    "packages": {
        "rai-harness": "0.1.0",
        "openai": "1.99.0",
        "pydantic": "2.11.0",
        "numpy": "2.2.0",
        "torch": "2.13.0+cpu",
        "transformers": "5.0.0",
        "presidio-analyzer": "2.2.366",
    },
    "cuda": False,
}


def write_synthetic_run(
    out_dir: str | Path,
    *,
    n_samples: int = 270,
    providers: Sequence[SyntheticProvider] = DEFAULT_PROVIDERS,
    seed: int = 0,
    status: Literal["complete", "failed", "incomplete"] = "complete",
    hostile: bool = True,
    write_samples: bool = True,
    name: str = "synthetic-audit",
) -> RunRecord:
    """Write ``run.json`` and ``samples.jsonl`` of a synthetic run into ``out_dir``.

    Args:
        out_dir: Folder to write (created).
        n_samples: Calls per provider, spread over the nine suites (toxicity gets twice the
            share of the others; each suite at least 2).
        providers: Provider behaviours; by default a small model with and without a guard
            and a hosted model.
        seed: Everything is derived from it (answers, timings and the suites' own seed).
        status: ``"failed"`` adds an error-budget problem; ``"incomplete"`` makes the
            ``factuality.truthfulqa_gen`` suite's scorer fail (its metrics are then missing).
        hostile: Put XSS strings, RTL text and emoji in outputs and in the config's description.
        write_samples: Also write ``samples.jsonl`` (False: only ``run.json``).
        name: Run name.

    Returns:
        The run record that was written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = tuple(p.id for p in providers)
    plans = [
        _plan(s, n, ids, seed) for s, n in zip(SUITE_NAMES, _allocate(n_samples, SUITE_NAMES), strict=True)
    ]
    t0 = 1_795_000_000.0 + seed
    records: list[CallRecord] = []
    summaries = {}
    for p_index, prov in enumerate(providers):
        calls = _calls_for(prov, p_index, plans, seed=seed, t0=t0)
        summaries[prov.id] = summarize_provider(prov.kind, prov.model, calls, _price(prov), _model_info(prov))
        records.extend(calls)
    scored = score_suites(
        [p.planned for p in plans],
        records,
        seed=seed,
        pool=stand_in_pool(broken_similarity=status == "incomplete"),
    )
    budget: list[str] = []
    if status == "failed":
        worst = max(summaries, key=lambda k: summaries[k].error_rate)
        s = summaries[worst]
        budget.append(
            f"{worst}: {s.failed} of {s.calls} calls failed ({s.error_rate:.1%} > max_error_rate 0.0%)"
        )
    duration = max(s.latency_s.max or 0.0 for s in summaries.values()) + n_samples * 0.2
    record = RunRecord(
        run_id=hashlib.sha256(f"synthetic:{seed}:{n_samples}".encode()).hexdigest()[:32],
        name=name,
        status=run_status(budget, scored.problems),
        problems=[*budget, *scored.problems],
        started_at="2026-11-20T09:00:00+00:00",
        finished_at="2026-11-20T09:42:17+00:00",
        duration_s=duration,
        seed=seed,
        config_path="evals/synthetic.yaml",
        config_sha256=hashlib.sha256(b"synthetic").hexdigest(),
        config=_config(providers, plans, name, seed, hostile),
        environment=dict(_ENVIRONMENT),
        datasets=[d for p in plans for d in p.planned.data.datasets],
        providers=summaries,
        timing_quality={
            "event_loop_lag_ms": {"samples": 1000, "p50_ms": 0.2, "p95_ms": 1.1, "p99_ms": 2.4, "max_ms": 9.0}
        },
        suites=scored.suites,
    )
    if write_samples:
        write_run(out, record, scored.records)
    else:
        write_json_atomic(out / "run.json", record.model_dump_json(indent=2))
    return record
