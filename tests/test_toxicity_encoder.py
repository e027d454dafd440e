"""Fine-tuned top layers of MiniLM: the overlay, its checks, and the cached-layer training path.

Texts are mild and written for these tests; synthetic groups are fictional ("Zorbians").
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rai_harness.classifiers.toxicity_encoder import (
    ENCODER_FILE,
    build_overlay_model,
    top_layers_forward,
)
from rai_harness.classifiers.toxicity_head import MiniLMToxicityClassifier, ToxicityHead
from rai_harness.errors import ConfigError

torch = pytest.importorskip("torch")

TEXTS = ["thanks, that helps a lot", "you are a worthless idiot", "", "the train leaves at noon 🚆"]


@pytest.fixture(scope="module")
def embedder():
    from rai_harness.classifiers.embedding import MiniLMEmbedder

    return MiniLMEmbedder(device="cpu")


def _perturbed_top(embedder, layers=(5,), scale=0.05, seed=0):
    """A fake fine-tuning: the chosen layers' weights plus seeded noise."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in embedder.model.state_dict().items():
        if any(name.startswith(f"encoder.layer.{i}.") for i in layers):
            noise = torch.randn(value.shape, generator=gen) * scale if value.is_floating_point() else 0
            state[name] = (value.float() + noise).numpy()
    return state


def _head(embedder, encoder=None):
    rng = np.random.default_rng(0)
    meta = {"embedding_weights_sha256": embedder.info()["weights_sha256"], "seed": 0}
    return ToxicityHead(
        ("toxic",),
        rng.normal(size=(1, embedder.dim)).astype(np.float32),
        np.zeros(1, np.float32),
        meta,
        encoder=encoder,
    )


def test_top_layers_path_equals_the_full_model(embedder):
    # Training runs the fine-tuned layers on cached lower-layer states; that must be the model.
    model = embedder.model
    enc = embedder.tokenizer(
        ["a short one", "a somewhat longer sentence with more tokens in it"], padding=True
    )
    ids = torch.tensor(enc["input_ids"])
    mask = torch.tensor(enc["attention_mask"])
    with torch.inference_mode():
        full = model(input_ids=ids, attention_mask=mask).last_hidden_state
        lower = top_layers_forward(model.encoder.layer[:4], model.embeddings(input_ids=ids), mask)
        top = top_layers_forward(model.encoder.layer[4:], lower, mask)
    real = mask.bool()
    assert torch.allclose(full[real], top[real], atol=1e-4)


def test_overlay_shares_lower_layers_and_leaves_the_base_alone(embedder):
    base_before = {k: v.clone() for k, v in embedder.model.state_dict().items()}
    state = _perturbed_top(embedder)
    model = build_overlay_model(embedder.model, state)
    assert model.embeddings is embedder.model.embeddings
    assert all(model.encoder.layer[i] is embedder.model.encoder.layer[i] for i in range(5))
    assert model.encoder.layer[5] is not embedder.model.encoder.layer[5]
    name = next(iter(state))
    np.testing.assert_allclose(model.state_dict()[name].numpy(), state[name], rtol=0, atol=0)
    for k, v in embedder.model.state_dict().items():
        assert torch.equal(v, base_before[k]), k
    with pytest.raises(ConfigError, match="top layers"):
        build_overlay_model(embedder.model, _perturbed_top(embedder, layers=(3,)))
    bad = dict(state)
    bad[name] = np.zeros((2, 2), np.float32)
    with pytest.raises(ConfigError, match="shape"):
        build_overlay_model(embedder.model, bad)


def test_head_with_overlay_roundtrip_and_checks(tmp_path, embedder):
    head = _head(embedder, _perturbed_top(embedder))
    head.save(tmp_path)
    meta = json.loads((tmp_path / "head.json").read_text())
    assert meta["format_version"] == 2 and meta["encoder_overlay"]["layers"] == [5]
    assert meta["encoder_overlay"]["dtype"] == "float16"
    loaded = ToxicityHead.load(tmp_path)
    assert loaded.encoder is not None and set(loaded.encoder) == set(head.encoder)
    name = next(iter(head.encoder))
    # Shipped in float16: equal to the fp16 rounding of the trained weights.
    np.testing.assert_array_equal(
        loaded.encoder[name], head.encoder[name].astype(np.float16).astype(np.float32)
    )

    # Throwaway weights: torch, so no ONNX graph is exported for them (tests/test_onnx_encoder.py
    # covers that path).
    clf = MiniLMToxicityClassifier(tmp_path, embedder=embedder, runtime="torch")
    plain = MiniLMToxicityClassifier(_head(embedder), embedder=embedder, runtime="torch")
    tuned_scores = [s["toxic"] for s in clf.predict(TEXTS)]
    plain_scores = [s["toxic"] for s in plain.predict(TEXTS)]
    assert tuned_scores != plain_scores  # the overlay is really used
    assert [s["toxic"] for s in clf.predict(TEXTS[1:2])] == pytest.approx(tuned_scores[1:2], abs=1e-6)
    assert clf.info()["fine_tuned_layers"] == [5]
    # Whole-text features for the head agree with the scores predict gives.
    p = loaded.probabilities(clf.embed_for_head(TEXTS))[:, 0]
    np.testing.assert_allclose(p, tuned_scores, atol=1e-5)

    # A tampered or missing overlay, or one on a version-1 head, is refused.
    (tmp_path / ENCODER_FILE).write_bytes((tmp_path / ENCODER_FILE).read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ConfigError, match="not the file the head was saved with"):
        ToxicityHead.load(tmp_path)
    (tmp_path / ENCODER_FILE).unlink()
    with pytest.raises(ConfigError, match="missing"):
        ToxicityHead.load(tmp_path)
    (tmp_path / "head.json").write_text(json.dumps({**meta, "format_version": 1}))
    with pytest.raises(ConfigError, match="format version"):
        ToxicityHead.load(tmp_path)


def test_overlay_refuses_another_encoder(embedder):
    head = _head(embedder, _perturbed_top(embedder))
    other = ToxicityHead(
        head.labels,
        head.weight,
        head.bias,
        {**head.meta, "embedding_weights_sha256": "0" * 64},
        encoder=head.encoder,
    )
    with pytest.raises(ConfigError, match="fine-tuned layers were trained on the encoder"):
        MiniLMToxicityClassifier(other, embedder=embedder)


def test_saving_a_linear_head_removes_a_stale_overlay(tmp_path, embedder):
    _head(embedder, _perturbed_top(embedder)).save(tmp_path)
    _head(embedder).save(tmp_path)
    assert not (tmp_path / ENCODER_FILE).exists()
    assert ToxicityHead.load(tmp_path).encoder is None
    assert json.loads((tmp_path / "head.json").read_text())["format_version"] == 1


def test_finetune_is_deterministic_and_learns(embedder):
    from rai_harness.training.finetune import FineTuneConfig, finetune_top_layers

    toxic = ["you stupid idiot", "shut up, loser", "Zorbians are vermin", "I will hurt you, moron"] * 3
    benign = ["thanks, that helps", "the meeting is at noon", "Zorbians are my neighbours", "I agree."] * 3
    texts = [f"{t} {i}" for i, t in enumerate(toxic + benign)]
    labels = np.array([[1, int("Zorbians" in t)] for t in toxic] + [[0, 0] for _ in benign])
    splits = ["train" if i % 4 else "validation" for i in range(len(texts))]
    sources = ["tiny"] * len(texts)
    reference = np.array([s == "validation" and y == 0 for s, y in zip(splits, labels[:, 0], strict=True)])
    config = FineTuneConfig(layers=1, epochs=3, batch_size=4, lr=3e-4, head_lr=3e-2)
    runs = [
        finetune_top_layers(embedder, texts, labels, splits, sources, reference, seed=1, config=config)
        for _ in range(2)
    ]
    a, b = runs
    assert a.report["fine_tuned_layers"] == [5] and a.report["chosen_epoch"] in (1, 2, 3)
    assert set(a.state) == set(b.state)
    for k in a.state:
        np.testing.assert_array_equal(a.state[k], b.state[k])
    np.testing.assert_array_equal(a.features, b.features)
    assert a.features.shape == (len(texts), embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(a.features, axis=1), 1.0, atol=1e-5)
    # Shipped dtype: the returned layers are already float16-representable.
    k = next(iter(a.state))
    np.testing.assert_array_equal(a.state[k], a.state[k].astype(np.float16).astype(np.float32))
    losses = [h["train_loss"] for h in a.report["history"]]
    assert losses[-1] < losses[0]
    # The base encoder is untouched and torch's global settings are restored.
    assert not torch.are_deterministic_algorithms_enabled()
