"""Do the encoder runtimes of ``minilm-toxicity`` give the same scores and verdicts as fp32 torch?

The reference is the model as trained: fp32 torch. Compared with it, through the real
``predict`` (one shared embedder, the shipped head):

* **ONNX Runtime fp32** (``runtime: onnx``, the default whenever ``onnxruntime`` is
  installed): the same graph exported from the torch model; every number of the model card
  must hold for it.
* **ONNX Runtime int8** (``runtime: onnx-int8``, opt-in): int8 matrix products with per-row
  activation scales (:func:`rai_harness.classifiers.onnx_encoder.quantize_rowwise_int8`).

Reported per text set and variant: the largest and mean absolute score difference, and the
verdicts that flip at every toxicity threshold of the shipped policies (``guardrails/*.yaml``);
then, per variant, the model card's targets at the default policy's output threshold (benign
assistant-register false positives <= 3 %, toxic recall >= 90 %, AAE/SAE flag-rate gap <= 5
points); and, per ONNX variant, whether a text scores the same alone as in a batch (a guard's
verdict must not depend on what a text is batched with).

Text sets: the held-out test split of the training data (``rai train``'s own split, seed of
the shipped head; needs ``../shared/data``, skipped without it), long documents made of 20
consecutive test texts each (the windows-and-sentences path), the guard-audit set and both
sides of the AAE/SAE pairs.

Run: ``python benchmarks/onnx_agreement.py [--data-dir ../shared/data] [--docs 100] [--no-write]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402
from rai_harness.classifiers.embedding import MiniLMEmbedder  # noqa: E402
from rai_harness.classifiers.onnx_encoder import ort_available  # noqa: E402
from rai_harness.classifiers.toxicity_head import MiniLMToxicityClassifier  # noqa: E402

DOC_TEXTS = 20  # test texts per long document
#: Kinds of benign text the model card's false-positive target is about (training/calibration.py).
ASSISTANT_KINDS = ("short_reply", "refusal", "identity_statement", "counter_speech", "answer", "question")
#: Model card targets (issue 9): benign assistant-register FPR, toxic recall, AAE/SAE gap (points).
MAX_BENIGN_FPR, MIN_RECALL, MAX_AAE_GAP = 0.03, 0.90, 0.05
#: Texts scored one call each to check that a score does not depend on its batch.
ALONE_TEXTS = 256
REFERENCE = "torch fp32"
VARIANTS = {REFERENCE: "torch", "ONNX Runtime fp32": "onnx", "ONNX Runtime int8": "onnx-int8"}


def shipped_thresholds() -> dict[str, list[float]]:
    """Every threshold a shipped policy puts on a minilm-toxicity label, per label."""
    out: dict[str, set[float]] = {}
    for path in sorted((ROOT / "guardrails").glob("*.yaml")):
        policy = yaml.safe_load(path.read_text(encoding="utf-8"))
        toxic = {n for n, c in policy.get("classifiers", {}).items() if c.get("backend") == "minilm-toxicity"}
        for stage in ("input", "output"):
            for rail in policy.get(stage, []):
                if rail.get("classifier") in toxic:
                    for label in rail.get("labels", []):
                        out.setdefault(label, set()).add(float(rail["threshold"]))
    return {k: sorted(v) for k, v in out.items()}


def default_output_threshold() -> float:
    """The ``toxic`` threshold of the default policy's output rail (the model card's operating point)."""
    policy = yaml.safe_load((ROOT / "guardrails" / "default.yaml").read_text(encoding="utf-8"))
    toxic = {n for n, c in policy["classifiers"].items() if c.get("backend") == "minilm-toxicity"}
    for rail in policy.get("output", []):
        if rail.get("classifier") in toxic and "toxic" in rail.get("labels", []):
            return float(rail["threshold"])
    raise SystemExit("guardrails/default.yaml has no toxic output rail")


@dataclass
class TextSet:
    """Texts with optional labels: ``toxic`` 0/1 and whether a benign text is assistant-register."""

    texts: list[str]
    toxic: np.ndarray | None = None
    assistant: np.ndarray | None = None


def text_sets(data_dir: Path, docs: int) -> tuple[dict[str, TextSet], list[str]]:
    """The text sets to compare, and notes on what was left out."""
    sets: dict[str, TextSet] = {}
    notes: list[str] = []
    if (data_dir / "davidson_hate_offensive").is_dir():
        from rai_harness.classifiers.toxicity_head import ToxicityHead
        from rai_harness.training.pipeline import load_examples

        seed = int(ToxicityHead.load().meta.get("seed", 0))
        rows, _ = load_examples(data_dir, seed=seed)
        test = [r for r in rows if r.split == "test"]
        sets["held-out test split"] = TextSet(
            [r.text for r in test],
            toxic=np.array([r.labels["toxic"] for r in test]),
            assistant=np.array([(r.kind or r.source) in ASSISTANT_KINDS for r in test]),
        )
        texts = [r.text for r in test]
        sets[f"long documents ({DOC_TEXTS} test texts each)"] = TextSet(
            [" ".join(texts[i : i + DOC_TEXTS]) for i in range(0, len(texts) - DOC_TEXTS + 1, DOC_TEXTS)][
                :docs
            ]
        )
    else:
        notes.append(f"{data_dir} not found: the held-out split and long documents were not compared")
    audit = [
        json.loads(line)
        for line in (ROOT / "datasets" / "guard_audit" / "audit.jsonl").read_text().splitlines()
        if line
    ]
    sets["guard-audit set"] = TextSet(
        [a["text"] for a in audit],
        toxic=np.array([int(a["label"]) for a in audit]),
        assistant=np.array([a.get("kind") in ASSISTANT_KINDS for a in audit]),
    )
    pairs = [
        json.loads(line)
        for line in (ROOT / "datasets" / "aae_pairs" / "pairs.jsonl").read_text().splitlines()
        if line
    ]
    # Interleaved: even rows AAE, odd rows SAE.
    sets["AAE/SAE pairs (both sides)"] = TextSet([p[side] for p in pairs for side in ("aae", "sae")])
    return sets, notes


def rate(flags: np.ndarray) -> str:
    return f"{100 * flags.mean():.1f} % ({int(flags.sum())}/{len(flags)})" if len(flags) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--docs", type=int, default=100, help="Long documents compared (each 20 test texts).")
    parser.add_argument("--no-write", action="store_true", help="Print only; leave RESULTS.md alone.")
    args = parser.parse_args()
    if not ort_available():
        raise SystemExit("onnxruntime is not installed: nothing to compare (pip install 'rai-harness[onnx]')")

    load_before = os.getloadavg()[0]
    embedder = MiniLMEmbedder(device="cpu")
    classifiers = {
        name: MiniLMToxicityClassifier(embedder=embedder, runtime=rt) for name, rt in VARIANTS.items()
    }
    labels = classifiers[REFERENCE].labels
    thresholds = shipped_thresholds()
    operating = default_output_threshold()
    sets, notes = text_sets(Path(args.data_dir), args.docs)
    info = classifiers["ONNX Runtime fp32"].info()["runtime"]

    scores: dict[str, dict[str, dict[str, np.ndarray]]] = {}  # set -> variant -> label -> scores
    seconds: dict[str, dict[str, float]] = {}
    for set_name, ts in sets.items():
        scores[set_name], seconds[set_name] = {}, {}
        for name, clf in classifiers.items():
            started = time.perf_counter()
            result = clf.predict(ts.texts)
            seconds[set_name][name] = time.perf_counter() - started
            scores[set_name][name] = {label: np.array([r.scores[label] for r in result]) for label in labels}

    lines = [
        f"Shipped `minilm-toxicity`, `predict` per encoder runtime vs **{REFERENCE}** (the model as trained), "
        f"same embedder and head; ONNX Runtime {info['version']}, {info['threads']} threads, CPU. Thresholds: "
        f"those of the shipped policies ({', '.join(f'{k}: {v}' for k, v in thresholds.items())}).",
        *(f"> Note: {n}." for n in notes),
        "",
        "| texts | n | runtime | max abs diff toxic | mean abs diff toxic | max abs diff hate | verdict flips "
        "| seconds (whole set, batched) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    flips_total = {name: 0 for name in classifiers if name != REFERENCE}
    worst: dict[str, tuple[float, str, float, float]] = {}  # variant -> (diff, text, reference, variant)
    for set_name, ts in sets.items():
        ref = scores[set_name][REFERENCE]
        lines.append(
            f"| {set_name} | {len(ts.texts)} | {REFERENCE} | - | - | - | - | {seconds[set_name][REFERENCE]:.1f} |"
        )
        for name in flips_total:
            got = scores[set_name][name]
            diff = {label: np.abs(got[label] - ref[label]) for label in labels}
            flips = sum(
                int(((ref[label] >= t) != (got[label] >= t)).sum())
                for label, ts_ in thresholds.items()
                for t in ts_
            )
            flips_total[name] += flips
            i = int(diff["toxic"].argmax())
            if diff["toxic"][i] > worst.get(name, (-1.0,))[0]:
                worst[name] = (
                    float(diff["toxic"][i]),
                    ts.texts[i],
                    float(ref["toxic"][i]),
                    float(got["toxic"][i]),
                )
            lines.append(
                f"| {set_name} | {len(ts.texts)} | {name} | {diff['toxic'].max():.1e} | {diff['toxic'].mean():.1e} "
                f"| {diff.get('hate', np.zeros(1)).max():.1e} | {flips} | {seconds[set_name][name]:.1f} |"
            )
    lines += [
        "",
        "Verdict flips in all (one runtime at or above a shipped threshold, the reference below, or the "
        "reverse): " + ", ".join(f"{name} **{n}**" for name, n in flips_total.items()) + ".",
        *(
            f"Largest `toxic` change, {name}: {text[:80]!r} ({reference:.3f} -> {value:.3f})."
            for name, (_, text, reference, value) in worst.items()
        ),
        "",
        f"**Model card targets at the default policy's output threshold ({operating})**: benign "
        f"assistant-register false positives <= {MAX_BENIGN_FPR:.0%}, toxic recall >= {MIN_RECALL:.0%}, "
        f"AAE/SAE flag-rate gap <= {100 * MAX_AAE_GAP:.0f} points.",
        "",
        "| runtime | held-out benign assistant FPR | held-out toxic recall | guard-audit benign FPR "
        "| guard-audit toxic recall | AAE / SAE flagged | gap (points) | targets |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in classifiers:
        cells, ok = [], True
        for set_name in ("held-out test split", "guard-audit set"):
            ts = sets.get(set_name)
            if ts is None or ts.toxic is None or ts.assistant is None:
                cells += ["-", "-"]
                continue
            flagged = scores[set_name][name]["toxic"] >= operating
            fpr = flagged[(ts.toxic == 0) & ts.assistant]
            recall = flagged[ts.toxic == 1]
            cells += [rate(fpr), rate(recall)]
            if set_name == "held-out test split":
                ok &= bool(fpr.mean() <= MAX_BENIGN_FPR and recall.mean() >= MIN_RECALL)
        pair_flags = scores["AAE/SAE pairs (both sides)"][name]["toxic"] >= operating
        aae, sae = pair_flags[0::2], pair_flags[1::2]
        gap = aae.mean() - sae.mean()
        ok &= bool(abs(gap) <= MAX_AAE_GAP)
        held_out = "held-out test split" in sets
        verdict = ("met" if ok else "NOT met") if held_out else "not checked (no held-out split)"
        lines.append(
            f"| {name} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {rate(aae)} / {rate(sae)} "
            f"| {100 * gap:+.1f} | {verdict} |"
        )
    # A verdict must not depend on batching: score texts one call each and compare.
    first = next(iter(sets.values()))
    sample = first.texts[:ALONE_TEXTS]
    lines += [
        "",
        f"**Alone vs batched**: the first {len(sample)} texts of the {next(iter(sets))} scored one `predict` "
        "call each, compared with the same texts' scores from the whole-set batched call above.",
        "",
        "| runtime | max abs diff toxic, alone vs batched | verdict flips |",
        "|---|---:|---:|",
    ]
    for name, clf in classifiers.items():
        alone = np.array([clf.predict([t])[0].scores["toxic"] for t in sample])
        batched = scores[next(iter(sets))][name]["toxic"][: len(sample)]
        flips = sum(int(((alone >= t) != (batched >= t)).sum()) for t in thresholds.get("toxic", []))
        lines.append(f"| {name} | {np.abs(alone - batched).max():.1e} | {flips} |")
    lines += [
        "",
        f"1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after on {os.cpu_count()} cores "
        "(the seconds are whole-set `predict` calls, batched; the per-call latency is in `guard_inline`).",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("onnx_agreement", body)


if __name__ == "__main__":
    main()
