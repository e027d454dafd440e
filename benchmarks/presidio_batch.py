"""Batch PII analysis (one spaCy ``nlp.pipe`` pass) vs per-text ``analyze`` loops.

Compares, on the same texts and the same recognizers:

* ``presidio loop``: ``AnalyzerEngine.analyze(text)`` per text with presidio's own spaCy
  engine and the full spaCy pipeline (what a plain presidio integration does);
* ``per-text analyze``: ``PresidioClassifier.analyze(text)`` per text;
* ``batch predict``: ``PresidioClassifier.predict(texts)``.

It checks that all three report exactly the same findings (start, end, label, score) and
writes texts/s and the speed-up to ``benchmarks/RESULTS.md`` (section ``presidio_batch``).
Texts come from the presidio-research synthetic PII set when ``../shared/data`` is present,
otherwise from built-in templates. Each timing is the best of ``--repeats`` runs, because
other processes on a shared machine only ever make a run slower.

Usage: ``python benchmarks/presidio_batch.py [--n 1000] [--repeats 3] [--batch-size 64]``
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section
from rai_harness.classifiers.base import LabelScores
from rai_harness.classifiers.presidio_backend import PresidioClassifier

log = logging.getLogger("presidio_batch")
SYNTH = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "presidio_synth_pii" / "synth_dataset_v2.json"
)

_TEMPLATES = (
    "Please email {first} {last} at {email} about the invoice.",
    "Call me on {phone} after 6pm, thanks!",
    "My card number is {card} and it expires next year.",
    "SSN on file: {ssn}. Do not share.",
    "Wire the refund to IBAN {iban} by Friday.",
    "The server at {ip} keeps timing out since the update.",
    "{first} {last} said the meeting moved to Tuesday.",
    "Nothing personal here, just a note about the weather and the garden.",
    "Reminder: the quarterly report is due at the end of the month.",
    "Hi {first}, your order has shipped and will arrive soon.",
)
_FIRST = ("John", "Maria", "Wei", "Aisha", "Carlos", "Emma", "Olga", "David")
_LAST = ("Smith", "Garcia", "Chen", "Khan", "Novak", "Johnson", "Brown", "Rossi")


def _luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return " ".join(s[i : i + 4] for i in range(0, 16, 4))


def template_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` texts from the templates above (fake values; a fixed seed)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        out.append(
            rng.choice(_TEMPLATES).format(
                first=first,
                last=last,
                email=f"{first.lower()}.{last.lower()}@example.com",
                phone=f"(415) {rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}",
                card=_luhn_card(rng),
                ssn=f"{rng.randrange(100, 665)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}",
                iban="GB82 WEST 1234 5698 7654 32",
                ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            )
        )
    return out


def load_texts(n: int) -> tuple[list[str], str]:
    """Texts for the benchmark and a line saying where they came from."""
    if SYNTH.exists():
        with SYNTH.open(encoding="utf-8") as f:
            rows = json.load(f)
        texts = [r["full_text"] for r in rows[:n]]
        return texts, f"first {len(texts)} sentences of presidio-research `synth_dataset_v2.json`"
    return template_texts(n), f"{n} sentences from the built-in templates (`../shared/data` absent)"


def findings(results: Sequence[LabelScores]) -> list[tuple[tuple[int, int, str, float], ...]]:
    return [tuple((s.start, s.end, s.label, round(s.score, 9)) for s in r.spans) for r in results]


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def presidio_loop_fn(clf: PresidioClassifier, texts: list[str]) -> Callable[[], list[LabelScores]]:
    """Plain presidio: a stock SpacyNlpEngine (full pipeline) and ``analyze`` per text."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    nlp_engine = SpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": clf.spacy_model}],
        ner_model_configuration=clf._nlp_engine.ner_model_configuration,
    )
    nlp_engine.load()
    # Same recognizers as the classifier (incl. its offline e-mail check), other NLP engine.
    analyzer = AnalyzerEngine(
        registry=clf._analyzer.registry, nlp_engine=nlp_engine, supported_languages=["en"]
    )
    entities = list(clf.labels)

    def run() -> list[LabelScores]:
        out = []
        for t in texts:
            results = (
                analyzer.analyze(text=t, language="en", entities=entities, score_threshold=0.0)
                if t.strip()
                else []
            )
            out.append(clf._to_label_scores([(r.start, r.end, r.entity_type, r.score) for r in results]))
        return out

    return run


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--no-write", action="store_true", help="Print only; leave RESULTS.md alone.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    texts, source = load_texts(args.n)
    chars = sum(map(len, texts))
    clf = PresidioClassifier(batch_size=args.batch_size)
    clf.predict(texts[:16])  # warm-up: lazy recognizer loads, allocator

    rows: list[tuple[str, float, Any]] = []
    baseline = presidio_loop_fn(clf, texts)
    baseline()
    for name, fn in (
        ("presidio `AnalyzerEngine.analyze` loop (full spaCy pipeline)", baseline),
        ("`PresidioClassifier.analyze` loop (per text)", lambda: [clf.analyze(t) for t in texts]),
        (
            f"`PresidioClassifier.predict` (batch, nlp.pipe batch_size={args.batch_size})",
            lambda: clf.predict(texts),
        ),
    ):
        seconds, out = best_time(fn, args.repeats)
        rows.append((name, seconds, out))
        log.info("%-80s %7.2f s  %7.1f texts/s", name, seconds, len(texts) / seconds)

    reference = findings(rows[0][2])
    same = [findings(out) == reference for _, _, out in rows]
    n_spans = sum(len(f) for f in reference)
    batch_s = rows[-1][1]
    lines = [
        f"Texts: {source} ({len(texts)} texts, {chars} characters, {n_spans} findings).",
        f"Entities: {', '.join(clf.labels)}; spaCy model `{clf.spacy_model}`; best of {args.repeats} runs.",
        "",
        "| method | seconds | texts/s | batch is faster by | same findings as the presidio loop |",
        "|---|---:|---:|---:|---|",
    ]
    for (name, seconds, _), ok in zip(rows, same, strict=True):
        faster = "-" if seconds == batch_s else f"{seconds / batch_s:.2f}x"
        lines.append(
            f"| {name} | {seconds:.2f} | {len(texts) / seconds:.1f} | {faster} | {'yes' if ok else 'NO'} |"
        )
    per_text_s = rows[1][1]
    lines += [
        "",
        f"Batch vs per-text `analyze` loop: **{per_text_s / batch_s:.2f}x**; "
        f"vs the plain presidio loop: **{rows[0][1] / batch_s:.2f}x**.",
    ]
    body = "\n".join(lines)
    print(body)
    if not all(same):
        raise SystemExit("findings differ between methods")
    if not args.no_write:
        write_section("presidio_batch", body)


if __name__ == "__main__":
    main()
