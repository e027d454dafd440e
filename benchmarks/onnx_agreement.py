"""Do the ONNX Runtime and torch paths of ``minilm-toxicity`` give the same verdicts?

The ONNX Runtime encoder (:mod:`rai_harness.classifiers.onnx_encoder`) is the default
whenever ``onnxruntime`` is installed, so every number of the model card must hold for it.
This scores the same texts through ``predict`` on both runtimes (one shared embedder, the
shipped head) and reports, per text set, the largest absolute score difference and the
verdicts that flip at every toxicity threshold of the shipped policies
(``guardrails/*.yaml``).

Text sets: the held-out test split of the training data (``rai train``'s own split, seed of
the shipped head; needs ``../shared/data``, skipped without it), the guard-audit set, both
sides of the AAE/SAE pairs, and long documents made of 20 consecutive test texts each (so
the windows-and-sentences path of long texts is compared too).

Run: ``python benchmarks/onnx_agreement.py [--data-dir ../shared/data] [--no-write]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402
from rai_harness.classifiers.embedding import MiniLMEmbedder  # noqa: E402
from rai_harness.classifiers.toxicity_head import MiniLMToxicityClassifier  # noqa: E402

DOC_TEXTS = 20  # test texts per long document


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


def text_sets(data_dir: Path) -> tuple[dict[str, list[str]], list[str]]:
    """The text sets to compare, and notes on what was left out."""
    sets: dict[str, list[str]] = {}
    notes: list[str] = []
    if (data_dir / "davidson_hate_offensive").is_dir():
        from rai_harness.classifiers.toxicity_head import ToxicityHead
        from rai_harness.training.pipeline import load_examples

        seed = int(ToxicityHead.load().meta.get("seed", 0))
        rows, _ = load_examples(data_dir, seed=seed)
        test = [r.text for r in rows if r.split == "test"]
        sets["held-out test split (all sources)"] = test
        sets[f"long documents ({DOC_TEXTS} test texts each)"] = [
            " ".join(test[i : i + DOC_TEXTS]) for i in range(0, len(test) - DOC_TEXTS + 1, DOC_TEXTS)
        ][:300]
    else:
        notes.append(f"{data_dir} not found: the held-out split and long documents were not compared")
    audit = ROOT / "datasets" / "guard_audit" / "audit.jsonl"
    sets["guard-audit set"] = [json.loads(line)["text"] for line in audit.read_text().splitlines() if line]
    pairs = [
        json.loads(line)
        for line in (ROOT / "datasets" / "aae_pairs" / "pairs.jsonl").read_text().splitlines()
    ]
    sets["AAE/SAE pairs (both sides)"] = [p[side] for p in pairs for side in ("aae", "sae")]
    return sets, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--no-write", action="store_true", help="Print only; leave RESULTS.md alone.")
    args = parser.parse_args()

    embedder = MiniLMEmbedder(device="cpu")
    on_ort = MiniLMToxicityClassifier(embedder=embedder, runtime="onnx")
    on_torch = MiniLMToxicityClassifier(embedder=embedder, runtime="torch")
    thresholds = shipped_thresholds()
    sets, notes = text_sets(Path(args.data_dir))
    info = on_ort.info()["runtime"]
    lines = [
        f"Shipped `minilm-toxicity`, `predict` on ONNX Runtime {info['version']} ({info['threads']} threads) "
        "vs torch (fp32, CPU), same embedder and head. Thresholds: those of the shipped policies "
        f"({', '.join(f'{k}: {v}' for k, v in thresholds.items())}).",
        *(f"> Note: {n}." for n in notes),
        "",
        "| texts | n | max abs diff toxic | max abs diff hate | verdict flips | torch s | ONNX Runtime s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    total_flips = 0
    for name, texts in sets.items():
        scores = {}
        seconds = {}
        for runtime, clf in (("torch", on_torch), ("onnx", on_ort)):
            started = time.perf_counter()
            result = clf.predict(texts)
            seconds[runtime] = time.perf_counter() - started
            scores[runtime] = {label: np.array([r.scores[label] for r in result]) for label in clf.labels}
        diffs = {
            label: float(np.abs(scores["torch"][label] - scores["onnx"][label]).max())
            for label in on_ort.labels
        }
        flips = sum(
            int(((scores["torch"][label] >= t) != (scores["onnx"][label] >= t)).sum())
            for label, ts in thresholds.items()
            for t in ts
        )
        total_flips += flips
        lines.append(
            f"| {name} | {len(texts)} | {diffs.get('toxic', 0):.1e} | {diffs.get('hate', 0):.1e} | {flips} "
            f"| {seconds['torch']:.1f} | {seconds['onnx']:.1f} |"
        )
    lines += [
        "",
        f"Verdict flips in all: **{total_flips}** (a flip: one runtime at or above a threshold, the other below).",
        f"1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the seconds are whole-set "
        "`predict` calls, batched; the per-call latency is in `guard_inline`).",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("onnx_agreement", body)


if __name__ == "__main__":
    main()
