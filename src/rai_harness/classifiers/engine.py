"""The one batching engine every torch classifier and embedder runs through.

What it does, in order (lm-eval's ``Collator`` is the model for sort/batch/restore):

1. **Sanitise**: lone surrogates (``"\\ud800"``, which the Rust tokenizers reject) become
   ``"?"``; everything else (NUL bytes, emoji, right-to-left scripts, empty strings) goes to
   the tokenizer as is.
2. **Tokenise** without padding, truncation or special tokens, on the fast (Rust) tokenizer.
   Texts longer than ``split_chars`` characters are first cut into pieces at whitespace, so
   a 1 MB text is tokenised as ~500 short pieces in parallel instead of one huge string
   (pre-tokenisers and BPE merges get slow on very long inputs).
3. **Chunk**: a text longer than the model window is split into overlapping windows
   (``overlap`` tokens shared by neighbours), so nothing is silently truncated; each chunk
   gets the model's special tokens (``[CLS] ... [SEP]``) back.
4. **Sort** chunks by length, longest first (a batch that would run out of memory does so at
   once, not after an hour), and **batch** them under a token budget: padded length x
   batch size <= ``max_tokens_per_batch``, so activation memory is bounded whatever the
   list size. Detoxify pads a whole list into one batch; LLM Guard pads every text to 512
   tokens at batch size 1: both are what this avoids. On the CPU a batch is then cut into
   **length buckets** where that saves more padding than one more forward call costs
   (``split_cost_tokens``): 8 texts of 13 tokens and 56 of 8-11 run as two batches, so the
   short ones are not padded to 13.
5. **Pad dynamically** to the longest chunk of each batch (to a multiple of 8 on CUDA, for
   tensor cores), copy to the device (pinned memory, non-blocking), run ``forward`` under
   :func:`torch.inference_mode` (and autocast in bf16/fp16 on CUDA), keep the outputs on the
   device until the end so the CPU prepares the next batch while the GPU computes.
6. **Restore** the input order and hand back one output row per chunk plus the index of
   the text it came from; :func:`aggregate_max` (classifiers: a toxic sentence at the end of
   a long benign text must count) and :func:`aggregate_mean` (embeddings) reduce them to one
   row per text.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_OVERLAP",
    "BatchEngine",
    "ChunkOutputs",
    "aggregate_max",
    "aggregate_mean",
    "prepare_model",
    "sanitize_text",
]

logger = logging.getLogger(__name__)

#: Tokens shared by neighbouring chunks of a long text: enough that a sentence cut by a
#: chunk boundary is whole in one of the two chunks.
DEFAULT_OVERLAP = 64
#: Token budget per batch (padded length x batch size). On the CPU, bigger batches buy
#: nothing and cost cache misses: with MiniLM on 2 cores, 4096 tokens / 64 rows beat 8192
#: and 16384 by 10-40% (benchmarks/classifiers.py). On CUDA a BERT-base batch of 32k
#: tokens is ~1 GB of activations in bf16, far below any data-centre card, and keeps the
#: SMs busy.
DEFAULT_TOKENS_CPU = 4096
DEFAULT_TOKENS_CUDA = 32768
DEFAULT_BATCH_CPU = 64
DEFAULT_BATCH_CUDA = 1024
#: Padding tokens a length bucket must save to be worth one more forward call on the CPU:
#: the fixed cost of a call expressed in tokens. A short MiniLM forward costs ~1.5-3 ms of
#: fixed overhead (ONNX Runtime, torch more) against ~0.05-0.15 ms per token, i.e. 10-60
#: tokens; 32 splits only where it clearly pays. On CUDA a call's fixed cost dwarfs
#: per-token cost, so batches are not split there (0).
DEFAULT_SPLIT_COST_CPU = 32
#: Characters per piece when pre-splitting a long text before tokenising (~500 tokens of
#: English); pieces are cut at whitespace where one is near, so tokens are not split.
DEFAULT_SPLIT_CHARS = 2048
#: Move outputs to host memory after this many rows pile up on the device (bounds device
#: memory for embedding outputs of huge lists: 65536 x 1024 floats = 256 MB).
_FLUSH_ROWS = 65536


def sanitize_text(text: str) -> str:
    """Return ``text`` with unencodable code points (lone surrogates) replaced by ``?``.

    Rust tokenizers only take valid Unicode scalar values; a lone surrogate (which Python
    strings can hold, e.g. from ``json.loads('"\\\\ud800"')``) would raise. NUL bytes and all
    valid characters are kept.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def split_long_text(text: str, max_chars: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``max_chars`` characters, at whitespace if possible.

    The whitespace stays at the start of the following piece, so byte-level BPE
    tokenizers (which encode a leading space into the next token) see the same words.
    A piece is cut mid-word only when its second half holds no whitespace at all.
    """
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    start, n = 0, len(text)
    while start < n:
        end = min(start + max_chars, n)
        if end < n:
            low = start + max_chars // 2
            cut = max(text.rfind(" ", low, end), text.rfind("\n", low, end))
            if cut > start:
                end = cut
        pieces.append(text[start:end])
        start = end
    return pieces


def prepare_model(model: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Put a torch module in eval mode on ``device`` in ``dtype`` and return it."""
    import torch

    model.eval()
    model.to(device)
    if dtype is not torch.float32:
        model.to(dtype)
    return model


@dataclass(frozen=True, slots=True)
class ChunkOutputs:
    """Per-chunk outputs of :meth:`BatchEngine.run`, in input order.

    Chunks of one text are contiguous and in text order, and texts follow each other in
    input order, so ``text_index`` is non-decreasing and every text has at least one chunk
    (an empty text is one chunk holding only the special tokens).

    Attributes:
        values: ``(n_chunks, k)`` float32 array: one ``forward`` output row per chunk.
        text_index: ``(n_chunks,)`` int64: the input text each chunk belongs to.
        n_tokens: ``(n_chunks,)`` int64: tokens of text in each chunk (special tokens not
            counted); weights for :func:`aggregate_mean`.
        n_texts: Number of input texts.
    """

    values: np.ndarray
    text_index: np.ndarray
    n_tokens: np.ndarray
    n_texts: int

    def chunks_per_text(self) -> np.ndarray:
        """``(n_texts,)`` int64: how many chunks each text was split into."""
        return np.bincount(self.text_index, minlength=self.n_texts).astype(np.int64)

    def _starts(self) -> np.ndarray:
        counts = self.chunks_per_text()
        return np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)


def aggregate_max(outputs: ChunkOutputs) -> np.ndarray:
    """Maximum over each text's chunks, per column: ``(n_texts, k)``.

    The right reduction for classifier scores: a text is as toxic as its most toxic part.
    """
    if outputs.n_texts == 0:
        return np.zeros((0, outputs.values.shape[1]), dtype=np.float32)
    reduced: np.ndarray = np.maximum.reduceat(outputs.values, outputs._starts(), axis=0)
    return reduced


def aggregate_mean(outputs: ChunkOutputs, *, normalize: bool = True) -> np.ndarray:
    """Token-weighted mean of each text's chunk rows, L2-normalised: ``(n_texts, k)``.

    The right reduction for mean-pooled embeddings: weighting each chunk by its token count
    makes the result close to mean pooling over the whole text, which a model with an
    unbounded window would give. A single-chunk text is returned as is (normalised).

    Args:
        outputs: Engine outputs.
        normalize: Scale every row to unit L2 norm (rows of zeros stay zero).
    """
    if outputs.n_texts == 0:
        return np.zeros((0, outputs.values.shape[1]), dtype=np.float32)
    starts = outputs._starts()
    # Empty texts have zero text tokens; give them weight 1 so their row is not 0/0.
    weights = np.maximum(outputs.n_tokens, 1).astype(np.float64)
    sums = np.add.reduceat(outputs.values.astype(np.float64) * weights[:, None], starts, axis=0)
    means = sums / np.add.reduceat(weights, starts)[:, None]
    if normalize:
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        means = means / np.where(norms > 0, norms, 1.0)
    result: np.ndarray = means.astype(np.float32)
    return result


class _TokenizerAdapter:
    """Tokenise lists of strings into id lists, without special tokens or truncation.

    Uses a private copy of the Rust ``tokenizers.Tokenizer`` behind a transformers fast
    tokenizer (with its truncation and padding switched off: some ``tokenizer.json`` files
    ship with both enabled), and falls back to calling the transformers tokenizer itself.
    """

    def __init__(self, tokenizer: Any) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None and type(tokenizer).__module__.startswith("tokenizers"):
            backend = tokenizer
        self._fast: Any = None
        self._slow: Any = None
        if backend is not None:
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_str(backend.to_str())
            self._fast.no_truncation()
            self._fast.no_padding()
        else:
            self._slow = tokenizer
        self.prefix, self.suffix = self._special_tokens()

    def encode(self, texts: Sequence[str], *, add_special_tokens: bool = False) -> list[list[int]]:
        if not texts:
            return []
        if self._fast is not None:
            return [
                e.ids for e in self._fast.encode_batch(list(texts), add_special_tokens=add_special_tokens)
            ]
        ids: list[list[int]] = self._slow(
            list(texts), add_special_tokens=add_special_tokens, truncation=False, padding=False
        )["input_ids"]
        return ids

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids a single sequence is wrapped in (``[CLS]``/``[SEP]``, ``<s>``/``</s>``...)."""
        for probe in ("a", "hello", "0", "."):
            plain = self.encode([probe])[0]
            full = self.encode([probe], add_special_tokens=True)[0]
            if not plain:
                continue
            for i in range(len(full) - len(plain) + 1):
                if full[i : i + len(plain)] == plain:
                    return full[:i], full[i + len(plain) :]
        raise ValueError("cannot locate the special tokens this tokenizer adds around a text")


@dataclass(frozen=True, slots=True)
class _Chunk:
    text: int
    start: int
    end: int


class BatchEngine:
    """Tokenise, chunk, sort, batch under a token budget, run, and restore order.

    Args:
        tokenizer: A transformers tokenizer (fast ones are used through their Rust
            backend) or a ``tokenizers.Tokenizer``.
        forward: Maps a batch ``{"input_ids", "attention_mask"}`` (int64 tensors of shape
            ``(batch, length)`` on ``device``) to a ``(batch, k)`` tensor: probabilities for
            classifiers, pooled vectors for embedders. Called under inference mode.
        max_length: The model window in tokens, special tokens included (512 for BERT).
        device: Where batches go; the model must already be there.
        dtype: Compute dtype; bf16/fp16 on CUDA turns autocast on.
        max_tokens_per_batch: Budget of padded length x batch size, tokens. ``None``: 4096
            on CPU, 32768 on CUDA. A single chunk longer than the budget runs alone.
        max_batch_size: Most chunks per batch. ``None``: 64 on CPU, 1024 on CUDA.
        overlap: Tokens shared by neighbouring chunks of a long text (at most half the
            window; larger values are reduced to that).
        pad_to_multiple_of: Round each batch's length up to a multiple of this. ``None``:
            8 on CUDA (tensor-core friendly shapes), 1 elsewhere.
        pad_token_id: Id of the padding token. ``None``: the tokenizer's, else 0.
        split_chars: Texts longer than this many characters are pre-split at whitespace
            before tokenising (bounded work per tokenizer call).
        split_cost_tokens: A batch is cut into two length buckets where the padding tokens
            saved exceed this (see :meth:`plan_batches`). ``None``:
            :data:`DEFAULT_SPLIT_COST_CPU` on the CPU, 0 (never split) elsewhere.
    """

    def __init__(
        self,
        tokenizer: Any,
        forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        *,
        max_length: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        max_tokens_per_batch: int | None = None,
        max_batch_size: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        pad_to_multiple_of: int | None = None,
        pad_token_id: int | None = None,
        split_chars: int = DEFAULT_SPLIT_CHARS,
        split_cost_tokens: int | None = None,
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.forward = forward
        self._tok = _TokenizerAdapter(tokenizer)
        self.prefix = list(self._tok.prefix)
        self.suffix = list(self._tok.suffix)
        self.max_length = int(max_length)
        self.window = self.max_length - len(self.prefix) - len(self.suffix)
        if self.window < 1:
            raise ValueError(f"max_length={max_length} leaves no room for text after the special tokens")
        if overlap < 0:
            raise ValueError("overlap must be >= 0")
        self.overlap = min(int(overlap), self.window // 2)
        on_cuda = self.device.type == "cuda"
        self.max_tokens_per_batch = int(
            max_tokens_per_batch or (DEFAULT_TOKENS_CUDA if on_cuda else DEFAULT_TOKENS_CPU)
        )
        self.max_batch_size = int(max_batch_size or (DEFAULT_BATCH_CUDA if on_cuda else DEFAULT_BATCH_CPU))
        if self.max_tokens_per_batch < 1 or self.max_batch_size < 1:
            raise ValueError("max_tokens_per_batch and max_batch_size must be positive")
        self.pad_to_multiple_of = int(pad_to_multiple_of or (8 if on_cuda else 1))
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = int(pad_token_id) if pad_token_id is not None else 0
        self.split_chars = max(int(split_chars), 64)
        if split_cost_tokens is None:
            split_cost_tokens = 0 if on_cuda or self.device.type != "cpu" else DEFAULT_SPLIT_COST_CPU
        if split_cost_tokens < 0:
            raise ValueError("split_cost_tokens must be >= 0")
        self.split_cost_tokens = int(split_cost_tokens)
        if self.max_tokens_per_batch < self.max_length:
            logger.warning(
                "max_tokens_per_batch=%d is below the model window (%d tokens): full-length chunks "
                "run one at a time over the budget",
                self.max_tokens_per_batch,
                self.max_length,
            )

    # -- tokenising and chunking -------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of every text (no special tokens, nothing truncated), as int64 arrays."""
        pieces: list[str] = []
        owners: list[int] = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, not str")
            parts = split_long_text(sanitize_text(text), self.split_chars)
            pieces.extend(parts)
            owners.extend([i] * len(parts))
        encoded = self._tok.encode(pieces)
        ids: list[list[np.ndarray]] = [[] for _ in texts]
        for owner, piece_ids in zip(owners, encoded, strict=True):
            ids[owner].append(np.asarray(piece_ids, dtype=np.int64))
        return [parts[0] if len(parts) == 1 else np.concatenate(parts) for parts in ids]

    def chunk(self, ids: Sequence[np.ndarray]) -> list[_Chunk]:
        """Windows over each text's ids: ``[start, end)`` ranges of at most ``window`` tokens."""
        step = self.window - self.overlap
        chunks: list[_Chunk] = []
        for i, text_ids in enumerate(ids):
            n = len(text_ids)
            start = 0
            while True:
                end = min(start + self.window, n)
                chunks.append(_Chunk(i, start, end))
                if end >= n:
                    break
                start += step
        return chunks

    def plan_batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Group chunk indices into batches, longest first, under the token budget.

        Args:
            lengths: Length of every chunk in tokens, special tokens included.

        Each batch is then cut into length buckets where a cut saves more than
        ``split_cost_tokens`` padding tokens (:meth:`_length_buckets`).

        Returns:
            Arrays of chunk indices, one per batch, longest first; their padded size (batch
            x longest, rounded up to ``pad_to_multiple_of``) stays within
            ``max_tokens_per_batch`` unless a single chunk is longer than the budget.
        """
        order = np.argsort(-lengths, kind="stable")
        padded_lengths = np.array([self._padded_length(int(n)) for n in lengths], dtype=np.int64)
        batches: list[np.ndarray] = []
        i, n = 0, len(order)
        while i < n:
            padded = int(padded_lengths[order[i]])
            size = max(1, min(self.max_batch_size, self.max_tokens_per_batch // padded))
            batches.extend(self._length_buckets(order[i : i + size], padded_lengths))
            i += size
        return batches

    def _length_buckets(self, batch: np.ndarray, padded_lengths: np.ndarray) -> list[np.ndarray]:
        """Cut a longest-first batch where the padding saved exceeds ``split_cost_tokens``.

        Cutting before position ``i`` of ``k`` chunks pads the ``k - i`` shorter ones to
        their own longest instead of the batch's: it saves ``(k - i) x (l[0] - l[i])``
        tokens. The best cut is taken if it saves more than one more forward call costs,
        and both halves are considered again. A subset of a batch stays within its budget.
        """
        if self.split_cost_tokens <= 0 or len(batch) < 2:
            return [batch]
        widths = padded_lengths[batch]
        k = len(batch)
        cut_at = np.arange(1, k)
        saved = (k - cut_at) * (widths[0] - widths[1:])
        best = int(np.argmax(saved))
        if saved[best] <= self.split_cost_tokens:
            return [batch]
        cut = best + 1
        return self._length_buckets(batch[:cut], padded_lengths) + self._length_buckets(
            batch[cut:], padded_lengths
        )

    def _padded_length(self, length: int) -> int:
        m = self.pad_to_multiple_of
        return -(-length // m) * m

    # -- running -----------------------------------------------------------------------

    def run(self, texts: Sequence[str]) -> ChunkOutputs:
        """Run ``forward`` over every chunk of every text and return the outputs in input order.

        Args:
            texts: The texts; any length, any Unicode (lone surrogates become ``?``).

        Returns:
            One output row per chunk, with the index of its text.
        """
        t0 = time.perf_counter()
        ids = self.tokenize(texts)
        chunks = self.chunk(ids)
        n_special = len(self.prefix) + len(self.suffix)
        content = np.fromiter((c.end - c.start for c in chunks), dtype=np.int64, count=len(chunks))
        text_index = np.fromiter((c.text for c in chunks), dtype=np.int64, count=len(chunks))
        if not chunks:
            return ChunkOutputs(np.zeros((0, 0), np.float32), text_index, content, 0)
        # Chunks of the same tokens are run once: a padded or repeated text ("a\n" * 10,000,
        # the same sentence pasted over and over) would otherwise cost a forward pass per copy,
        # and bounded work per text is what keeps one hostile text from starving the others.
        first: dict[bytes, int] = {}
        inverse = np.fromiter(
            (first.setdefault(ids[c.text][c.start : c.end].tobytes(), len(first)) for c in chunks),
            dtype=np.int64,
            count=len(chunks),
        )
        firsts = np.unique(inverse, return_index=True)[1]  # where each distinct chunk first occurs
        unique = [chunks[j] for j in firsts]
        batches = self.plan_batches(content[firsts] + n_special)
        t1 = time.perf_counter()
        values = self._run_batches(ids, unique, batches)[inverse]
        logger.debug(
            "engine: %d texts -> %d chunks (%d distinct) in %d batches; tokenise %.1f ms, forward %.1f ms",
            len(texts),
            len(chunks),
            len(unique),
            len(batches),
            (t1 - t0) * 1e3,
            (time.perf_counter() - t1) * 1e3,
        )
        return ChunkOutputs(values, text_index, content, len(texts))

    def iter_batches(
        self, ids: Sequence[np.ndarray], chunks: Sequence[_Chunk], batches: Sequence[np.ndarray]
    ) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """Yield ``(chunk indices, device tensors)`` for each planned batch."""
        import torch

        prefix = np.asarray(self.prefix, dtype=np.int64)
        suffix = np.asarray(self.suffix, dtype=np.int64)
        p, q = len(prefix), len(suffix)
        pin = self.device.type == "cuda"
        for batch in batches:
            lengths = [chunks[j].end - chunks[j].start + p + q for j in batch]
            width = self._padded_length(max(lengths))
            input_ids = np.full((len(batch), width), self.pad_token_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, j in enumerate(batch):
                c = chunks[j]
                n = c.end - c.start
                input_ids[row, :p] = prefix
                input_ids[row, p : p + n] = ids[c.text][c.start : c.end]
                input_ids[row, p + n : p + n + q] = suffix
                mask[row, : p + n + q] = 1
            tensors = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
            if pin:
                # Pinned host memory makes the host-to-device copy asynchronous, so the CPU
                # builds the next batch while this one is copied and computed.
                tensors = {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in tensors.items()}
            elif self.device.type != "cpu":
                tensors = {k: v.to(self.device) for k, v in tensors.items()}
            yield batch, tensors

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.device.type == "cuda" and self.dtype in (torch.bfloat16, torch.float16):
            return torch.autocast(device_type="cuda", dtype=self.dtype)
        return contextlib.nullcontext()

    def _run_batches(
        self, ids: Sequence[np.ndarray], chunks: Sequence[_Chunk], batches: Sequence[np.ndarray]
    ) -> np.ndarray:
        import torch

        host: list[np.ndarray] = []
        pending: list[torch.Tensor] = []
        pending_rows = 0
        order: list[np.ndarray] = []
        with torch.inference_mode(), self._autocast():
            for batch, tensors in self.iter_batches(ids, chunks, batches):
                out = self.forward(tensors)
                if out.ndim == 1:
                    out = out[:, None]
                if out.shape[0] != len(batch):
                    raise RuntimeError(f"forward returned {out.shape[0]} rows for a batch of {len(batch)}")
                pending.append(out.float())
                order.append(batch)
                pending_rows += len(batch)
                if pending_rows >= _FLUSH_ROWS:
                    host.append(torch.cat(pending).cpu().numpy())
                    pending, pending_rows = [], 0
            if pending:
                host.append(torch.cat(pending).cpu().numpy())
        stacked = np.concatenate(host, axis=0)
        values = np.empty_like(stacked)
        values[np.concatenate(order)] = stacked
        return values
