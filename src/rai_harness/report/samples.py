"""One streaming pass over ``samples.jsonl``: what the report needs from 100k+ calls, kept small.

The file is read line by line and each line is dropped once digested, so memory holds
only what the report embeds or summarises:

* latency and TTFT of every successful call per provider (floats in compact arrays),
  for the distribution charts;
* per-sample scores named by a metric's ``sample_key`` (floats, per suite and provider),
  for histograms;
* the ``k`` worst examples per (suite, sample key, direction) and provider in bounded
  heaps: a line is turned into an example only when it enters a heap;
* guard actions and one example error message per error type;
* the cost of every successful call per provider (for the significance of cost differences);
* for providers named in ``paired`` (both sides of a guarded/unguarded pair), each item's
  per-sample score and whether the guard blocked it, so the report can say how much of a
  guard's effect comes from blocked answers rather than changed ones.

"Worst" follows the metric's direction: the highest values when lower is better, the
lowest when higher is better, the largest magnitude when closer to 0 is better.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
from array import array
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rai_harness.jsoncodec import loads as jsoncodec_loads
from rai_harness.markdown import neutralise_controls

if TYPE_CHECKING:
    from rai_harness.record import RunRecord


__all__ = ["EvidenceExample", "EvidenceKey", "SampleStats", "scan_samples"]

log = logging.getLogger(__name__)

#: Characters of a prompt and of an output kept per example (the rest is cut, and said so).
PROMPT_CHARS = 400
OUTPUT_CHARS = 700


@dataclass(frozen=True, order=True)
class EvidenceKey:
    """What a set of worst examples evidences: a suite's per-sample score, read in one direction."""

    suite: str
    sample_key: str
    direction: str


@dataclass(frozen=True)
class EvidenceExample:
    """One call shown as evidence (texts already cut to length; still untrusted).

    Attributes:
        provider_id: Who answered.
        sample_id: The call's sample id.
        value: The per-sample score.
        prompt: The last user message, cut to :data:`PROMPT_CHARS`.
        prompt_cut: Characters cut from the prompt.
        output: The answer, cut to :data:`OUTPUT_CHARS`.
        output_cut: Characters cut from the answer.
        finish_reason: Why generation stopped (``guard_blocked_output``...).
        guard_action: The guard's action on the call, if guarded.
        spans: PII the suite's own scan found in the output, as ``(start, end, label)`` within
            the shown (cut) output: ``--redact`` masks them whatever its own detectors find.
    """

    provider_id: str
    sample_id: str
    value: float
    prompt: str
    prompt_cut: int
    output: str
    output_cut: int
    finish_reason: str | None
    guard_action: str | None
    spans: tuple[tuple[int, int, str], ...] = ()


def _recorded_spans(scores: Any, length: int) -> tuple[tuple[int, int, str], ...]:
    """Valid ``scores["spans"]`` (``[start, end, label]``, as the PII suites record them), clipped to ``length``."""
    raw = scores.get("spans") if isinstance(scores, Mapping) else None
    if not isinstance(raw, list):
        return ()
    out = []
    for item in raw[:1000]:
        if (
            isinstance(item, (list, tuple))
            and len(item) >= 3
            and type(item[0]) is int
            and type(item[1]) is int
            and 0 <= item[0] < item[1]
            and item[0] < length
        ):
            out.append((item[0], min(item[1], length), str(item[2])[:40]))
    return tuple(out)


@dataclass
class SampleStats:
    """What :func:`scan_samples` gathered (empty when there is no ``samples.jsonl``)."""

    found: bool = False
    lines: int = 0
    bad_lines: int = 0
    latency: dict[str, array[float]] = field(default_factory=lambda: defaultdict(lambda: array("d")))
    ttft: dict[str, array[float]] = field(default_factory=lambda: defaultdict(lambda: array("d")))
    #: Cost in USD of each successful call with a recorded cost, per provider.
    cost: dict[str, array[float]] = field(default_factory=lambda: defaultdict(lambda: array("d")))
    #: (suite, sample_key, provider) -> (sample_id, repeat) -> (value, blocked by the guard);
    #: only for the providers :func:`scan_samples` was asked to pair.
    paired: dict[tuple[str, str, str], dict[tuple[str, int], tuple[float, bool]]] = field(
        default_factory=dict
    )
    #: (suite, sample_key) -> provider -> values.
    values: dict[tuple[str, str], dict[str, array[float]]] = field(default_factory=dict)
    #: (suite, sample_key) whose values were all booleans (no histogram for those).
    binary: set[tuple[str, str]] = field(default_factory=set)
    evidence: dict[EvidenceKey, dict[str, list[EvidenceExample]]] = field(default_factory=dict)
    guard_actions: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    error_examples: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))


def clean_text(text: str, limit: int) -> tuple[str, int]:
    """Cut ``text`` to ``limit`` characters and make control characters visible.

    Control characters (NUL, ANSI escapes) would otherwise be swallowed or mangle the page;
    they become U+FFFD. Returns the text and how many characters were cut.
    """
    cut = max(0, len(text) - limit)
    if cut:
        text = text[:limit]
    return neutralise_controls(text, keep="\t\n\r"), cut


def _lookup(scores: Mapping[str, Any], key: str) -> Any:
    """``scores[key]``, or a dotted path into nested dicts (``labels.toxic``)."""
    if key in scores:
        return scores[key]
    value: Any = scores
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _last_user(messages: Any) -> str:
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, Mapping) and m.get("role") == "user":
                return str(m.get("content") or "")
        if messages and isinstance(messages[-1], Mapping):
            return str(messages[-1].get("content") or "")
    return ""


def evidence_keys(record: RunRecord) -> dict[str, dict[str, set[str]]]:
    """suite -> sample key -> directions of the metrics it evidences."""
    out: dict[str, dict[str, set[str]]] = {}
    for name, suite in record.suites.items():
        for spec in suite.metrics:
            if spec.sample_key:
                out.setdefault(name, {}).setdefault(spec.sample_key, set()).add(spec.direction)
    return out


def _example(d: Mapping[str, Any], value: float) -> EvidenceExample:
    prompt, prompt_cut = clean_text(_last_user(d.get("messages")), PROMPT_CHARS)
    output, output_cut = clean_text(str(d.get("output") or ""), OUTPUT_CHARS)
    guard = d.get("guard")
    return EvidenceExample(
        provider_id=str(d.get("provider_id")),
        sample_id=str(d.get("sample_id")),
        value=value,
        prompt=prompt,
        prompt_cut=prompt_cut,
        output=output,
        output_cut=output_cut,
        finish_reason=d.get("finish_reason"),
        guard_action=str(guard.get("action")) if isinstance(guard, Mapping) and guard.get("action") else None,
        spans=_recorded_spans(d.get("scores"), len(output)),
    )


#: Files larger than this (bytes) are scanned by several processes, one byte range each.
PARALLEL_MIN_BYTES = 64 * 1024 * 1024
#: At most this many scanning processes.
MAX_WORKERS = 8

_NUMBER = (float, int)
#: (suite, sample key) -> directions, as plain tuples (hashing dataclasses per line is slow).
#: Each direction comes with the sign that turns a value into "badness": 1 (lower is better),
#: -1 (higher is better) or 0 (magnitude: closer to 0 is better).
_Keys = dict[str, tuple[tuple[str, tuple[tuple[str, int], ...]], ...]]
_SIGN = {"lower": 1, "higher": -1, "neutral": 0}


@dataclass
class _Partial:
    """What one byte range of the file yielded; partials merge into :class:`SampleStats`.

    Heap entries are ``(badness, -byte offset, example)``: the offset of the line in the
    file orders ties the same way however the file was split, so the report is identical
    with one process or many.
    """

    lines: int = 0
    bad_lines: int = 0
    latency: dict[str, array[float]] = field(default_factory=dict)
    ttft: dict[str, array[float]] = field(default_factory=dict)
    cost: dict[str, array[float]] = field(default_factory=dict)
    paired: dict[tuple[str, str, str], dict[tuple[str, int], tuple[float, bool]]] = field(
        default_factory=dict
    )
    values: dict[tuple[str, str, str], array[float]] = field(default_factory=dict)
    #: (suite, key) seen with a boolean value / with a number: binary keys are only the former.
    boolean: set[tuple[str, str]] = field(default_factory=set)
    non_binary: set[tuple[str, str]] = field(default_factory=set)
    heaps: dict[tuple[str, str, str, str], list[tuple[float, int, EvidenceExample]]] = field(
        default_factory=dict
    )
    guard_actions: dict[str, Counter[str]] = field(default_factory=dict)
    errors: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)


def _scan_range(
    path: str,
    start: int,
    end: int | None,
    keys: _Keys,
    max_examples: int,
    paired: frozenset[str] = frozenset(),
) -> _Partial:
    """Digest the lines of ``path`` that start at byte offsets in ``[start, end)``."""
    part = _Partial()
    latency, ttft, values, heaps = part.latency, part.ttft, part.values, part.heaps
    boolean, non_binary = part.boolean, part.non_binary
    # orjson parses samples.jsonl about 3x faster than the standard library (measured in
    # benchmarks/report_scale.py); jsoncodec falls back to it for what orjson refuses, so a line
    # holding NaN (the writer's standard library writes it) is read, not counted as bad.
    loads = jsoncodec_loads
    with open(path, "rb") as fh:
        pos = start
        if start > 0:
            # The line that straddles `start` belongs to the previous range.
            fh.seek(start - 1)
            pos = start - 1 + len(fh.readline())
        while end is None or pos < end:
            raw = fh.readline()
            if not raw:
                break
            offset = pos
            pos += len(raw)
            if raw.isspace():
                continue
            try:
                d = loads(raw)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                part.bad_lines += 1
                continue
            if type(d) is not dict:
                part.bad_lines += 1
                continue
            part.lines += 1
            pid = str(d.get("provider_id"))
            guard = d.get("guard")
            if type(guard) is dict and guard.get("action"):
                counter = part.guard_actions.get(pid)
                if counter is None:
                    counter = part.guard_actions[pid] = Counter()
                counter[str(guard["action"])] += 1
            if d.get("status") != "ok":
                err = d.get("error")
                if type(err) is dict:
                    ekey = (pid, str(err.get("type") or "unknown"))
                    if ekey not in part.errors:
                        part.errors[ekey] = (offset, clean_text(str(err.get("message") or ""), 240)[0])
                continue
            lat = d.get("latency_s")
            if isinstance(lat, _NUMBER) and math.isfinite(lat):
                arr = latency.get(pid)
                if arr is None:
                    arr = latency[pid] = array("d")
                arr.append(lat)
            first = d.get("ttft_s")
            if isinstance(first, _NUMBER) and math.isfinite(first):
                arr = ttft.get(pid)
                if arr is None:
                    arr = ttft[pid] = array("d")
                arr.append(first)
            usd = d.get("cost_usd")
            if isinstance(usd, _NUMBER) and math.isfinite(usd):
                arr = part.cost.get(pid)
                if arr is None:
                    arr = part.cost[pid] = array("d")
                arr.append(usd)
            scores = d.get("scores")
            meta = d.get("metadata")
            if type(scores) is not dict or type(meta) is not dict:
                continue
            suite = meta.get("suite")
            if not isinstance(suite, str):
                continue
            suite_keys = keys.get(suite)
            if not suite_keys:
                continue
            for skey, directions in suite_keys:
                raw_value = scores[skey] if skey in scores else _lookup(scores, skey)
                # Inlined _as_float: this loop runs once per line and key (hundreds of thousands).
                kind = type(raw_value)
                if kind is float or kind is int:
                    value = float(raw_value)
                    if not math.isfinite(value):
                        continue
                    non_binary.add((suite, skey))
                elif kind is bool:
                    value = 1.0 if raw_value else 0.0
                    boolean.add((suite, skey))
                else:
                    continue
                vkey = (suite, skey, pid)
                arr = values.get(vkey)
                if arr is None:
                    arr = values[vkey] = array("d")
                arr.append(value)
                if pid in paired:
                    finish = d.get("finish_reason")
                    blocked = (isinstance(finish, str) and finish.startswith("guard_blocked")) or (
                        type(guard) is dict and guard.get("action") == "block"
                    )
                    rep = d.get("repeat")
                    item = (str(d.get("sample_id")), rep if type(rep) is int else 0)
                    part.paired.setdefault(vkey, {})[item] = (value, blocked)
                if max_examples <= 0:
                    continue
                for direction, sign in directions:
                    bad = abs(value) if sign == 0 else sign * value
                    hk = (suite, skey, direction, pid)
                    heap = heaps.get(hk)
                    if heap is None:
                        heap = heaps[hk] = []
                    # Strictly worse than the kept entry it would displace, so ties keep the
                    # earliest lines, and a line becomes an example object only when it is kept.
                    if len(heap) < max_examples:
                        heapq.heappush(heap, (bad, -offset, _example(d, value)))
                    elif bad > heap[0][0]:
                        heapq.heapreplace(heap, (bad, -offset, _example(d, value)))
    return part


def _ranges(size: int, workers: int) -> list[tuple[int, int | None]]:
    step = size // workers + 1
    return [(i * step, (i + 1) * step if i < workers - 1 else None) for i in range(workers)]


def _scan(
    path: Path, keys: _Keys, max_examples: int, workers: int | None, paired: frozenset[str] = frozenset()
) -> list[_Partial]:
    size = path.stat().st_size
    if workers is None:
        # Two cores gained nothing in benchmarks/report_scale.py (the second one is usually
        # busy, and each process has its own start-up): split only on four or more.
        cpus = os.cpu_count() or 1
        workers = min(cpus, MAX_WORKERS) if size >= PARALLEL_MIN_BYTES and cpus >= 4 else 1
    if workers <= 1:
        return [_scan_range(str(path), 0, None, keys, max_examples, paired)]
    import concurrent.futures
    import multiprocessing

    try:
        # spawn, not fork: the caller may hold threads (torch, the event loop) that a forked
        # child would inherit in an undefined state.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [
                pool.submit(_scan_range, str(path), start, end, keys, max_examples, paired)
                for start, end in _ranges(size, workers)
            ]
            return [f.result() for f in futures]
    except (OSError, RuntimeError, concurrent.futures.process.BrokenProcessPool) as exc:
        log.warning("parallel scan of %s failed (%s); scanning in one process", path, exc)
        return [_scan_range(str(path), 0, None, keys, max_examples, paired)]


def _merge(parts: Sequence[_Partial], max_examples: int) -> SampleStats:
    stats = SampleStats(found=True)
    boolean: set[tuple[str, str]] = set()
    non_binary: set[tuple[str, str]] = set()
    heaps: dict[tuple[str, str, str, str], list[tuple[float, int, EvidenceExample]]] = {}
    errors: dict[tuple[str, str], tuple[int, str]] = {}
    for part in parts:  # in file order
        stats.lines += part.lines
        stats.bad_lines += part.bad_lines
        for pid, arr in part.latency.items():
            stats.latency[pid].extend(arr)
        for pid, arr in part.ttft.items():
            stats.ttft[pid].extend(arr)
        for pid, arr in part.cost.items():
            stats.cost[pid].extend(arr)
        for vkey, items in part.paired.items():
            stats.paired.setdefault(vkey, {}).update(items)
        for (suite, skey, pid), arr in part.values.items():
            stats.values.setdefault((suite, skey), {}).setdefault(pid, array("d")).extend(arr)
        boolean |= part.boolean
        non_binary |= part.non_binary
        for hk, heap in part.heaps.items():
            heaps.setdefault(hk, []).extend(heap)
        for pid, counter in part.guard_actions.items():
            stats.guard_actions[pid].update(counter)
        for ekey, (offset, message) in part.errors.items():
            if ekey not in errors or offset < errors[ekey][0]:
                errors[ekey] = (offset, message)
    stats.binary = boolean - non_binary
    for (pid, etype), (_, message) in errors.items():
        stats.error_examples[pid][etype] = message
    for (suite, skey, direction, pid), entries in heaps.items():
        # Worst first; among equals, the earliest line (largest -offset) first.
        ranked = [ex for _, _, ex in sorted(entries, key=lambda t: (-t[0], -t[1]))][:max_examples]
        if (suite, skey) in stats.binary:
            # For a yes/no score only the failures are evidence: a "worst" non-leak is not a leak.
            good = {"lower": 0.0, "higher": 1.0, "neutral": 0.0}[direction]
            ranked = [ex for ex in ranked if ex.value != good]
        stats.evidence.setdefault(EvidenceKey(suite, skey, direction), {})[pid] = ranked
    return stats


def scan_samples(
    run_dir: Path,
    record: RunRecord,
    *,
    max_examples: int = 5,
    workers: int | None = None,
    paired: Sequence[str] = (),
) -> SampleStats:
    """Read ``samples.jsonl`` once and gather the report's distributions and evidence.

    Args:
        run_dir: The run folder.
        record: Its run record (which suites and sample keys to look for).
        max_examples: Worst examples kept per evidence key and provider.
        workers: Processes that scan byte ranges of the file in parallel; default one per
            CPU (up to :data:`MAX_WORKERS`) for files of :data:`PARALLEL_MIN_BYTES` or more on
            machines with four or more CPUs, else one. The result is the same either way.
        paired: Providers whose per-item scores are kept (by sample id), for paired breakdowns.

    Returns:
        The gathered statistics; ``found`` is false when the file does not exist.
    """
    path = run_dir / (record.samples_file or "samples.jsonl")
    if not path.is_file():
        return SampleStats()
    keys: _Keys = {
        suite: tuple((skey, tuple((d, _SIGN.get(d, 1)) for d in sorted(dirs))) for skey, dirs in per.items())
        for suite, per in evidence_keys(record).items()
    }
    stats = _merge(_scan(path, keys, max_examples, workers, frozenset(paired)), max_examples)
    if stats.bad_lines:
        log.warning("%s: %d unreadable lines skipped", path, stats.bad_lines)
    expected = sum(p.calls for p in record.providers.values())
    if stats.lines < expected:
        log.warning("%s: %d of the %d calls in run.json are missing", path, expected - stats.lines, expected)
    return stats
