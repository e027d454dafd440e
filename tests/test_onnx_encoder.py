"""The ONNX Runtime path of ``minilm-toxicity``: same scores as torch, cached, refused when wrong.

Texts are mild and written for these tests. The tests that run ONNX Runtime skip without
``onnxruntime``; the runtime choice itself (``auto``/``torch``/``onnx``) is tested either way.
"""

from __future__ import annotations

import json
import os

import pytest

from rai_harness.classifiers import onnx_encoder
from rai_harness.classifiers.base import ClassifierSpec
from rai_harness.classifiers.toxicity_head import DEFAULT_HEAD_DIR, MiniLMToxicityClassifier, from_spec
from rai_harness.errors import ConfigError, MissingDependencyError

torch = pytest.importorskip("torch")

needs_ort = pytest.mark.skipif(not onnx_encoder.ort_available(), reason="onnxruntime is not installed")

TEXTS = [
    "I agree.",
    "you are a worthless idiot",
    "",
    "the train leaves at noon 🚆",
    "Thanks, that helps a lot! Could you also show me how to sort the list in reverse order?",
    "maria\u200b@example.org \ud800 زمان 東京",
    # Longer than one window: scored as windows and sentences, many batches of mixed lengths.
    " ".join(f"Sentence {i} of a calm and ordinary report about the weather." for i in range(60))
    + " You are a stupid idiot.",
]


@pytest.fixture(scope="module")
def embedder():
    from rai_harness.classifiers.embedding import MiniLMEmbedder

    return MiniLMEmbedder(device="cpu")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def pair(embedder, cache):
    """The shipped head on ONNX Runtime and on torch, sharing one embedder."""
    if not onnx_encoder.ort_available():
        pytest.skip("onnxruntime is not installed")
    on_ort = MiniLMToxicityClassifier(embedder=embedder, runtime="onnx", onnx_cache_dir=cache)
    on_torch = MiniLMToxicityClassifier(embedder=embedder, runtime="torch")
    return on_ort, on_torch


@needs_ort
def test_onnx_and_torch_give_the_same_scores_and_verdicts(pair):
    on_ort, on_torch = pair
    assert on_ort.ort_encoder is not None and on_torch.ort_encoder is None
    assert on_ort.info()["runtime"]["runtime"] == "onnxruntime"
    assert on_torch.info()["runtime"] == {"runtime": "torch"}
    got, want = on_ort.predict(TEXTS), on_torch.predict(TEXTS)
    assert [g.chunks for g in got] == [w.chunks for w in want]
    assert got[-1].chunks > 1  # the long text really went through windows and sentences
    for g, w in zip(got, want, strict=True):
        for label in on_ort.labels:
            assert g.scores[label] == pytest.approx(w.scores[label], abs=1e-5)
    # Verdicts at the shipped thresholds (the policies use the card's: test_toxicity_training) are the same.
    chosen = json.loads((DEFAULT_HEAD_DIR / "metrics.json").read_text(encoding="utf-8"))["policy_thresholds"]
    for t in sorted({v["threshold"] for v in chosen.values()}):
        assert [g.scores["toxic"] >= t for g in got] == [w.scores["toxic"] >= t for w in want]
    # One text alone and inside a batch: the same score (padding is masked on ORT too).
    alone = on_ort.predict(TEXTS[4:5])[0].scores["toxic"]
    assert alone == pytest.approx(got[4].scores["toxic"], abs=1e-5)


@needs_ort
def test_graph_is_cached_per_weights(embedder, cache, pair, monkeypatch):
    on_ort, _ = pair
    graphs = sorted(cache.glob("encoder-*.onnx"))
    assert len(graphs) == 1 and on_ort.info()["runtime"]["graph"] == str(graphs[0])

    def no_export(*args, **kwargs):
        raise AssertionError("the cached graph should have been used")

    monkeypatch.setattr(onnx_encoder, "export_encoder", no_export)
    again = MiniLMToxicityClassifier(embedder=embedder, runtime="onnx", onnx_cache_dir=cache)
    assert again.ort_encoder is not None and again.info()["runtime"]["graph"] == str(graphs[0])
    # Other weights, other key: a retrained head never runs a stale graph.
    before = onnx_encoder.encoder_fingerprint(on_ort.encoder_model, "mean")
    with torch.no_grad():
        bias = on_ort.encoder_model.encoder.layer[5].output.dense.bias
        saved = bias.clone()
        bias.add_(1e-3)
        try:
            assert onnx_encoder.encoder_fingerprint(on_ort.encoder_model, "mean") != before
        finally:
            bias.copy_(saved)
    assert onnx_encoder.encoder_fingerprint(on_ort.encoder_model, "mean") == before
    assert onnx_encoder.encoder_fingerprint(on_ort.encoder_model, "cls") != before


@needs_ort
def test_unwritable_cache_keeps_the_graph_in_memory(embedder, pair, tmp_path):
    _, on_torch = pair
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    clf = MiniLMToxicityClassifier(embedder=embedder, runtime="onnx", onnx_cache_dir=blocker / "onnx")
    assert clf.info()["runtime"]["graph"] == "memory"
    assert clf.predict(TEXTS[:2])[1].scores["toxic"] == pytest.approx(
        on_torch.predict(TEXTS[:2])[1].scores["toxic"], abs=1e-5
    )


@needs_ort
def test_a_graph_that_does_not_reproduce_the_model_is_refused(embedder, pair, monkeypatch, caplog):
    on_ort, _ = pair
    # Export the graph of *other* weights (the layer-5 output bias changed) and offer it as this model's.
    with torch.no_grad():
        bias = on_ort.encoder_model.encoder.layer[5].output.dense.bias
        saved = bias.clone()
        # Not a constant: the layer norm after this bias would cancel a constant shift.
        bias.add_(torch.linspace(-0.5, 0.5, bias.numel()))
        try:
            wrong = onnx_encoder.export_encoder(on_ort.encoder_model, "mean", embedder.tokenizer)
        finally:
            bias.copy_(saved)
    monkeypatch.setattr(onnx_encoder, "_cached_graph", lambda *args: wrong)
    with pytest.raises(ConfigError, match="differs from the torch encoder"):
        MiniLMToxicityClassifier(embedder=embedder, runtime="onnx")
    auto = MiniLMToxicityClassifier(embedder=embedder, runtime="auto")
    assert auto.ort_encoder is None and auto.info()["runtime"] == {"runtime": "torch"}
    assert "using torch" in caplog.text


def test_old_graphs_are_pruned(tmp_path):
    keep = tmp_path / "encoder-new.onnx"
    keep.write_bytes(b"x")
    olds = [tmp_path / f"encoder-old{i}.onnx" for i in range(onnx_encoder.KEEP_GRAPHS + 2)]
    for i, old in enumerate(olds):
        old.write_bytes(b"x")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))  # a higher i: used more recently
    onnx_encoder._prune(tmp_path, keep=keep)
    survivors = [p.name for p in olds[-(onnx_encoder.KEEP_GRAPHS - 1) :]]
    assert sorted(p.name for p in tmp_path.glob("encoder-*.onnx")) == sorted(["encoder-new.onnx", *survivors])


def test_runtime_choice(embedder, monkeypatch):
    with pytest.raises(ConfigError, match="runtime must be one of"):
        MiniLMToxicityClassifier(embedder=embedder, runtime="tensorrt")
    # Without onnxruntime: auto quietly stays on torch, onnx says how to install it.
    monkeypatch.setattr(onnx_encoder, "ort_available", lambda: False)
    assert MiniLMToxicityClassifier(embedder=embedder).ort_encoder is None
    with pytest.raises(MissingDependencyError, match=r"rai-harness\[onnx\]"):
        MiniLMToxicityClassifier(embedder=embedder, runtime="onnx")
    with pytest.raises(MissingDependencyError, match=r"rai-harness\[onnx\]"):
        MiniLMToxicityClassifier(embedder=embedder, runtime="onnx-int8")
    with pytest.raises(ValueError, match="precision must be one of"):
        onnx_encoder.build_ort_encoder(None, "mean", None, precision="int4")  # type: ignore[arg-type]


def test_runtime_options_reach_the_classifier(monkeypatch):
    seen = {}

    class Recorder:
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr("rai_harness.classifiers.toxicity_head.MiniLMToxicityClassifier", Recorder)
    from_spec(ClassifierSpec(backend="minilm-toxicity", options={"runtime": "torch", "onnx_threads": 1}))
    assert seen["runtime"] == "torch" and seen["onnx_threads"] == 1
    with pytest.raises(ConfigError, match="unknown option"):
        from_spec(ClassifierSpec(backend="minilm-toxicity", options={"runtimes": "torch"}))


# -- int8 ------------------------------------------------------------------------------


def _matmul_graph(weight, *, second_weight=None):
    """A tiny ONNX graph: ``y = x @ weight`` (``x``: ``(batch, rows, K)``), optionally a second product."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    k, n = weight.shape
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    inits = [numpy_helper.from_array(weight.astype(np.float32), "w")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "r", n])]
    if second_weight is not None:
        nodes.append(helper.make_node("MatMul", ["x", "w2"], ["z"]))
        inits.append(numpy_helper.from_array(second_weight.astype(np.float32), "w2"))
        outputs.append(
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", "r", second_weight.shape[1]])
        )
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "r", k])], outputs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


@needs_ort
def test_rowwise_int8_matches_a_numpy_reference_and_rows_are_independent():
    import numpy as np
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(16, 8)).astype(np.float32)
    weight[:, 3] *= 50  # one column of large weights: per-column scales keep the others precise
    second = rng.normal(size=(16, 4)).astype(np.float32)
    session = ort.InferenceSession(
        onnx_encoder.quantize_rowwise_int8(_matmul_graph(weight, second_weight=second)),
        providers=["CPUExecutionProvider"],
    )
    x = rng.normal(size=(2, 3, 16)).astype(np.float32)
    x[1, 2] *= 1000  # one huge row: with one scale per tensor it would crush every other row
    y, z = session.run(None, {"x": x})
    assert y.shape == (2, 3, 8) and z.shape == (2, 3, 4)

    def reference(rows, w):
        w_scale = np.abs(w).max(axis=0) / 127
        w_q = np.clip(np.rint(w / w_scale), -127, 127)
        x_scale = np.abs(rows).max(axis=-1, keepdims=True) / 127
        x_q = np.clip(np.rint(rows / x_scale), -127, 127)
        return (x_q @ w_q) * x_scale * w_scale

    np.testing.assert_allclose(y, reference(x, weight), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(z, reference(x, second), rtol=1e-4, atol=1e-4)
    # Close to fp32 (int8 noise only), the huge row included.
    assert np.abs(y - x @ weight).max() <= 0.02 * np.abs(x @ weight).max()
    # Each row alone gives exactly what it gives inside the batch.
    alone = np.concatenate(
        [session.run(["y"], {"x": x[i : i + 1, j : j + 1]})[0] for i in range(2) for j in range(3)]
    )
    np.testing.assert_allclose(alone.reshape(y.shape), y, rtol=0, atol=1e-6)


def test_rowwise_int8_needs_a_weight_product():
    pytest.importorskip("onnx")
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "x2"], ["y"])],  # two activations: nothing to quantise
        "no-weights",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2]),
            helper.make_tensor_value_info("x2", TensorProto.FLOAT, [2, 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
    )
    with pytest.raises(ValueError, match="nothing to quantise"):
        onnx_encoder.quantize_rowwise_int8(onnx.helper.make_model(graph).SerializeToString())
    assert np is not None


@needs_ort
def test_onnx_int8_runtime_scores_close_to_torch_and_independent_of_batching(embedder, cache, pair):
    _, on_torch = pair
    clf = MiniLMToxicityClassifier(embedder=embedder, runtime="onnx-int8", onnx_cache_dir=cache)
    info = clf.info()["runtime"]
    assert info["precision"] == "int8" and "-int8-" in info["graph"]
    assert len(list(cache.glob("encoder-*-int8-*.onnx"))) == 1  # cached beside the fp32 graph
    got, want = clf.predict(TEXTS), on_torch.predict(TEXTS)
    assert [g.chunks for g in got] == [w.chunks for w in want]
    # int8 noise, not another model: a broken rewrite moves scores by far more.
    for g, w in zip(got, want, strict=True):
        for label in clf.labels:
            assert g.scores[label] == pytest.approx(w.scores[label], abs=0.1)
    # The property per-tensor dynamic quantisation lacks: a text scores the same alone and batched.
    for i, text in enumerate(TEXTS):
        alone = clf.predict([text])[0]
        for label in clf.labels:
            assert alone.scores[label] == pytest.approx(got[i].scores[label], abs=1e-5)


@needs_ort
def test_a_batch_dependent_int8_graph_is_refused(embedder, tmp_path, monkeypatch, caplog):
    """Per-tensor dynamic quantisation (one activation scale per batch) must not pass the load check."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def per_tensor(graph: bytes) -> bytes:
        src, dst = tmp_path / "fp32.onnx", tmp_path / "dynamic.onnx"
        src.write_bytes(graph)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        return dst.read_bytes()

    monkeypatch.setattr(onnx_encoder, "quantize_rowwise_int8", per_tensor)
    with pytest.raises(ConfigError, match="alone and in a padded batch"):
        MiniLMToxicityClassifier(embedder=embedder, runtime="onnx-int8", onnx_cache_dir=tmp_path / "cache")
