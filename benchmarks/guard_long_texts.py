"""Long texts under the shipped policies: does a text within ``max_chars`` get a verdict?

A rail call earns one ``timeout_ms`` allowance per started 2,000 characters
(``rai_harness.guardrails.rails.TIMEOUT_BLOCK_CHARS``), so that a long text within the
policy's ``max_chars`` is checked instead of timing out (a timeout on an ``on_error: allow``
rail lets the text through unchecked). This benchmark measures, per stage of each shipped
policy, the wall time of one check of texts of growing length in English and in the
worst case measured (punctuation-dense text, about one token per character), both drawn at
random so that nothing repeats (a repeated chunk is scored once), next to a
short prompt checked in the same process (the baseline), and reports the margin: the
allowance the text earned divided by the time it took (must stay above 1; the rails' own
timeouts are lifted while measuring, so the time is the work, not the limit).

Run: ``python benchmarks/guard_long_texts.py [--policy guardrails/default.yaml ...] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import write_section  # noqa: E402
from rai_harness.guardrails import Guard, load_policy  # noqa: E402
from rai_harness.guardrails.rails import TIMEOUT_BLOCK_CHARS  # noqa: E402

#: Words of the English text, drawn in a seeded random order so that no sentence or window
#: repeats: the classifiers run each distinct chunk once, so a repeated sentence would cost one.
WORDS = [
    "the",
    "committee",
    "reviewed",
    "budget",
    "line",
    "asked",
    "for",
    "two",
    "revised",
    "estimates",
    "and",
    "agreed",
    "to",
    "meet",
    "again",
    "on",
    "Thursday",
    "after",
    "lunch",
    "while",
    "members",
    "of",
    "staff",
    "noted",
    "several",
    "risks",
    "in",
    "supply",
    "chain",
    "planning",
    "next",
    "quarter",
    "because",
    "prices",
    "rose",
    "sharply",
    "across",
    "regions",
    "during",
    "winter",
    "months",
]
SHORT = "How do I reset my router?"


def english(n: int, rng: random.Random) -> str:
    """``n`` characters of sentences of 8 to 20 random words."""
    out: list[str] = []
    size = 0
    while size < n:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize() + ". "
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:n]


def dense(n: int, rng: random.Random) -> str:
    """The slowest text measured per character: random digits between dashes, every character
    a token for the encoder and spaCy, and no two windows alike."""
    return "".join(f"{rng.randrange(10)}-" for _ in range(n // 2 + 1))[:n]


def timed(check, text: str, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of ``repeats`` checks of ``text``."""
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = check(text)
        walls.append(time.perf_counter() - started)
        errors = [r.error for r in result.rails if r.error]
        if errors:
            raise RuntimeError(f"a rail failed while measuring: {errors}")
    return statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--policy",
        action="append",
        default=None,
        help="policy files (default: guardrails/default.yaml and guardrails/strict.yaml)",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = parser.parse_args()
    paths = args.policy or [
        str(ROOT / "guardrails" / "default.yaml"),
        str(ROOT / "guardrails" / "strict.yaml"),
    ]
    rows = []
    for path in paths:
        policy = load_policy(path)
        max_chars = policy.max_chars or 20_000
        # The policy's own timeouts, lifted far enough that the measurement is the work.
        with Guard.from_policy(policy.with_rail_timeouts(600_000)) as guard:
            for stage, check in (("input", guard.check_input), ("output", guard.check_output)):
                rails = policy.input if stage == "input" else policy.output
                timeout_ms = min(r.timeout_ms for r in rails)
                check(SHORT)  # warm-up: lazy model loads
                short_s = timed(check, SHORT, args.repeats * 5)
                for name, make in (("English", english), ("punctuation-dense", dense)):
                    for n in sorted({max_chars // 4, max_chars // 2, max_chars}):
                        text = make(n, random.Random(n))
                        took = timed(check, text, args.repeats)
                        allowance = timeout_ms / 1000 * max(1, -(-n // TIMEOUT_BLOCK_CHARS))
                        rows.append((Path(path).name, stage, name, n, took, short_s, allowance))
                        print(
                            f"{Path(path).name} {stage:6s} {name:17s} {n:6d} chars: {took:6.2f} s "
                            f"({took / short_s:,.0f}x the short prompt's {short_s * 1000:.1f} ms); "
                            f"allowance {allowance:.0f} s, margin {allowance / took:.1f}x",
                            flush=True,
                        )
    lines = [
        "A text within `max_chars` earns one `timeout_ms` per started "
        f"{TIMEOUT_BLOCK_CHARS:,} characters (the smallest `timeout_ms` of the stage's rails). "
        "Wall time of one check, median of "
        f"{args.repeats}, rails' timeouts lifted; baseline: a short prompt on the same guard, same process. "
        "Margin = allowance / time (a margin under 1 means the text would time out; an `on_error: allow` "
        "rail would then let it through unchecked).",
        "",
        "| policy | stage | text | characters | seconds | x short prompt | allowance, s | margin |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for policy_name, stage, name, n, took, short_s, allowance in rows:
        lines.append(
            f"| {policy_name} | {stage} | {name} | {n:,} | {took:.2f} | {took / short_s:,.0f}x | "
            f"{allowance:.0f} | **{allowance / took:.1f}x** |"
        )
    worst = min(allowance / took for *_, took, _, allowance in rows)
    lines += [
        "",
        f"Smallest margin: **{worst:.1f}x** ({'met' if worst > 1 else 'NOT met'}: every text gets a verdict).",
    ]
    if not args.no_write:
        write_section("guard_long_texts", "\n".join(lines))


if __name__ == "__main__":
    main()
