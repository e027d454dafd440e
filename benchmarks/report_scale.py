"""Report rendering at scale: a synthetic run of 100k samples x 3 providers vs the same run at 1k.

Writes two synthetic run folders with :func:`rai_harness.testing.synthetic_run.write_synthetic_run`
(all nine suites, a guarded provider, failed calls, hostile outputs) under
``benchmarks/_out/report_scale/`` (git-ignored; reused when present, ``--fresh`` rewrites them),
then times in this one process, best of ``--repeats``:

* ``html``: the full audit report (streams ``samples.jsonl`` once: distributions and evidence);
* ``json``: the machine summary (reads only ``run.json``);
* ``md``: the Markdown summary;
* ``html, 1 worker``: the HTML report with the samples scan forced into one process (the
  default on machines with fewer than four CPUs, so the same number there).

It prints sizes, seconds and the 100k/1k ratios and writes them to ``benchmarks/RESULTS.md``
(section ``report_scale``). Targets: the HTML report under 10 MB and under 10 s at 100k x 3.

Usage: ``python benchmarks/report_scale.py [--n 100000] [--baseline-n 1000] [--repeats 2] [--fresh]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section
from rai_harness import jsoncodec
from rai_harness.report import build_report
from rai_harness.report import samples as report_samples
from rai_harness.testing.synthetic_run import DEFAULT_PROVIDERS, write_synthetic_run

OUT = Path(__file__).resolve().parent / "_out" / "report_scale"
SIZE_TARGET_MB = 10.0
TIME_TARGET_S = 10.0


def ensure_run(n: int, fresh: bool) -> Path:
    """The synthetic run folder for ``n`` samples per provider (written once, then reused)."""
    folder = OUT / f"n{n}"
    stamp = folder / "params.json"
    params = {"n_samples": n, "providers": [p.id for p in DEFAULT_PROVIDERS], "seed": 0, "version": 3}
    if fresh or not stamp.exists() or json.loads(stamp.read_text()) != params:
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        write_synthetic_run(folder, n_samples=n, seed=0)
        stamp.write_text(json.dumps(params))
        print(f"wrote synthetic run n={n:,} in {time.perf_counter() - start:.1f} s", flush=True)
    return folder


def best_of(repeats: int, fn) -> tuple[float, str]:
    """Best wall time of ``repeats`` calls (other processes only ever make a run slower), and the output."""
    best, out = float("inf"), ""
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="samples per provider of the large run")
    parser.add_argument("--baseline-n", type=int, default=1_000, help="samples per provider of the baseline")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="rewrite the synthetic runs")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()

    big, small = ensure_run(args.n, args.fresh), ensure_run(args.baseline_n, args.fresh)
    samples_mb = {d: (d / "samples.jsonl").stat().st_size / 1e6 for d in (big, small)}
    rows = []
    timings: dict[tuple[str, Path], tuple[float, float]] = {}
    cases = [("html", {}), ("json", {"fmt": "json"}), ("md", {"fmt": "md"})]
    for name, kwargs in cases:
        for folder in (small, big):
            seconds, text = best_of(args.repeats, lambda f=folder, kw=kwargs: build_report(f, **kw))
            timings[(name, folder)] = (seconds, len(text.encode("utf-8")) / 1e6)
            print(
                f"{name:5s} n={folder.name[1:]:>7s}: {seconds:6.2f} s  {timings[(name, folder)][1]:7.3f} MB",
                flush=True,
            )

    original = report_samples.MAX_WORKERS
    parallel_note = ""
    if (os.cpu_count() or 1) >= 4:
        report_samples.MAX_WORKERS = 1
        try:
            seconds, text = best_of(args.repeats, lambda: build_report(big))
        finally:
            report_samples.MAX_WORKERS = original
        timings[("html, 1 worker", big)] = (seconds, len(text.encode("utf-8")) / 1e6)
        parallel_note = f" One process: {seconds:.2f} s."

    for name, _ in cases:
        (ts, ss), (tb, sb) = timings[(name, small)], timings[(name, big)]
        rows.append(
            f"| {name} | {ss:.3f} | {ts:.2f} | {sb:.3f} | {tb:.2f} | {sb / ss:.1f}x | {tb / max(ts, 1e-9):.1f}x |"
        )
    html_s, html_mb = timings[("html", big)]
    parser_name = "orjson" if jsoncodec.orjson is not None else "json (standard library)"
    cpus = os.cpu_count() or 1
    workers = min(cpus, report_samples.MAX_WORKERS) if cpus >= 4 else 1
    verdict = (
        f"HTML at {args.n:,} x 3: {html_mb:.2f} MB (target < {SIZE_TARGET_MB:.0f} MB: "
        f"{'met' if html_mb < SIZE_TARGET_MB else 'MISSED'}), {html_s:.2f} s (target < {TIME_TARGET_S:.0f} s: "
        f"{'met' if html_s < TIME_TARGET_S else 'MISSED'})."
    )
    print(verdict)
    body = "\n".join(
        [
            f"Synthetic runs (`rai_harness.testing.synthetic_run`): {len(DEFAULT_PROVIDERS)} providers x all nine "
            f"suites; samples.jsonl {samples_mb[small]:.1f} MB at {args.baseline_n:,} and {samples_mb[big]:.0f} MB at "
            f"{args.n:,} samples per provider. Best of {args.repeats}, in one process (`build_report`). JSON "
            f"parser: {parser_name}; samples scan in {workers} process(es).{parallel_note}",
            "",
            f"| format | {args.baseline_n:,} x 3 MB | {args.baseline_n:,} x 3 s | {args.n:,} x 3 MB | "
            f"{args.n:,} x 3 s | size ratio | time ratio |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            verdict,
            "",
            "The HTML size barely grows with the number of samples (histograms, capped evidence); its time is "
            "the one streaming pass over samples.jsonl (JSON parsing dominates: with orjson installed the scan "
            "uses it and parses about 3x faster). json and md read only run.json.",
        ]
    )
    if not args.no_write:
        write_section("report_scale", body)
        print("wrote section report_scale of benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
