"""The batching engine: order, token budget, chunking, edge-case texts, aggregation."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.tiny_classifiers import build_tiny_bert_classifier, train_tiny_wordpiece
from rai_harness.classifiers.engine import (
    BatchEngine,
    ChunkOutputs,
    aggregate_max,
    aggregate_mean,
    sanitize_text,
    split_long_text,
)
from rai_harness.classifiers.hf import HFClassifier

#: Texts no scorer may crash or hang on.
EDGE_TEXTS = [
    "",
    " ",
    "\t\n  \r\n",
    "\x00",
    "a\x00b\x00",
    "\ud800",
    "lone \udfff surrogate in the middle",
    "😀🔥👩‍👩‍👧‍👦" * 40,
    "שלום עולם, מה שלומך?",
    "مرحبا بالعالم، كيف حالك؟",
    "e\u0301\u0301\u0301 combining marks and \u200b zero width \ufeff bom",
    "x" * 5000,
    "word " * 600,
]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and lose a lot on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tiny_wordpiece()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_bert_classifier(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="module")
def tiny_hf(tiny_model_dir) -> HFClassifier:
    return HFClassifier(str(tiny_model_dir), device="cpu", max_tokens_per_batch=1024, max_batch_size=8)


class Recorder:
    """A forward that flags rows containing ``flag_id`` and records each batch's shape."""

    def __init__(self, flag_id: int) -> None:
        self.flag_id = flag_id
        self.shapes: list[tuple[int, int]] = []
        self.real_lengths: list[list[int]] = []

    def __call__(self, batch):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        self.shapes.append(tuple(ids.shape))
        self.real_lengths.append(mask.sum(dim=1).tolist())
        hit = ((ids == self.flag_id) & (mask == 1)).any(dim=1).float()
        return torch.stack([hit, mask.sum(dim=1).float()], dim=1)


def flag_engine(tokenizer, **kwargs) -> tuple[BatchEngine, Recorder]:
    recorder = Recorder(tokenizer.convert_tokens_to_ids("idiot"))
    kwargs.setdefault("max_length", 64)
    return BatchEngine(tokenizer, recorder, device="cpu", **kwargs), recorder


def benign(n_words: int) -> str:
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "the",
        "lazy",
        "dog",
        "and",
        "thank",
        "you",
        "for",
        "your",
        "help",
    ]
    return " ".join(words[i % len(words)] for i in range(n_words))


def varied(n_words: int, seed: int) -> str:
    """``n_words`` of :func:`benign`'s words in a seeded random order: texts (and windows) that
    differ, since the engine runs identical chunks once."""
    words = benign(15).split()
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(words, size=n_words))


# -- order and budget -----------------------------------------------------------------


def test_batched_scores_match_one_at_a_time(tiny_hf):
    rng = np.random.default_rng(0)
    texts = [benign(int(n)) for n in rng.integers(0, 160, size=24)] + ["you are an idiot", ""]
    rng.shuffle(texts)
    batched = tiny_hf.predict(texts)
    single = [tiny_hf.predict([t])[0] for t in texts]
    assert len(batched) == len(texts)
    for b, s in zip(batched, single, strict=True):
        assert b.chunks == s.chunks
        for label in tiny_hf.labels:
            assert b[label] == pytest.approx(s[label], abs=1e-5)
    # Several batches ran (the budget is small), so the order really was restored.
    assert sum(r.chunks for r in batched) > tiny_hf.engine.max_batch_size


def test_identical_chunks_run_once_and_every_chunk_keeps_its_row(tokenizer):
    # A padded or repeated text costs one forward row per distinct chunk, not per copy; the
    # outputs, one row per chunk in order, are what running every copy would give.
    engine, rec = flag_engine(tokenizer, max_length=16, max_tokens_per_batch=4096)
    texts = ["hello there " * 200, "you idiot", "hello there " * 200, "you idiot", "fine"]
    out = engine.run(texts)
    rows = sum(n for n, _ in rec.shapes)
    distinct = {tuple(r) for r in zip(out.text_index.tolist(), out.values[:, 1].tolist(), strict=True)}
    assert rows < len(out.values) // 10  # hundreds of identical windows, a handful distinct
    assert len(out.values) == len(out.text_index) and len(distinct) >= 3
    fresh, _ = flag_engine(tokenizer, max_length=16, max_tokens_per_batch=4096)
    each = [fresh.run([t]) for t in texts]
    for i, single in enumerate(each):
        mine = out.values[out.text_index == i]
        assert mine.shape == single.values.shape and np.array_equal(mine, single.values), i
    assert aggregate_max(out)[:, 0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_token_budget_and_batch_size_respected(tokenizer):
    engine, rec = flag_engine(tokenizer, max_tokens_per_batch=256, max_batch_size=6)
    rng = np.random.default_rng(1)
    texts = [varied(int(n), i) for i, n in enumerate(rng.integers(0, 200, size=60))]  # no two chunks alike
    out = engine.run(texts)
    assert rec.shapes
    for (batch, width), lengths in zip(rec.shapes, rec.real_lengths, strict=True):
        assert batch * width <= 256
        assert batch <= 6
        assert width == max(lengths)  # padded to the longest in the batch, no further
        assert width <= 64
    assert sum(b for b, _ in rec.shapes) == len(out.values)
    # Sorted longest first: batch widths never grow.
    widths = [w for _, w in rec.shapes]
    assert widths == sorted(widths, reverse=True)
    # Output row j belongs to chunk j: its real length matches the chunk's tokens + specials.
    np.testing.assert_array_equal(out.values[:, 1], out.n_tokens + 2)


def test_pad_to_multiple_of(tokenizer):
    engine, rec = flag_engine(tokenizer, pad_to_multiple_of=8)
    engine.run(["a", "hello world", benign(30)])
    assert all(width % 8 == 0 for _, width in rec.shapes)


def test_memory_stays_bounded_for_a_long_list(tokenizer):
    engine, rec = flag_engine(tokenizer, max_tokens_per_batch=512, max_batch_size=64)
    out = engine.run([benign(20)] * 3000)
    assert out.n_texts == 3000
    assert max(b * w for b, w in rec.shapes) <= 512


# -- chunking ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_tokens", [0, 1, 61, 62, 63, 100, 1000, 2345])
def test_chunks_cover_every_token_with_overlap(tokenizer, n_tokens):
    engine, _ = flag_engine(tokenizer, overlap=16)
    ids = [np.arange(n_tokens, dtype=np.int64)]
    chunks = engine.chunk(ids)
    assert chunks[0].start == 0 and chunks[-1].end == n_tokens
    assert all(c.end - c.start <= engine.window for c in chunks)
    for left, right in itertools.pairwise(chunks):
        assert left.end - right.start == 16  # neighbours share exactly `overlap` tokens
    covered = np.zeros(n_tokens, dtype=bool)
    for c in chunks:
        covered[c.start : c.end] = True
    assert covered.all()


def test_flag_at_the_end_of_a_10k_token_text_is_caught(tokenizer):
    engine, rec = flag_engine(tokenizer, max_length=128, max_tokens_per_batch=4096)
    text = benign(10_000) + " you are an idiot"
    out = engine.run([text, benign(50)])
    assert len(engine.tokenize([text])[0]) > 10_000
    assert out.chunks_per_text()[0] > 80 and out.chunks_per_text()[1] == 1
    flags = aggregate_max(out)[:, 0]
    assert flags.tolist() == [1.0, 0.0]
    # Only the last chunk sees it: truncation to the first window would have missed it.
    assert out.values[out.text_index == 0, 0].tolist()[-1] == 1.0
    assert out.values[out.text_index == 0, 0][:-2].sum() == 0
    assert max(w for _, w in rec.shapes) <= 128


def test_phrase_cut_by_a_window_boundary_is_whole_in_the_next_chunk(tokenizer):
    """A two-token phrase split by a window boundary appears whole in the overlapping chunk."""
    first, second = tokenizer.convert_tokens_to_ids(["an", "idiot"])

    def bigram(batch):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        hit = ((ids[:, :-1] == first) & (ids[:, 1:] == second) & (mask[:, 1:] == 1)).any(dim=1)
        return hit.float()[:, None]

    engine = BatchEngine(tokenizer, bigram, max_length=34, overlap=8, device="cpu")  # window 32
    text = benign(31) + " an idiot " + benign(40)
    ids = engine.tokenize([text])[0]
    assert ids[31] == first and ids[32] == second  # "an" ends window 0, "idiot" starts past it
    out = engine.run([text])
    assert out.values[0, 0] == 0.0  # the first window alone misses the phrase
    assert aggregate_max(out)[0, 0] == 1.0


def test_overlap_larger_than_half_the_window_is_reduced(tokenizer):
    engine, _ = flag_engine(tokenizer, max_length=34, overlap=1000)
    assert engine.overlap == 16
    with pytest.raises(ValueError):
        BatchEngine(tokenizer, lambda b: b["input_ids"], max_length=2)


# -- edge-case texts ---------------------------------------------------------------------


def test_edge_case_texts_score_without_crashing(tiny_hf):
    results = tiny_hf.predict(EDGE_TEXTS)
    assert len(results) == len(EDGE_TEXTS)
    for r in results:
        assert set(r.scores) == set(tiny_hf.labels)
        assert all(0.0 <= v <= 1.0 and np.isfinite(v) for v in r.scores.values())
    # Empty and whitespace-only texts are scored like the empty string, not skipped.
    assert results[0].scores == pytest.approx(results[1].scores, abs=1e-6)
    assert results[-1].chunks > 1


def test_empty_list_and_non_strings(tiny_hf, tokenizer):
    assert tiny_hf.predict([]) == []
    engine, _ = flag_engine(tokenizer)
    assert engine.run([]).n_texts == 0
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        engine.run(["ok", None])  # type: ignore[list-item]


@pytest.mark.timeout(120)
def test_one_megabyte_text_is_fast_and_fully_read(tokenizer):
    engine, _ = flag_engine(tokenizer, max_length=128, max_tokens_per_batch=8192)
    text = "The quick brown fox jumps over the lazy dog. " * 23_000 + "you idiot"
    assert len(text) > 1_000_000
    start = time.perf_counter()
    out = engine.run([text, "", "hi"])
    elapsed = time.perf_counter() - start
    assert aggregate_max(out)[:, 0].tolist() == [1.0, 0.0, 0.0]
    assert elapsed < 30, f"1 MB took {elapsed:.1f} s"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_one_megabyte_text_through_a_tiny_model(tiny_hf):
    text = "The quick brown fox jumps over the lazy dog. " * 23_000
    start = time.perf_counter()
    [result] = tiny_hf.predict([text])
    assert result.chunks > 1000
    assert time.perf_counter() - start < 300


def test_sanitize_and_split():
    assert sanitize_text("ok \x00 😀") == "ok \x00 😀"
    assert sanitize_text("a\ud800b") == "a?b"
    text = "lorem ipsum dolor " * 1000
    pieces = split_long_text(text, 100)
    assert "".join(pieces) == text
    assert all(len(p) <= 100 for p in pieces)
    assert all(p.startswith(" ") or i == 0 for i, p in enumerate(pieces))  # cut at whitespace
    no_space = "x" * 1050
    assert [len(p) for p in split_long_text(no_space, 100)] == [100] * 10 + [50]


def test_presplitting_does_not_change_the_tokens(tokenizer):
    engine, _ = flag_engine(tokenizer, split_chars=64)
    text = benign(500)
    whole = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert engine.tokenize([text])[0].tolist() == whole


# -- aggregation -----------------------------------------------------------------------


def test_aggregate_max_and_mean():
    outputs = ChunkOutputs(
        values=np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0], [0.0, 0.0]], dtype=np.float32),
        text_index=np.array([0, 0, 1, 2]),
        n_tokens=np.array([10, 30, 5, 0]),
        n_texts=3,
    )
    np.testing.assert_allclose(aggregate_max(outputs), [[1, 3], [2, 2], [0, 0]])
    mean = aggregate_mean(outputs)
    expected0 = np.array([10 * 1.0, 30 * 3.0]) / 40
    np.testing.assert_allclose(mean[0], expected0 / np.linalg.norm(expected0), rtol=1e-6)
    np.testing.assert_allclose(mean[1], [2**-0.5, 2**-0.5], rtol=1e-6)
    np.testing.assert_allclose(mean[2], [0, 0])  # a zero row stays zero, no NaN
    np.testing.assert_allclose(aggregate_mean(outputs, normalize=False)[0], expected0, rtol=1e-6)


# -- a real model ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_real_minilm_finds_a_sentence_at_the_end_of_a_long_text():
    """With all-MiniLM-L6-v2, the chunk closest to a toxic sentence is the last one of a 10k-token text."""
    from rai_harness.classifiers.embedding import MiniLMEmbedder

    embedder = MiniLMEmbedder(device="cpu")
    toxic = "You are a worthless idiot and everyone hates you. Shut up, you stupid moron."
    long_text = benign(9_000) + " " + " ".join([toxic] * 5)
    out = embedder.engine.run([long_text])
    assert len(embedder.engine.tokenize([long_text])[0]) >= 9_000
    chunk_vectors = out.values / np.linalg.norm(out.values, axis=1, keepdims=True)
    target = embedder.embed([toxic])[0]
    sims = chunk_vectors @ target
    per_text = aggregate_max(ChunkOutputs(sims[:, None], out.text_index, out.n_tokens, out.n_texts))
    assert per_text[0, 0] > 0.45  # max over chunks: found (every benign chunk is < 0.1)
    assert sims[0] < 0.15  # the first window alone (truncation) would not have seen it
    assert int(np.argmax(sims)) == len(sims) - 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_benchmark_script_runs_on_the_cpu():
    """benchmarks/gpu.py has a small CPU mode so the GPU script is exercised without a GPU."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--cpu-small", "--n", "8", "--no-write"],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "argmax agreement" in proc.stdout


def test_length_buckets_cut_padding_where_it_pays(tokenizer):
    """A few long texts and many short ones: two batches, unless a cut saves too little."""
    # Distinct word orders, so that no two are the same chunk (identical chunks run once).
    texts = [varied(40, seed) for seed in range(2)] + [varied(3, seed) for seed in range(2, 22)]
    lengths = [len(ids) + 2 for ids in flag_engine(tokenizer)[0].tokenize(texts)]
    long, short = max(lengths), min(lengths)
    saved = 20 * (long - short)  # padding tokens the cut saves

    def shapes(**kwargs):
        engine, rec = flag_engine(tokenizer, max_tokens_per_batch=4096, max_batch_size=64, **kwargs)
        out = engine.run(texts)
        np.testing.assert_array_equal(out.values[:, 1], out.n_tokens + 2)  # order still restored
        return rec.shapes

    assert shapes(split_cost_tokens=0) == [(22, long)]  # off: one batch padded to the longest
    assert shapes(split_cost_tokens=saved - 1) == [(2, long), (20, short)]
    assert shapes(split_cost_tokens=saved) == [(22, long)]  # saves no more than a call costs
    # The default on the CPU buckets; the budget still bounds every bucket.
    assert shapes() == [(2, long), (20, short)]
    engine, _ = flag_engine(tokenizer)
    assert engine.split_cost_tokens > 0
    with pytest.raises(ValueError, match="split_cost_tokens"):
        flag_engine(tokenizer, split_cost_tokens=-1)
