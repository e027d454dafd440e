"""Backends (hf, detoxify, embedding, keyword) and the classifier pool."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.tiny_classifiers import build_tiny_bert_classifier, build_tiny_detoxify_checkpoint
from rai_harness.classifiers import pool as pool_module
from rai_harness.classifiers.base import Classifier, ClassifierSpec, Embedder, LabelScores
from rai_harness.classifiers.hf import HFClassifier, model_window, weights_fingerprint
from rai_harness.classifiers.keyword import KeywordClassifier
from rai_harness.classifiers.pool import (
    ClassifierPool,
    check_options,
    default_pool,
    load,
    register_backend,
    validate_spec,
)
from rai_harness.errors import ConfigError, MissingDependencyError

SHORT_TEXTS = ["hello world", "you are an idiot", "thank you for your help", "", "the lazy dog"]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and lose a lot on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-classifiers")
    return {
        "multi": build_tiny_bert_classifier(root / "multi", multi_label=True),
        "single": build_tiny_bert_classifier(
            root / "single", labels=("neg", "neu", "pos"), multi_label=False
        ),
        "detoxify": build_tiny_detoxify_checkpoint(root / "detoxify"),
    }


def reference_logits(folder: Path, texts: list[str]) -> torch.Tensor:
    """Logits straight from transformers, one text at a time (no padding, no engine)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        return torch.cat([model(**tok(t, return_tensors="pt")).logits for t in texts])


# -- hf ----------------------------------------------------------------------------------


def test_hf_multi_label_uses_sigmoid(models):
    clf = HFClassifier(str(models["multi"]), device="cpu")
    assert isinstance(clf, Classifier)
    assert clf.labels == ("toxicity", "insult", "threat") and clf.multi_label
    expected = reference_logits(models["multi"], SHORT_TEXTS).sigmoid().numpy()
    got = np.array([[r[label] for label in clf.labels] for r in clf.predict(SHORT_TEXTS)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got.sum(axis=1), 1.0)


def test_hf_single_label_uses_softmax(models):
    clf = HFClassifier(str(models["single"]), device="cpu")
    assert clf.labels == ("neg", "neu", "pos") and not clf.multi_label
    expected = reference_logits(models["single"], SHORT_TEXTS).softmax(-1).numpy()
    results = clf.predict(SHORT_TEXTS)
    got = np.array([[r[label] for label in clf.labels] for r in results])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert results[1].top[0] in clf.labels


def test_hf_multi_label_option_overrides_the_config(models):
    clf = HFClassifier(str(models["single"]), device="cpu", multi_label=True)
    expected = reference_logits(models["single"], SHORT_TEXTS[:2]).sigmoid().numpy()
    got = np.array([[r[label] for label in clf.labels] for r in clf.predict(SHORT_TEXTS[:2])])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_hf_info_identifies_the_model(models):
    clf = HFClassifier(str(models["multi"]), device="cpu")
    info = clf.info()
    assert info["backend"] == "hf" and info["model"] == str(models["multi"])
    assert (
        info["weights_sha256"] == weights_fingerprint(models["multi"]) and len(info["weights_sha256"]) == 64
    )
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["activation"] == "sigmoid" and info["max_length"] == 128
    assert {"torch", "transformers"} <= set(info["versions"])


def test_hf_from_spec_through_the_pool(models):
    pool = ClassifierPool()
    spec = ClassifierSpec(
        backend="hf", model=str(models["multi"]), device="cpu", options={"max_tokens_per_batch": 2048}
    )
    clf = pool.classifier(spec)
    assert isinstance(clf, HFClassifier) and clf.engine.max_tokens_per_batch == 2048
    with pytest.raises(ConfigError, match="did you mean 'max_batch_size'"):
        load(ClassifierSpec(backend="hf", model=str(models["multi"]), options={"max_batch_sise": 8}))
    with pytest.raises(ConfigError, match="needs `model`"):
        load(ClassifierSpec(backend="hf"))


def test_model_window_handles_roberta_offsets_and_unknown_lengths():
    class Cfg:
        def __init__(self, model_type, positions, pad=1):
            self.model_type, self.max_position_embeddings, self.pad_token_id = model_type, positions, pad

    class Tok:
        model_max_length = int(1e30)

    assert model_window(Cfg("roberta", 514), Tok()) == 512
    assert model_window(Cfg("bert", 512), Tok()) == 512
    assert model_window(None, Tok()) == 512


# -- detoxify ----------------------------------------------------------------------------


def test_detoxify_matches_detoxify_predict_offline(models):
    from detoxify import Detoxify

    from rai_harness.classifiers.detoxify_backend import DetoxifyClassifier

    ckpt = models["detoxify"]
    ours = DetoxifyClassifier(checkpoint=ckpt, device="cpu")
    assert ours.labels == ("toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack")
    assert ours.name == "detoxify:tiny_detoxify"
    reference = Detoxify(checkpoint=str(ckpt)).predict(SHORT_TEXTS)
    for i, result in enumerate(ours.predict(SHORT_TEXTS)):
        for label in ours.labels:
            assert result[label] == pytest.approx(reference[label][i], abs=1e-5)
    info = ours.info()
    assert info["backend"] == "detoxify" and len(info["weights_sha256"]) == 64


def test_detoxify_from_spec_and_errors(models, tmp_path):
    clf = load(ClassifierSpec(backend="detoxify", model=str(models["detoxify"]), device="cpu"))
    assert clf.labels[0] == "toxicity"
    # A long text is chunked rather than truncated as Detoxify.predict would.
    [long] = clf.predict(["thank you " * 400 + "idiot"])
    assert long.chunks > 1
    with pytest.raises(ConfigError, match="did you mean 'unbiased'"):
        load(ClassifierSpec(backend="detoxify", model="unbaised"))
    with pytest.raises(ConfigError, match="does not exist"):
        load(ClassifierSpec(backend="detoxify", model=str(tmp_path / "missing.ckpt")))


# -- embedding ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    from rai_harness.classifiers.embedding import MiniLMEmbedder

    return MiniLMEmbedder(device="cpu")


def test_loading_a_local_model_draws_no_progress_bar_and_restores_the_switch(capfd):
    # A guard built in an application (or `rai guard check`) must not print transformers'
    # "Loading weights" bar on stderr; an application that turned the bars on keeps them on.
    from transformers.utils import logging as hf_logging

    from rai_harness.classifiers.embedding import MiniLMEmbedder

    hf_logging.enable_progress_bar()
    MiniLMEmbedder(device="cpu")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()


def test_minilm_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    from rai_harness.classifiers.embedding import bundled_minilm_path

    pair = ["A man is playing a guitar on stage.", "Someone performs music with a guitar."]
    reference = SentenceTransformer(str(bundled_minilm_path()), device="cpu").encode(
        pair, normalize_embeddings=True
    )
    ours = minilm.embed(pair)
    assert float(ours[0] @ ours[1]) == pytest.approx(float(reference[0] @ reference[1]), abs=1e-4)
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_minilm_embeds_like_an_embedder(minilm):
    assert isinstance(minilm, Embedder) and minilm.dim == 384 and minilm.pooling == "mean"
    assert minilm.engine.max_length == 256  # sentence_bert_config.json's max_seq_length
    vectors = minilm.embed(
        ["A cat sits on the mat.", "A kitten is sitting on a rug.", "", "The stock market fell."]
    )
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[3] + 0.3
    assert minilm.embed([]).shape == (0, 384)
    sims = minilm.similarity(["A cat sits on the mat."], ["A kitten is sitting on a rug."])
    assert sims.shape == (1,) and sims[0] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)
    info = minilm.info()
    assert info["dim"] == 384 and len(info["weights_sha256"]) == 64


def test_minilm_long_text_is_chunked_and_normalised(minilm):
    text = "The committee met to discuss the budget. " * 80  # ~640 tokens, 3+ chunks of 256
    out = minilm.engine.run([text])
    assert out.chunks_per_text()[0] >= 3
    [vector] = minilm.embed([text])
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    # The same sentence repeated: averaging the chunks gives what one window of it gives.
    [one_window] = minilm.embed(["The committee met to discuss the budget. " * 20])
    assert minilm.engine.run(["The committee met to discuss the budget. " * 20]).chunks_per_text()[0] == 1
    assert vector @ one_window > 0.95


def test_embedding_backend_through_the_pool(minilm, monkeypatch):
    from rai_harness.classifiers import embedding

    monkeypatch.setattr(embedding, "MiniLMEmbedder", lambda model, **kw: (model, kw))
    assert embedding.from_spec(ClassifierSpec(backend="embedding", options={"max_batch_size": 4})) == (
        None,
        {"device": "auto", "max_batch_size": 4},
    )


# -- keyword -----------------------------------------------------------------------------


def test_keyword_classifier_matches_words_and_phrases():
    clf = KeywordClassifier({"insult": ["idiot", "moron"], "self_harm": ["kill yourself"]})
    assert isinstance(clf, Classifier) and clf.labels == ("insult", "self_harm")
    results = clf.predict(["You IDIOT!", "idiotic plan", "please Kill\n  yourself", "nice day", ""])
    assert [r["insult"] for r in results] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert [r["self_harm"] for r in results] == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert [(s.start, s.end, s.label) for s in results[0].spans] == [(4, 9, "insult")]
    assert "You IDIOT!"[4:9] == "IDIOT"
    assert clf.info()["phrases"] == {"insult": 2, "self_harm": 1}


def test_keyword_spec_and_validation():
    clf = load(ClassifierSpec(backend="keyword", options={"insult": ["idiot"]}))
    assert isinstance(clf, KeywordClassifier) and clf.predict(["idiot"])[0]["insult"] == 1.0
    with pytest.raises(ConfigError, match="list of phrases"):
        load(ClassifierSpec(backend="keyword", options={"insult": "idiot"}))
    with pytest.raises(ConfigError, match="non-empty"):
        KeywordClassifier({"insult": ["", "x"]})
    with pytest.raises(ConfigError):
        KeywordClassifier({})


# -- pool --------------------------------------------------------------------------------


class CountingLoader:
    def __init__(self, delay_s: float = 0.05) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, spec: ClassifierSpec) -> Classifier:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay_s)  # a slow load, so concurrent callers really overlap
        return KeywordClassifier({"x": ["x"]}, name=f"counted:{spec.model}")


def test_pool_returns_the_same_instance_for_equal_specs():
    pool = ClassifierPool()
    a = pool.classifier(ClassifierSpec(backend="keyword", options={"insult": ["idiot"]}))
    b = pool.classifier({"backend": "keyword", "options": {"insult": ["idiot"]}})
    c = pool.classifier(ClassifierSpec(backend="keyword", options={"insult": ["moron"]}))
    assert a is b and a is not c and len(pool) == 2
    assert ClassifierSpec(backend="keyword", options={"insult": ["idiot"]}) in pool
    assert len(pool.info()) == 2
    pool.clear()
    assert len(pool) == 0


def test_pool_loads_once_under_eight_concurrent_threads():
    loader = CountingLoader()
    pool = ClassifierPool(loader)
    spec = ClassifierSpec(backend="keyword", model="shared")
    barrier = threading.Barrier(8)
    got: list[Classifier] = []

    def worker() -> None:
        barrier.wait()
        got.append(pool.classifier(spec))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert loader.calls == 1
    assert len(got) == 8 and all(g is got[0] for g in got)


def test_pool_loads_different_specs_in_parallel():
    loader = CountingLoader(delay_s=0.3)
    pool = ClassifierPool(loader)
    start = time.perf_counter()
    threads = [
        threading.Thread(target=pool.classifier, args=(ClassifierSpec(backend="keyword", model=str(i)),))
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert loader.calls == 4 and len(pool) == 4
    assert time.perf_counter() - start < 1.0  # not 4 x 0.3 s in series


def test_unknown_backend_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'detoxify'") as err:
        validate_spec(ClassifierSpec(backend="detoxfy"))
    assert err.value.key_path == "backend"
    with pytest.raises(ConfigError, match="unknown classifier backend"):
        default_pool().classifier(ClassifierSpec(backend="nope-nothing-like-it"))


def test_missing_packages_and_modules_give_install_hints(monkeypatch):
    def needs_presidio(spec: ClassifierSpec) -> Classifier:
        raise ModuleNotFoundError("No module named 'presidio_analyzer'", name="presidio_analyzer")

    monkeypatch.setattr(pool_module, "BACKENDS", pool_module.BACKENDS.copy())
    pool_module.BACKENDS.register("needs-presidio", needs_presidio)
    with pytest.raises(MissingDependencyError, match="pip install presidio-analyzer"):
        load(ClassifierSpec(backend="needs-presidio"))
    pool_module.BACKENDS.register("ghost", "rai_harness.classifiers.ghost_module:from_spec")
    with pytest.raises(ConfigError, match="not in this installation"):
        load(ClassifierSpec(backend="ghost"))


def test_register_backend_and_check_options(monkeypatch):
    monkeypatch.setattr(pool_module, "BACKENDS", pool_module.BACKENDS.copy())
    register_backend("const", lambda spec: KeywordClassifier({"y": ["y"]}))
    with pytest.raises(ValueError, match="already registered"):
        register_backend("const", lambda spec: KeywordClassifier({"y": ["y"]}))
    assert isinstance(load(ClassifierSpec(backend="const")), KeywordClassifier)
    spec = ClassifierSpec(backend="x", options={"max_length": "128", "multi_label": True})
    assert check_options(spec, {"max_length": int, "multi_label": bool}) == {
        "max_length": 128,
        "multi_label": True,
    }
    with pytest.raises(ConfigError, match="true or false"):
        check_options(ClassifierSpec(backend="x", options={"multi_label": "yes"}), {"multi_label": bool})
    with pytest.raises(ConfigError, match="bad value"):
        check_options(ClassifierSpec(backend="x", options={"max_length": "many"}), {"max_length": int})
    register_backend("not-a-classifier", lambda spec: object())  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="not a Classifier"):
        load(ClassifierSpec(backend="not-a-classifier"))


def test_default_pool_is_process_wide():
    assert default_pool() is default_pool()
    assert isinstance(
        default_pool().classifier(ClassifierSpec(backend="keyword", options={"z": ["z"]})), KeywordClassifier
    )


def test_label_scores_from_backends_are_plain_floats(models):
    clf = HFClassifier(str(models["multi"]), device="cpu")
    [result] = clf.predict(["hello"])
    assert isinstance(result, LabelScores)
    assert all(type(v) is float for v in result.scores.values())
