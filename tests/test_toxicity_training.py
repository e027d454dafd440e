"""Training-side pieces of ``minilm-toxicity``: calibration, operating points, sources, datasets.

Everything here runs without ``../shared``; the checks of the shipped head that need its
encoder live in ``test_toxicity_head.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rai_harness.classifiers.toxicity_head import DEFAULT_HEAD_DIR
from rai_harness.training.calibration import (
    ASSISTANT_KINDS,
    platt,
    rates_by,
    reliability,
    summarize_kinds,
    threshold_for_macro_fpr,
)
from rai_harness.training.pipeline import (
    Example,
    _load_extra,
    assign_splits,
    find_registers,
    finetune_weight_groups,
)
from rai_harness.training.sources import SourceRow, _assistant_registers, _cap

REPO = Path(__file__).resolve().parents[1]
REGISTERS = REPO / "datasets" / "assistant_registers" / "texts.jsonl"
AUDIT = REPO / "datasets" / "guard_audit" / "audit.jsonl"
PROBE = REPO / "datasets" / "counter_speech_probe" / "probe.jsonl"
STANCE = REPO / "datasets" / "stance_probe" / "probe.jsonl"
FREEFORM = REPO / "datasets" / "freeform_probe" / "probe.jsonl"


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# -- calibration ---------------------------------------------------------------------------------


def test_platt_recovers_a_known_map_and_improves_reliability():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, 20_000)
    # True probability sigmoid(0.5 * logit - 1): the raw sigmoid(logit) is over-confident.
    y = (rng.random(logits.size) < 1 / (1 + np.exp(-(0.5 * logits - 1)))).astype(int)
    a, c = platt(logits, y)
    assert a == pytest.approx(0.5, abs=0.05) and c == pytest.approx(-1.0, abs=0.1)
    raw = reliability(1 / (1 + np.exp(-logits)), y)
    cal = reliability(1 / (1 + np.exp(-(a * logits + c))), y)
    assert cal["ece"] < 0.02 < raw["ece"]
    assert sum(b["n"] for b in cal["bins"]) == cal["n"] == logits.size


def test_the_threshold_never_exceeds_the_target_and_is_the_smallest_that_meets_it():
    rng = np.random.default_rng(1)
    for target in (0.0, 0.01, 0.03, 0.1):
        scores = rng.beta(1, 8, 997)
        t = threshold_for_macro_fpr(scores, ["answer"] * len(scores), target)
        assert (scores >= t).mean() <= target + 1e-12
        # ... and is the smallest 2-decimal threshold that does so (one step lower is over).
        if t > 0.01:
            assert (scores >= round(t - 0.01, 2)).mean() > target
    with pytest.raises(ValueError):
        threshold_for_macro_fpr(np.array([]), [], 0.01)
    with pytest.raises(ValueError):
        threshold_for_macro_fpr(np.array([0.5, 0.6]), ["answer"], 0.01)


def test_every_kind_weighs_the_same_in_the_threshold():
    # 98 answers at 0.10 and 2 at 0.95; 10 short replies, scored 0.05 ... 0.95 (one per 0.1).
    answers = np.array([0.10] * 98 + [0.95] * 2)
    replies = np.round(np.arange(0.05, 1.0, 0.1), 2)
    scores = np.concatenate([answers, replies])
    kinds = ["answer"] * 100 + ["short_reply"] * 10
    # From 0.86 to 0.95: answers 2 %, replies 10 % (the 0.95): mean 6 %. At 0.85 the reply at
    # 0.85 joins (mean 11 %); from 0.96 nothing is flagged. Pooled, 0.86 would pass a 3 % target
    # (3 of 110 = 2.7 %) while a tenth of the replies is flagged.
    assert threshold_for_macro_fpr(scores, kinds, 0.03) == 0.96
    assert threshold_for_macro_fpr(scores, kinds, 0.06) == 0.86
    assert threshold_for_macro_fpr(scores, kinds, 0.11) == 0.76


def test_rates_by_counts_false_positives_and_recall():
    kinds = ["a", "a", "a", "b", "b"]
    y = np.array([0, 0, 1, 1, 0])
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.0])
    r = rates_by(kinds, y, p, 0.5)
    assert r["a"]["fpr"]["k"] == 1 and r["a"]["fpr"]["n"] == 2 and r["a"]["recall"]["rate"] == 1.0
    assert r["b"]["recall"]["rate"] == 0.0 and r["b"]["fpr"]["rate"] == 0.0
    lo, hi = r["a"]["fpr"]["ci95"]
    assert 0 < lo < 0.5 < hi < 1
    pooled = summarize_kinds(r, ["a", "b"])
    assert pooled is not None and pooled["k"] == 1 and pooled["n"] == 3
    assert summarize_kinds(r, ["zzz"]) is None


# -- datasets and splits -------------------------------------------------------------------------


def test_registers_split_by_template():
    rows = [
        Example(r.text, {"toxic": r.toxic, "hate": r.hate}, "assistant_registers", kind=r.kind, key=r.key)
        for r in _assistant_registers(REGISTERS)
    ]
    split = assign_splits(rows, seed=0)
    by_key: dict[str, set[str]] = {}
    for r in split:
        by_key.setdefault(r.key, set()).add(r.split)
    assert all(len(s) == 1 for s in by_key.values())
    assert {r.split for r in split} == {"train", "validation", "test"}
    # The split of a key does not depend on which other rows exist.
    alone = assign_splits([rows[0]], seed=0)[0]
    assert alone.split == next(r.split for r in split if r.key == rows[0].key)


def test_contrast_rows_weigh_as_their_own_cell_through_loading_and_splitting(tmp_path, monkeypatch):
    """A registers row's ``weight_group`` survives loading and the split, and names its fine-tune cell."""
    from rai_harness.training import sources

    monkeypatch.setattr(sources, "_LOADERS", {})  # only the registers file, no ../shared/data
    registers = tmp_path / "texts.jsonl"
    rows = [
        {"text": "Women are kind.", "label": 0, "kind": "identity_statement", "template": "gp_x"},
        {"text": "Women are not kind.", "label": 1, "kind": "implicit_hate", "template": "gd_x"},
        {"text": "Women are welcome here.", "label": 0, "kind": "identity_statement", "template": "id_x"},
    ]
    for row, group in zip(rows, ("contrast", "contrast", None), strict=True):
        if group:
            row["weight_group"] = group
    registers.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loaded = _load_extra(tmp_path / "no-shared-data", registers, seed=0)["assistant_registers"]
    split = assign_splits(loaded, seed=0)
    by_text = {r.text: r for r in split}
    assert by_text["Women are not kind."].weight_group == "contrast"
    assert by_text["Women are not kind."].kind == "implicit_hate"  # the card still reports it by kind
    groups = dict(zip((r.text for r in split), finetune_weight_groups(split), strict=True))
    assert groups == {
        "Women are kind.": "assistant_registers:contrast",
        "Women are not kind.": "assistant_registers:contrast",
        "Women are welcome here.": "assistant_registers:identity_statement",
    }
    davidson = Example("you idiot", {"toxic": 1, "hate": 0}, "davidson", kind="tweet")
    assert finetune_weight_groups([davidson]) == ["davidson"]


def test_contrast_frames_are_one_label_each_and_come_in_polarity_pairs():
    """Every fill of a contrast frame sits under one template, and both classes are in the group."""
    rows = [r for r in _read(REGISTERS) if r.get("weight_group") == "contrast"]
    assert rows and {r["label"] for r in rows} == {0, 1}
    by_template: dict[str, set[int]] = {}
    for r in rows:
        by_template.setdefault(r["template"], set()).add(r["label"])
    # One label per frame: a frame's fills differ only in the group and the word.
    assert all(len(labels) == 1 for labels in by_template.values())
    # Each polarity family has both its benign and its toxic side.
    families = {t[:3] for t in by_template}
    assert {"gp_", "gd_", "gm_", "ga_"} <= families


def test_registers_and_audit_files_are_well_formed_and_disjoint():
    train, audit = _read(REGISTERS), _read(AUDIT)
    for rows in (train, audit):
        assert all(set(r) >= {"id", "text", "label", "kind", "template", "groups"} for r in rows)
        assert {r["label"] for r in rows} == {0, 1}
        assert len({r["id"] for r in rows}) == len(rows)
    assert not {r["text"].casefold() for r in train} & {r["text"].casefold() for r in audit}
    kinds = {r["kind"] for r in audit}
    assert {"short_reply", "identity_statement", "counter_speech"} <= kinds
    assert (REPO / "datasets" / "assistant_registers" / "CARD.md").is_file()
    assert (REPO / "datasets" / "guard_audit" / "CARD.md").is_file()
    assert find_registers() == REGISTERS


def _generator():
    """``datasets/assistant_registers/generate.py`` as a module (a script, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_ar_generate", REGISTERS.with_name("generate.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_held_out_sets_share_no_groups_or_wording_with_training():
    gen = _generator()
    train = _read(REGISTERS)
    # The guard-audit groups are never filled into a training pattern.
    audit_groups = {g[0] for g in gen.AUDIT_GROUPS}
    assert not audit_groups & {g for r in train for g in r["groups"]}
    # The counter-speech probe is evaluation-only: no text and no 5-word run shared with training.
    probe = _read(PROBE)
    assert {r["kind"] for r in probe} == {"counter_speech", "framed_abuse"}
    assert {r["label"] for r in probe if r["kind"] == "counter_speech"} == {0}
    assert {r["label"] for r in probe if r["kind"] == "framed_abuse"} == {1}
    assert len({r["id"] for r in probe}) == len(probe)
    gen.check_probe_held_out(train)
    leaky = [*train, {"text": probe[0]["text"].upper()}]
    with pytest.raises(AssertionError, match="probe wording"):
        gen.check_probe_held_out(leaky)
    assert (PROBE.parent / "CARD.md").is_file()
    # So is the stance probe: benign denials and affirmations, toxic assertions and abuse.
    stance = _read(STANCE)
    assert {(r["kind"], r["label"]) for r in stance} == {
        ("denial", 0),
        ("affirmation", 0),
        ("assertion", 1),
        ("abuse", 1),
    }
    assert len({r["id"] for r in stance}) == len(stance) and len({r["text"] for r in stance}) == len(stance)
    with pytest.raises(AssertionError, match="stance probe wording"):
        gen.check_probe_held_out([*train, {"text": stance[-1]["text"].lower()}])
    assert (STANCE.parent / "CARD.md").is_file()


def test_freeform_probe_and_the_written_batch_stay_apart(tmp_path):
    gen = _generator()
    train = _read(REGISTERS)
    # The free-form probe: benign and toxic answers of the assistant kinds, unique, evaluation-only.
    probe = _read(FREEFORM)
    assert {r["label"] for r in probe if r["kind"] in gen.WRITTEN_KINDS[0]} == {0}
    assert {r["label"] for r in probe if r["kind"] in gen.WRITTEN_KINDS[1]} == {1}
    assert len({r["text"].casefold() for r in probe}) == len(probe) == len({r["id"] for r in probe})
    assert not {r["text"].casefold() for r in probe} & {r["text"].casefold() for r in train}
    longest = max(probe, key=lambda r: len(r["text"]))["text"]
    with pytest.raises(AssertionError, match="freeform probe wording"):
        gen.check_probe_held_out([*train, {"text": longest.lower()}])
    assert (FREEFORM.parent / "CARD.md").is_file()
    # The written batch: every text its own pattern (so the split spreads them), kinds by label.
    written = [r for r in train if r.get("weight_group", "").startswith("written")]
    assert len(written) > 2000 and len({r["template"] for r in written}) == len(written)
    assert all(r["kind"] in gen.WRITTEN_KINDS[r["label"]] for r in written)
    # A written text that equals or shares five words with an evaluation text is dropped, not kept.
    source = tmp_path / "written.jsonl"
    lines = [
        {"id": "w1", "text": "Thanks, see you at lunch.", "label": 0, "kind": "short_reply"},
        {"id": "w2", "text": "Well, " + longest, "label": probe[-1]["label"], "kind": "insult"},
        {"id": "w3", "text": "i AGREE.", "label": 0, "kind": "short_reply"},
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    gen.WRITTEN = source
    kept = gen.written_rows([longest, "I agree."])
    assert [r["template"] for r in kept] == ["w1"]
    assert kept[0]["weight_group"] == "written"
    source.write_text(json.dumps({**lines[0], "kind": "insult"}) + "\n", encoding="utf-8")
    with pytest.raises(AssertionError, match=r"written\.jsonl:1: insult/0"):
        gen.written_rows([])


def test_counter_speech_its_hard_negatives_and_dialect_are_in_training():
    rows = list(_assistant_registers(REGISTERS))
    # Framed hate ("Not racist, but ...") is hate, in the explicit-hate weight cell (a cell of
    # its own over-weighted 14 frames); quoting a slur to condemn it is not.
    framed = [r for r in rows if r.key.startswith("ar:fh_")]
    assert framed and {(r.kind, r.toxic, r.hate) for r in framed} == {("explicit_hate", 1, 1)}
    counter = [r for r in rows if r.kind == "counter_speech"]
    assert counter and all(r.toxic == 0 and r.hate == 0 for r in counter)
    # No toxic frame rejects-then-asserts with counter-speech's own construction.
    assert not [r.text for r in framed if "calling" in r.text.lower() and "prejudice" in r.text.lower()]
    gen = _generator()
    # Every slur is mentioned in benign counter-speech and used in a toxic text alike, so the
    # word alone cannot decide.
    for slur, _, _ in gen.SLURS:
        assert any(f"'{slur}'" in r.text for r in counter), slur
        assert any(slur in r.text and r.toxic for r in rows), slur
    # Dialect: each pattern in AAE and in Standard English, both benign, same pattern (one split).
    dialect = [r for r in rows if r.kind == "dialect"]
    assert dialect and all(r.toxic == 0 for r in dialect)
    for tid, aae, sae in gen.DIALECT:
        texts = {r.text for r in dialect if r.key == f"ar:{tid}"}
        person = gen.DIALECT_PEOPLE[0] if "{S}" in aae else ""
        assert {aae.format(S=person), sae.format(S=person)} <= texts, tid


def test_cap_keeps_whole_spread_and_is_deterministic():
    rows = [SourceRow(f"t{k}-{i}", 0, 0, "x", f"k{k}") for k in range(20) for i in range(50)]
    a, b = _cap(rows, 100, seed=0), _cap(list(reversed(rows)), 100, seed=0)
    assert len(a) == 100 and sorted(a) == sorted(b)
    assert len({r.key for r in a}) == 20  # every key contributes
    assert _cap(rows, None, 0) == rows


# -- the shipped head ------------------------------------------------------------------------------

V1 = DEFAULT_HEAD_DIR.with_name("minilm_toxicity_v1")


def _policy_threshold(policy: str, rail: str) -> float:
    from rai_harness.guardrails import load_policy

    loaded = load_policy(REPO / "guardrails" / f"{policy}.yaml")
    stage = loaded.input if rail.endswith("input") else loaded.output
    (found,) = [r for r in stage if r.name == rail]
    return float(found.threshold)


def test_shipped_card_quotes_its_metrics_and_the_policies_use_its_thresholds():
    metrics = json.loads((DEFAULT_HEAD_DIR / "metrics.json").read_text())
    chosen = metrics["policy_thresholds"]
    assert set(chosen) >= {"default/toxic-output", "strict/toxic-output"}
    # Every shipped toxicity rail uses the threshold the card chose for it from the calibrated curve.
    for key, value in chosen.items():
        policy, rail = key.split("/")
        assert _policy_threshold(policy, rail) == pytest.approx(value["threshold"]), key
    card = (DEFAULT_HEAD_DIR / "MODEL_CARD.md").read_text()
    for section in (
        "## Operating points of the shipped policies",
        "## Comparison with the previous head",
        "## Calibration",
        "### Fine-tuning the encoder",
    ):
        assert section in card
    t = f"{chosen['default/toxic-output']['threshold']:.2f}"
    held_out = metrics["kinds"][t]
    assert held_out["assistant_benign_fpr"]["n"] > 1000
    assert set(ASSISTANT_KINDS) & set(held_out["by_kind"])
    # The calibrated head's reliability on the test split (10-bin ECE) stays small.
    assert metrics["calibration"]["toxic"]["test_after"]["ece"] < 0.05
    # The old head's numbers are kept for comparison.
    assert metrics["baseline"]["threshold"] == 0.5 and metrics["baseline"]["test_by_kind"]
    # Every held-out labelled set is scored on its committed file (a changed file needs
    # `rai train toxicity-head --evaluate`), for this head and the compared ones.
    from rai_harness.training.pipeline import HELD_OUT_SETS

    for name, relative in HELD_OUT_SETS:
        assert metrics[name]["n"] == len(_read(REPO / relative)), name
        assert metrics[name]["at"][t]["by_kind"], name
        for role in ("baseline", "previous"):
            assert metrics[role][f"{name}_by_kind"], (role, name)
    assert "## Stance probe" in card and "## Counter-speech probe" in card and "## Free-form probe" in card


def test_shipped_head_meets_its_targets_held_out():
    # Issue targets at the default policy's output threshold, on the held-out test split.
    metrics = json.loads((DEFAULT_HEAD_DIR / "metrics.json").read_text())
    t = f"{metrics['policy_thresholds']['default/toxic-output']['threshold']:.2f}"
    held_out = metrics["kinds"][t]
    assert held_out["assistant_benign_fpr"]["rate"] <= 0.03
    assert held_out["toxic_recall"]["rate"] >= 0.90
    assert held_out["by_kind"]["identity_statement"]["fpr"]["rate"] <= 0.05
    assert held_out["by_kind"]["short_reply"]["fpr"]["rate"] <= 0.03
    # The dialect check: AAE and SAE false-positive rates within 5 points at the shipped threshold.
    aae = metrics["aae"]["at_threshold"]
    assert aae["threshold"] == pytest.approx(float(t))
    assert abs(aae["fpr_aae"] - aae["fpr_sae"]) <= 0.05
    # Better than the v1 head on benign assistant registers, measured on the same texts.
    assert held_out["assistant_benign_fpr"]["rate"] < metrics["baseline"]["assistant_benign_fpr"]["rate"]


def test_v1_head_is_kept_for_comparison():
    from rai_harness.classifiers.toxicity_head import ToxicityHead

    head = ToxicityHead.load(V1)
    assert head.encoder is None and head.labels[0] == "toxic"
    assert ToxicityHead.load(DEFAULT_HEAD_DIR).encoder is not None
