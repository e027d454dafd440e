"""Loaders for the toxicity training sources beyond Davidson and ToxiGen.

Each loader returns ``(text, toxic, hate, kind, split_key)`` tuples; :mod:`rai_harness.training.pipeline`
turns them into examples. ``kind`` is the register the text stands for (what the model card
reports false-positive rates by); ``split_key`` groups texts that must land in the same split
(one HolisticBias or assistant-register template, one QA item, one RTP document).

Sources and labels (every benign source is benign by construction: encyclopedic, QA, coreference
or bias-benchmark text; none of it is filtered by a classifier):

* ``decodingtrust``: RealToxicityPrompts prompts *and* continuations with their Perspective scores:
  toxicity >= 0.5 -> toxic, <= 0.2 -> benign, in between dropped (too uncertain to label);
  ``hate`` = identity_attack >= 0.5.
* ``truthfulqa``, ``simpleqa``, ``halueval``: questions and answers (right, wrong and
  hallucinated answers alike: false is not toxic) -> benign.
* ``bbq``: contexts + questions of six categories -> benign (they mention groups on purpose).
* ``bold``: Wikipedia sentences about people of every gender, race, religion, ideology -> benign.
* ``holistic_bias``: descriptor x noun x template statements -> benign, only the templates that
  state no attitude against the group ("I hate ...", "... are the worst", "I don't like ..."
  are left out) and only descriptors not marked ``dispreferred`` (which include slurs).
* ``winobias``: coreference sentences -> benign.
* ``assistant_registers``: ``datasets/assistant_registers/texts.jsonl`` (this repository):
  short replies, refusals, identity statements, counter-speech, plain answers; insults,
  threats, explicit and implicit hate.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from rai_harness.errors import ConfigError

__all__ = ["ASSISTANT_REGISTERS", "SOURCE_INFO", "SourceRow", "load_extra_sources"]

#: The repository's own training texts (relative to the repository root).
ASSISTANT_REGISTERS = Path("datasets") / "assistant_registers" / "texts.jsonl"
#: Perspective toxicity at or above which an RTP text is toxic, at or below which it is benign.
RTP_TOXIC, RTP_BENIGN = 0.5, 0.2
#: Caps per source (stratified by hash), so a large benign corpus does not dominate embedding time.
CAPS = {
    "bbq": 2000,
    "bold": 2000,
    "holistic_bias": 3000,
    "halueval": 2000,
    "simpleqa": 2000,
    "truthfulqa": 3000,
    "winobias": 1500,
}
_HB_EXCLUDED_TEMPLATES = ("I hate", "I don't like", "are the worst", "I'm not", "It's hard being")
_MAX_CHARS = 400


class SourceRow(NamedTuple):
    """One text with its labels, register and split key."""

    text: str
    toxic: int
    hate: int
    kind: str
    key: str
    #: Fine-tuning weight group, when it is not the kind (see ``Example.weight_group``).
    weight_group: str = ""


SOURCE_INFO: dict[str, dict[str, str]] = {
    "decodingtrust": {
        "name": "DecodingTrust toxicity (RealToxicityPrompts subset with Perspective scores)",
        "license": "CC-BY-SA-4.0 (RTP: Apache-2.0)",
        "labels": f"Perspective toxicity >= {RTP_TOXIC} toxic, <= {RTP_BENIGN} benign, else dropped",
    },
    "truthfulqa": {"name": "TruthfulQA questions and answers", "license": "Apache-2.0", "labels": "benign"},
    "simpleqa": {"name": "SimpleQA questions and answers", "license": "MIT", "labels": "benign"},
    "halueval": {"name": "HaluEval QA and ChatGPT answers", "license": "MIT", "labels": "benign"},
    "bbq": {"name": "BBQ contexts and questions", "license": "CC-BY-4.0", "labels": "benign"},
    "bold": {"name": "BOLD Wikipedia sentences", "license": "CC-BY-SA-4.0", "labels": "benign"},
    "holistic_bias": {
        "name": "HolisticBias descriptor x noun x template statements (benign templates)",
        "license": "CC-BY-SA-4.0",
        "labels": "benign",
    },
    "winobias": {"name": "WinoBias sentences", "license": "MIT", "labels": "benign"},
    "assistant_registers": {
        "name": "rai-harness assistant registers (datasets/assistant_registers, written for this project)",
        "license": "same as rai-harness",
        "labels": "per row",
    },
}


def _clip(text: str) -> str:
    return " ".join(text.split())[:_MAX_CHARS]


def _need(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"training data file not found: {path}", key_path="data_dir")
    return path


def _jsonl(path: Path) -> Iterator[dict]:
    # The project's one JSONL reader: streamed, errors name the file, line and column.
    from rai_harness.validation import iter_jsonl

    for line in iter_jsonl(_need(path), what="training data file"):
        yield line.obj


def _decodingtrust(d: Path) -> Iterator[SourceRow]:
    for name in ("toxic.jsonl", "nontoxic.jsonl"):
        for row in _jsonl(d / "decodingtrust" / "toxicity" / name):
            key = f"rtp:{row['filename']}:{row['begin']}"
            for part in ("prompt", "continuation"):
                item = row.get(part) or {}
                score = item.get("toxicity")
                if score is None or not item.get("text", "").strip():
                    continue
                if RTP_BENIGN < score < RTP_TOXIC:
                    continue
                toxic = int(score >= RTP_TOXIC)
                hate = int(toxic and (item.get("identity_attack") or 0) >= 0.5)
                yield SourceRow(_clip(item["text"]), toxic, hate, "web_text", key)


def _truthfulqa(d: Path) -> Iterator[SourceRow]:
    with _need(d / "truthfulqa" / "TruthfulQA.csv").open(encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            key = f"tqa:{i}"
            yield SourceRow(_clip(row["Question"]), 0, 0, "question", key)
            answers = {row["Best Answer"], row["Best Incorrect Answer"]}
            answers |= {
                a.strip() for a in row["Correct Answers"].split(";") + row["Incorrect Answers"].split(";")
            }
            for a in sorted(x for x in answers if x):
                yield SourceRow(_clip(a), 0, 0, "answer", key)


def _simpleqa(d: Path) -> Iterator[SourceRow]:
    with _need(d / "simpleqa" / "simple_qa_test_set.csv").open(encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            yield SourceRow(_clip(row["problem"]), 0, 0, "question", f"sqa:{i}")
            yield SourceRow(_clip(row["answer"]), 0, 0, "answer", f"sqa:{i}")


def _halueval(d: Path) -> Iterator[SourceRow]:
    for i, row in enumerate(_jsonl(d / "halueval" / "qa_one-turn_data.json")):
        key = f"hqa:{i}"
        yield SourceRow(_clip(row["question"]), 0, 0, "question", key)
        yield SourceRow(_clip(row["right_answer"]), 0, 0, "answer", key)
        yield SourceRow(_clip(row["hallucinated_answer"]), 0, 0, "answer", key)
    for row in _jsonl(d / "halueval" / "general_data.json"):
        key = f"hgen:{row['ID']}"
        yield SourceRow(_clip(row["user_query"]), 0, 0, "question", key)
        yield SourceRow(_clip(row["chatgpt_response"]), 0, 0, "answer", key)


def _bbq(d: Path) -> Iterator[SourceRow]:
    for path in sorted((d / "bbq" / "data").glob("*.jsonl")):
        for row in _jsonl(path):
            # One key per question template: its contexts vary only in the names filled in.
            key = f"bbq:{row['category']}:{row['question_index']}"
            yield SourceRow(_clip(row["context"]), 0, 0, "context", key)
            yield SourceRow(_clip(row["question"]), 0, 0, "question", key)


def _bold(d: Path) -> Iterator[SourceRow]:
    for path in sorted((d / "bold" / "wikipedia").glob("*_wiki.json")):
        for category, people in json.loads(_need(path).read_text(encoding="utf-8")).items():
            for person, sentences in people.items():
                for s in sentences:
                    for line in s.split("\n"):
                        if len(line.split()) >= 4:
                            yield SourceRow(_clip(line), 0, 0, "encyclopedic", f"bold:{category}:{person}")


def _holistic_bias(d: Path) -> Iterator[SourceRow]:
    root = d / "holistic_bias" / "v1.1"
    descriptors = json.loads(_need(root / "descriptors.json").read_text(encoding="utf-8"))
    nouns = json.loads(_need(root / "nouns.json").read_text(encoding="utf-8"))
    templates = json.loads(_need(root / "sentence_templates.json").read_text(encoding="utf-8"))
    kept = [t for t in templates if not any(x in t for x in _HB_EXCLUDED_TEMPLATES)]
    flat: list[str] = []
    for buckets in descriptors.values():
        items = buckets.values() if isinstance(buckets, dict) else [buckets]
        for group in items:
            for entry in group:
                if isinstance(entry, str):
                    flat.append(entry)
                elif entry.get("preference") != "dispreferred":
                    flat.append(entry["descriptor"])
    noun_pairs = [tuple(p) for gender in nouns.values() for p in gender]
    for desc in sorted(set(flat)):
        for singular, plural in noun_pairs:
            for t in kept:
                article = "an" if desc[0].lower() in "aeiou" else "a"
                text = t.format(
                    noun_phrase=f"{article} {desc} {singular}", plural_noun_phrase=f"{desc} {plural}"
                )
                yield SourceRow(text, 0, 0, "identity_statement", f"hb:{t}")


_WINO_RE = re.compile(r"^\d+\s+")


def _winobias(d: Path) -> Iterator[SourceRow]:
    for path in sorted((d / "winobias").glob("*_stereotyped_type*.txt.*")):
        for line in _need(path).read_text(encoding="utf-8").splitlines():
            text = _WINO_RE.sub("", line).replace("[", "").replace("]", "").strip()
            if text:
                yield SourceRow(text, 0, 0, "sentence", f"wino:{text}")


def _assistant_registers(path: Path) -> Iterator[SourceRow]:
    for row in _jsonl(path):
        hate = int(row["kind"] in ("explicit_hate", "implicit_hate"))
        yield SourceRow(
            row["text"],
            int(row["label"]),
            hate,
            row["kind"],
            f"ar:{row['template']}",
            row.get("weight_group", ""),
        )


_LOADERS: dict[str, Callable[[Path], Iterator[SourceRow]]] = {
    "decodingtrust": _decodingtrust,
    "truthfulqa": _truthfulqa,
    "simpleqa": _simpleqa,
    "halueval": _halueval,
    "bbq": _bbq,
    "bold": _bold,
    "holistic_bias": _holistic_bias,
    "winobias": _winobias,
}


def _cap(rows: list[SourceRow], cap: int | None, seed: int) -> list[SourceRow]:
    """At most ``cap`` rows, spread over all split keys (in seeded hash order), by hash within a key."""
    if cap is None or len(rows) <= cap:
        return rows
    by_key: dict[str, list[SourceRow]] = {}
    for r in rows:
        by_key.setdefault(r.key, []).append(r)
    # Every key contributes (a HolisticBias template has thousands of fills, a QA item two).
    per_key = max(2, -(-cap // len(by_key)))
    out: list[SourceRow] = []
    for key in sorted(by_key, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest()):
        members = sorted(by_key[key], key=lambda r: hashlib.sha256(f"{seed}:{r.text}".encode()).hexdigest())
        out.extend(members[:per_key])
        if len(out) >= cap:
            break
    return out[:cap]


def load_extra_sources(
    data_dir: Path, registers: Path | None, *, seed: int = 0
) -> dict[str, list[SourceRow]]:
    """Every extra source, capped (:data:`CAPS`); ``registers`` is the assistant-registers file.

    Raises:
        ConfigError: A source file is missing.
    """
    out = {name: _cap(list(load(data_dir)), CAPS.get(name), seed) for name, load in _LOADERS.items()}
    if registers is not None:
        out["assistant_registers"] = list(_assistant_registers(registers))
    return out
