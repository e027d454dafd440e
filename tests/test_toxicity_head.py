"""The embedded ``minilm-toxicity`` classifier, its training pipeline and its bias check.

The example texts are mild and written for these tests. Synthetic training rows use
fictional groups ("Zorbians") so no real group is stereotyped, even in a fixture.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from rai_harness.classifiers.base import Classifier, ClassifierSpec
from rai_harness.classifiers.toxicity_head import (
    DEFAULT_HEAD_DIR,
    MiniLMToxicityClassifier,
    ToxicityHead,
    normalize_for_model,
)
from rai_harness.errors import ConfigError
from rai_harness.training.pipeline import (
    Example,
    TrainReport,
    assign_splits,
    evaluate_aae_pairs,
    load_examples,
    train_toxicity_head,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
HAS_SHARED = (SHARED_DATA / "davidson_hate_offensive" / "labeled_data.csv").is_file() and (
    SHARED_DATA / "toxigen" / "toxigen_seed_statements.csv"
).is_file()

INSULTS = ["you are a worthless idiot", "shut up, you pathetic loser", "nobody likes you, you stupid clown"]
BENIGN = [
    "thanks for the lovely dinner",
    "the meeting moved to Tuesday at noon",
    "I planted tomatoes in the garden",
]


@pytest.fixture(scope="module")
def embedder():
    from rai_harness.classifiers.embedding import MiniLMEmbedder

    return MiniLMEmbedder(device="cpu")


@pytest.fixture(scope="module")
def clf(embedder):
    return MiniLMToxicityClassifier(embedder=embedder)


# -- the shipped head ----------------------------------------------------------------------


def test_shipped_head_files():
    head = ToxicityHead.load(DEFAULT_HEAD_DIR)
    assert head.labels[0] == "toxic" and head.dim == 384
    assert np.isfinite(head.weight).all() and np.isfinite(head.bias).all()
    for name in ("metrics.json", "MODEL_CARD.md", "encoder.safetensors"):
        assert (DEFAULT_HEAD_DIR / name).is_file(), name
    # The shipped model fine-tunes the top layers (a few MB, float16), laid over the wheel's encoder.
    assert head.encoder is not None and head.meta["encoder_overlay"]["dtype"] == "float16"
    assert (DEFAULT_HEAD_DIR / "encoder.safetensors").stat().st_size < 16 * 2**20
    metrics = json.loads((DEFAULT_HEAD_DIR / "metrics.json").read_text())
    card = (DEFAULT_HEAD_DIR / "MODEL_CARD.md").read_text()
    # The card quotes metrics.json: the headline AUC appears in it verbatim.
    assert f"{metrics['test']['toxic']['overall']['roc_auc']:.3f}" in card
    assert metrics["aae"] is not None and metrics["aae"]["pairs"] >= 40


def test_ordinary_replies_pass_and_abuse_does_not(clf):
    # The examples: the v1 head blocked these ordinary answers at the default policy.
    from rai_harness.guardrails import load_policy

    policy = load_policy(Path(__file__).resolve().parents[1] / "guardrails" / "default.yaml")
    (rail,) = [r for r in policy.output if r.name == "toxic-output"]
    benign = ["I agree.", "I disagree.", "Women are great engineers.", "I'm gay and proud."]
    scores = [r["toxic"] for r in clf.predict(benign + INSULTS)]
    assert max(scores[: len(benign)]) < rail.threshold <= min(scores[len(benign) :])


def test_is_a_classifier(clf):
    assert isinstance(clf, Classifier)
    assert clf.name == "minilm-toxicity" and clf.labels[0] == "toxic"
    assert clf.produces_spans is False
    info = clf.info()
    assert info["aggregation"].startswith("max over windows") and info["embedder"]["dim"] == 384


def test_insult_scores_higher_than_benign(clf):
    results = clf.predict(INSULTS + BENIGN)
    toxic = [r["toxic"] for r in results]
    insults, benign = toxic[: len(INSULTS)], toxic[len(INSULTS) :]
    assert min(insults) > max(benign)
    assert min(insults) > 0.5 > max(benign)
    assert all(r.chunks == 1 and set(r.scores) == set(clf.labels) for r in results)


def test_batch_equals_single(clf):
    texts = [INSULTS[0], BENIGN[0], "a much longer benign sentence about the weather and the garden today"]
    batch = [r["toxic"] for r in clf.predict(texts)]
    single = [clf.predict([t])[0]["toxic"] for t in texts]
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_odd_inputs(clf):
    assert clf.predict([]) == []
    results = clf.predict(["", "   ", "😀🔥", "a\x00b", "مرحبا", "\ud800 lone surrogate"])
    assert all(0.0 <= r["toxic"] <= 1.0 and r.chunks == 1 for r in results)
    with pytest.raises(TypeError, match=r"texts\[0\]"):
        clf.predict([42])  # type: ignore[list-item]


@pytest.mark.slow
def test_long_text_chunking_catches_toxic_end(clf):
    # ~10k tokens of benign, varied text, then one insult at the very end.
    sentences = [
        f"On day {i} the committee reviewed item {i % 17} of the garden plan and agreed to water the beds at dawn."
        for i in range(480)
    ]
    benign_long = " ".join(sentences)
    n_tokens = len(clf.embedder.engine.tokenize([benign_long])[0])
    assert n_tokens >= 10_000
    toxic_long = benign_long + " Honestly, you are a worthless idiot and everyone hates you."
    benign_result, toxic_result = clf.predict([benign_long, toxic_long])
    assert toxic_result.chunks > 10
    assert toxic_result["toxic"] > 0.5 > benign_result["toxic"]


# -- preprocessing and the head file --------------------------------------------------------


def test_normalize_for_model():
    assert normalize_for_model("RT @some_user: hi &amp; bye https://t.co/xyz") == "hi & bye http"
    assert normalize_for_model("mail me at a@b.com") == "mail me at a@b.com"  # not a handle
    assert normalize_for_model("&#128514; lol") == "😂 lol"


def test_head_roundtrip_and_errors(tmp_path):
    head = ToxicityHead(("toxic",), np.ones((1, 4), np.float32), np.zeros(1, np.float32), {"seed": 3})
    head.save(tmp_path)
    loaded = ToxicityHead.load(tmp_path)
    assert loaded.labels == ("toxic",) and loaded.meta["seed"] == 3
    np.testing.assert_array_equal(loaded.weight, head.weight)
    p = loaded.probabilities(np.array([[0.5, 0.5, 0.5, 0.5], [-1, -1, -1, -1]], np.float32))
    assert p[0, 0] > 0.8 and p[1, 0] < 0.05
    with pytest.raises(ConfigError, match="no toxicity head"):
        ToxicityHead.load(tmp_path / "missing")
    meta = json.loads((tmp_path / "head.json").read_text())
    (tmp_path / "head.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ConfigError, match="format version"):
        ToxicityHead.load(tmp_path)
    with pytest.raises(ValueError):
        ToxicityHead(("toxic", "hate"), np.ones((1, 4), np.float32), np.zeros(1, np.float32))


def test_from_spec_through_the_registry(embedder, monkeypatch):
    from rai_harness.classifiers import pool, toxicity_head

    shared = pool.ClassifierPool()
    shared._instances[ClassifierSpec(backend="embedding", device="cpu").key()] = embedder
    monkeypatch.setattr(pool, "default_pool", lambda: shared)
    instance = pool.load(ClassifierSpec(backend="minilm-toxicity", device="cpu"))
    assert isinstance(instance, toxicity_head.MiniLMToxicityClassifier)
    assert instance.embedder is embedder  # MiniLM loaded once, shared with the embedding backend
    with pytest.raises(ConfigError, match="did you mean"):
        pool.load(ClassifierSpec(backend="minilm-toxicity", options={"max_token_per_batch": 1}))


# -- splitting ---------------------------------------------------------------------------------


def _examples(n: int, source: str = "davidson") -> list[Example]:
    return [Example(f"text number {i}", {"toxic": i % 3 != 0, "hate": 0}, source) for i in range(n)]


def test_split_ignores_row_order_and_is_stratified():
    rows = _examples(300)
    a = {r.text: r.split for r in assign_splits(rows, seed=0)}
    b = {r.text: r.split for r in assign_splits(list(reversed(rows)), seed=0)}
    assert a == b
    c = {r.text: r.split for r in assign_splits(rows, seed=1)}
    assert a != c
    for label in (0, 1):
        members = [r for r in assign_splits(rows, seed=0) if r.labels["toxic"] == label]
        share = sum(r.split == "test" for r in members) / len(members)
        assert abs(share - 0.2) < 0.02


# -- training on a tiny synthetic set --------------------------------------------------------------


def _write_tiny_data(root: Path) -> None:
    insults = ["idiot", "moron", "loser", "clown", "fool", "creep"]
    benign = ["garden", "recipe", "meeting", "bicycle", "library", "concert"]
    davidson = root / "davidson_hate_offensive"
    davidson.mkdir(parents=True)
    with (davidson / "labeled_data.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", "count", "hate_speech", "offensive_language", "neither", "class", "tweet"])
        row = 0
        for i in range(14):
            word = insults[i % len(insults)]
            cls = 0 if i % 4 == 0 else 1
            w.writerow(
                [
                    row,
                    3,
                    3 * (cls == 0),
                    3 * (cls == 1),
                    0,
                    cls,
                    f"RT @user{i}: shut up you stupid {word} #{i}",
                ]
            )
            row += 1
        for i in range(14):
            w.writerow(
                [row, 3, 0, 0, 3, 2, f"@friend{i} loved the {benign[i % len(benign)]} today, thanks! #{i}"]
            )
            row += 1
    toxigen = root / "toxigen"
    toxigen.mkdir()
    with (toxigen / "toxigen_seed_statements.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "target_group", "label", "source_file"])
        for i in range(12):
            group = ("zorbians", "quellites")[i % 2]
            w.writerow(
                [f"{group} are all lazy and should not live near us, number {i}", group, "hate", "synthetic"]
            )
            w.writerow(
                [
                    f"{group} hold a spring festival with music and food, number {i}",
                    group,
                    "neutral",
                    "synthetic",
                ]
            )


def _write_tiny_pairs(path: Path) -> Path:
    pairs = [
        {"id": "p1", "sae": "She is usually at work late.", "aae": "She be at work late."},
        {"id": "p2", "sae": "He is at the store.", "aae": "He at the store."},
        {"id": "p3", "sae": "We are about to leave.", "aae": "We finna leave."},
    ]
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return path


def test_training_is_deterministic(tmp_path, embedder):
    # Timing goals live in benchmarks/, not in tests (~4 s a run on an idle 2-core machine).
    _write_tiny_data(tmp_path / "data")
    pairs = _write_tiny_pairs(tmp_path / "pairs.jsonl")
    outputs = []
    for run in ("a", "b"):
        report = train_toxicity_head(
            tmp_path / "data",
            tmp_path / run,
            seed=7,
            embedder=embedder,
            aae_pairs=pairs,
            c_grid=(0.3, 3.0),
            sources="davidson+toxigen",
        )
        outputs.append(report)
    a, b = ((tmp_path / run / "head.safetensors").read_bytes() for run in ("a", "b"))
    # Byte-identical files: same tensors and a header that does not depend on hash-map order.
    assert a == b
    assert (tmp_path / "a" / "head.json").read_text() == (tmp_path / "b" / "head.json").read_text()
    report = outputs[0]
    assert isinstance(report, TrainReport)
    assert report.data["split_sizes"]["davidson"]["train"]["n"] > 0
    assert report.test["toxic"]["overall"]["roc_auc"] is not None
    assert report.aae is not None and report.aae["pairs"] == 3
    head = ToxicityHead.load(tmp_path / "a")
    assert head.labels == ("toxic", "hate") and head.meta["seed"] == 7
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["seed"] == 7 and "toxigen_groups" in metrics
    card = (tmp_path / "a" / "MODEL_CARD.md").read_text()
    assert "## Known biases" in card and "zorbians" in card
    # The tiny head already separates its own insults from its benign tweets (torch: throwaway
    # weights need no ONNX graph).
    clf = MiniLMToxicityClassifier(tmp_path / "a", embedder=embedder, runtime="torch")
    toxic, nice = clf.predict(["shut up you stupid idiot", "loved the garden today, thanks!"])
    assert toxic["toxic"] > nice["toxic"]


def test_training_with_fine_tuned_layers(tmp_path, embedder):
    # The shipped recipe on tiny data: top layer fine-tuned, head refitted and calibrated, the
    # layers saved beside the head and laid over the shared encoder when it is loaded.
    from rai_harness.classifiers.toxicity_encoder import ENCODER_FILE
    from rai_harness.training.finetune import FineTuneConfig

    _write_tiny_data(tmp_path / "data")
    report = train_toxicity_head(
        tmp_path / "data",
        tmp_path / "ft",
        seed=3,
        embedder=embedder,
        aae_pairs=_write_tiny_pairs(tmp_path / "pairs.jsonl"),
        c_grid=(1.0,),
        sources="davidson+toxigen",
        finetune=FineTuneConfig(layers=1, epochs=1, batch_size=8),
    )
    assert report.finetune["fine_tuned_layers"] == [5] and len(report.finetune["history"]) == 1
    assert (tmp_path / "ft" / ENCODER_FILE).is_file()
    head = ToxicityHead.load(tmp_path / "ft")
    assert head.encoder is not None and head.meta["encoder_overlay"]["layers"] == [5]
    card = (tmp_path / "ft" / "MODEL_CARD.md").read_text()
    assert "### Fine-tuning the encoder" in card and "--finetune-layers 1" in card
    clf = MiniLMToxicityClassifier(tmp_path / "ft", embedder=embedder, runtime="torch")
    assert clf.encoder_model is not embedder.model
    assert clf.encoder_model.encoder.layer[0] is embedder.model.encoder.layer[0]
    toxic, nice = clf.predict(["shut up you stupid idiot", "loved the garden today, thanks!"])
    assert toxic["toxic"] > nice["toxic"]
    # --evaluate re-scores the saved model through its fine-tuned layers: the same held-out numbers.
    from rai_harness.training.pipeline import evaluate_toxicity_head

    again = evaluate_toxicity_head(tmp_path / "data", tmp_path / "ft", embedder=embedder, write=False)
    # (carried over from metrics.json, which rounds floats)
    assert again.finetune["fine_tuned_layers"] == [5] and again.finetune["chosen_epoch"] == 1
    assert again.test["toxic"]["overall"]["roc_auc"] == pytest.approx(
        report.test["toxic"]["overall"]["roc_auc"], abs=1e-3
    )


def test_measure_baseline_scores_the_previous_head_on_this_split(tmp_path, embedder):
    from rai_harness.training.pipeline import measure_baseline

    _write_tiny_data(tmp_path / "data")
    for run, seed in (("old", 1), ("new", 2)):
        train_toxicity_head(
            tmp_path / "data",
            tmp_path / run,
            seed=seed,
            embedder=embedder,
            aae_pairs=_write_tiny_pairs(tmp_path / "pairs.jsonl"),
            c_grid=(1.0,),
            sources="davidson+toxigen",
        )
    baseline = measure_baseline(
        tmp_path / "old",
        tmp_path / "new",
        tmp_path / "data",
        threshold=0.5,
        description="The old head.",
        embedder=embedder,
    )
    n_test = sum(
        v["test"]["n"]
        for v in json.loads((tmp_path / "new" / "metrics.json").read_text())["data"]["split_sizes"].values()
    )
    assert (
        sum(c.get("fpr", c.get("recall", {})).get("n", 0) for c in baseline["test_by_kind"].values())
        <= n_test
    )
    assert baseline["threshold"] == 0.5 and "audit_by_kind" in baseline and "aae" in baseline
    assert json.loads((tmp_path / "new" / "baseline.json").read_text()) == baseline
    assert json.loads((tmp_path / "new" / "metrics.json").read_text())["baseline"] == baseline
    # The head a retraining replaces is kept beside the v1 baseline, and both reach the card.
    previous = measure_baseline(
        tmp_path / "old",
        tmp_path / "new",
        tmp_path / "data",
        threshold=0.6,
        description="The replaced head.",
        embedder=embedder,
        role="previous",
    )
    metrics = json.loads((tmp_path / "new" / "metrics.json").read_text())
    assert metrics["previous"] == previous and metrics["baseline"] == baseline
    assert json.loads((tmp_path / "new" / "previous.json").read_text())["threshold"] == 0.6
    # (the tiny run has no assistant registers, hence no policy threshold: give it one to render)
    from rai_harness.training.card import render_model_card

    chosen = {"default/toxic-output": {"threshold": 0.5, "target_validation_fpr": 0.01}}
    card = render_model_card({**metrics, "policy_thresholds": chosen})
    assert "The replaced head." in card and "The old head." in card
    assert "| set | kind | rate | v1 head | head replaced | this head |" in card
    with pytest.raises(ConfigError, match="role"):
        measure_baseline(
            tmp_path / "old", tmp_path / "new", tmp_path / "data", threshold=0.5, description="x", role="v0"
        )


def test_training_rejects_bad_labels(tmp_path):
    with pytest.raises(ConfigError, match="labels"):
        train_toxicity_head(tmp_path, tmp_path / "out", labels=("hate",))
    with pytest.raises(ConfigError, match="not found"):
        train_toxicity_head(tmp_path / "nowhere", tmp_path / "out")


def test_evaluate_aae_pairs_statistics(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"sae": f"s{i}", "aae": f"a{i}"}) + "\n" for i in range(20)))

    def score(texts):
        # AAE side always 0.3 higher: a clearly significant gap.
        return np.array([0.1 + (0.3 if t.startswith("a") else 0.0) + int(t[1:]) / 1000 for t in texts])

    r = evaluate_aae_pairs(score, pairs, threshold=0.25)
    assert r["pairs"] == 20 and r["mean_difference_aae_minus_sae"] == pytest.approx(0.3)
    assert r["wilcoxon_p"] < 0.001 and r["aae_higher_in_pairs"] == 20
    assert (
        r["at_0.5"]["fpr_aae"] == 0.0
        and r["at_threshold"]["fpr_aae"] == 1.0
        and r["at_threshold"]["fpr_sae"] == 0.0
    )
    assert r["at_threshold"]["mcnemar_exact_p"] < 0.001


def test_aae_pairs_dataset():
    path = REPO / "datasets" / "aae_pairs" / "pairs.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert 40 <= len(rows) <= 60
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["sae"] and r["aae"] and r["sae"] != r["aae"] and r["features"]
    assert (path.parent / "CARD.md").is_file()


def test_cli_train_app(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rai_harness.cli_train import train_app
    from rai_harness.training import pipeline as train

    seen = {}

    def fake_train(data_dir, out, **kwargs):
        seen.update(data_dir=data_dir, out=out, **kwargs)
        return TrainReport(out_dir=str(out), seed=kwargs["seed"])

    monkeypatch.setattr(train, "train_toxicity_head", fake_train)
    result = CliRunner().invoke(
        train_app,
        [
            "toxicity-head",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--seed",
            "3",
            "--no-cache",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["seed"] == 3 and seen["cache_dir"] is None and Path(seen["out"]) == tmp_path / "o"

    def failing_train(data_dir, out, **kwargs):
        raise ConfigError("training data file not found: x", key_path="data_dir")

    monkeypatch.setattr(train, "train_toxicity_head", failing_train)
    bad = CliRunner().invoke(
        train_app, ["toxicity-head", "--data-dir", str(tmp_path / "nowhere"), "--no-cache"]
    )
    assert bad.exit_code == 2 and "not found" in bad.output


# -- the real data ------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_SHARED, reason="../shared/data (Davidson, ToxiGen) not present")
def test_real_data_split_has_no_leaks():
    rows, summary = load_examples(SHARED_DATA, seed=0)
    keys: dict[str, str] = {}
    for r in rows:
        key = " ".join(r.text.casefold().split())
        assert keys.setdefault(key, r.split) == r.split
    sizes = summary["split_sizes"]
    # Davidson is capped (DAVIDSON_CAP) when every source is loaded.
    assert sizes["davidson"]["train"]["n"] > 5_000 and sizes["toxigen"]["test"]["n"] > 100
    assert {"decodingtrust", "holistic_bias", "assistant_registers"} <= set(sizes)
    # Keyed rows (templates, QA items, documents) never straddle two splits.
    splits_of_key: dict[str, set[str]] = {}
    for r in rows:
        if r.key:
            splits_of_key.setdefault(r.key, set()).add(r.split)
    assert splits_of_key and all(len(s) == 1 for s in splits_of_key.values())
    # Stratified: the toxic share is about the same in every split.
    shares = [
        sizes["davidson"][s]["toxic"] / sizes["davidson"][s]["n"] for s in ("train", "validation", "test")
    ]
    assert max(shares) - min(shares) < 0.01


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SHARED, reason="../shared/data (Davidson, ToxiGen) not present")
def test_shipped_head_metrics_hold_on_a_sample(clf):
    rows, _ = load_examples(SHARED_DATA, seed=int(clf.head.meta.get("seed", 0)))
    test = [r for r in rows if r.split == "test"][::10]
    scores = np.array([r["toxic"] for r in clf.predict([r.text for r in test])])
    y = np.array([r.labels["toxic"] for r in test])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, scores) > 0.8
