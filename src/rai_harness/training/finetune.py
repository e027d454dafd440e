"""Fine-tune the top layers of MiniLM for toxicity, reproducibly, on a CPU.

The embeddings and the lower transformer layers of all-MiniLM-L6-v2 stay frozen; the top
``layers`` transformer layers and a linear head (toxic, hate) are trained end to end with
class- and source-balanced weights. Because the lower layers never change, their output
for every training text is computed **once** and kept in memory; each epoch then runs only
the fine-tuned layers (forward and backward), which is what makes a few epochs over ~27,000
texts fit in minutes on two CPU cores.

Reproducibility: fixed seeds for torch and the batch order, deterministic torch algorithms,
a fixed thread count, batches formed from the split and the seed only. The epoch kept is the
one with the best validation score (toxic recall at the benign false-positive target on the
validation assistant-register texts, ties broken by mean per-source ROC-AUC), so the test
split plays no part in any choice.

The fine-tuned layers are rounded to the shipped dtype (float16) *before* the features for
the final calibrated head are computed, so every reported number describes the shipped files.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rai_harness.training.calibration import POLICY_TARGETS

if TYPE_CHECKING:
    import torch

    from rai_harness.classifiers.embedding import MiniLMEmbedder

__all__ = ["FineTuneConfig", "FineTuneResult", "LowerStates", "cache_lower_states", "finetune_top_layers"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneConfig:
    """Hyper-parameters of the fine-tuning (all recorded in ``metrics.json``).

    Attributes:
        layers: Top transformer layers fine-tuned (the rest and the embeddings stay frozen).
        max_tokens: Tokens per text, special tokens included (the classifier's window: 128).
        epochs: Passes over the training split; the best epoch on validation is kept.
        batch_size: Texts per optimisation step.
        lr: AdamW learning rate of the transformer layers.
        head_lr: AdamW learning rate of the linear head.
        weight_decay: AdamW weight decay (not on biases and LayerNorm).
        hate_weight: Weight of the ``hate`` loss next to ``toxic``'s 1.
        benign_fpr_target: Benign false-positive rate on validation assistant-register texts
            at which (and at twice and five times which) validation recall picks the epoch: the
            default policy's target, so the epoch kept is the best at the shipped operating point.
        shipped_dtype: Dtype the fine-tuned layers are shipped in (``float16`` or ``float32``).
        threads: torch CPU threads (fixed so results and timings do not depend on the machine).
    """

    layers: int = 3
    max_tokens: int = 128
    epochs: int = 2
    batch_size: int = 32
    lr: float = 8e-5
    head_lr: float = 1e-2
    weight_decay: float = 0.01
    hate_weight: float = 0.5
    benign_fpr_target: float = POLICY_TARGETS["default/toxic-output"]
    shipped_dtype: str = "float16"
    threads: int = 2


@dataclass
class LowerStates:
    """Hidden states after the frozen layers, one ``(tokens, dim)`` float32 tensor per text."""

    states: list[torch.Tensor]
    first_layer: int
    truncated: int
    seconds: float


@dataclass
class FineTuneResult:
    """What :func:`finetune_top_layers` returns.

    Attributes:
        state: The fine-tuned layers (``encoder.layer.N.*`` -> float32 arrays, already
            rounded through the shipped dtype).
        features: L2-normalised mean-pooled output of the fine-tuned encoder for every row,
            ``(n, dim)``, computed with the shipped weights.
        report: Config, per-epoch validation scores, the chosen epoch, timings.
    """

    state: dict[str, np.ndarray]
    features: np.ndarray
    report: dict[str, Any]


def _set_determinism(seed: int, threads: int) -> None:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def cache_lower_states(
    embedder: MiniLMEmbedder,
    texts: Sequence[str],
    first_layer: int,
    max_tokens: int,
    batch_tokens: int = 8192,
) -> LowerStates:
    """Run the frozen embeddings and layers ``[0, first_layer)`` once over every text.

    Texts are tokenised as the classifier's engine does for a text that fits one window
    (``[CLS] text [SEP]``); a longer one is cut to ``max_tokens`` (counted in ``truncated``).
    """
    import torch

    from rai_harness.classifiers.toxicity_encoder import top_layers_forward

    t0 = time.perf_counter()
    model = embedder.model
    encoded = embedder.tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]
    full = embedder.tokenizer(list(texts), truncation=False)["input_ids"]
    truncated = sum(len(f) > max_tokens for f in full)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    states: list[torch.Tensor | None] = [None] * len(texts)
    device = next(model.parameters()).device
    start = batches_done = 0
    with torch.inference_mode():
        while start < len(order):
            longest = len(encoded[order[min(len(order) - 1, start)]])
            size = max(1, batch_tokens // max(longest, 1))
            # Sorted ascending: the last text of the batch is the longest.
            idx = order[start : start + size]
            width = len(encoded[idx[-1]])
            ids = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, : len(encoded[i])] = 1
            ids, mask = ids.to(device), mask.to(device)
            hidden = model.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
            hidden = top_layers_forward(model.encoder.layer[:first_layer], hidden, mask).float().cpu()
            for row, i in enumerate(idx):
                states[i] = hidden[row, : len(encoded[i])].clone()
            start += len(idx)
            batches_done += 1
            if batches_done % 50 == 0:
                logger.info("lower layers: %d/%d texts", start, len(texts))
    done = [s for s in states if s is not None]
    return LowerStates(done, first_layer, truncated, time.perf_counter() - t0)


def _pad(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(s) for s in states)
    hidden = torch.zeros((len(states), width, states[0].shape[-1]), dtype=torch.float32)
    mask = torch.zeros((len(states), width), dtype=torch.long)
    for row, s in enumerate(states):
        hidden[row, : len(s)] = s
        mask[row, : len(s)] = 1
    return hidden, mask


def _features(layers: torch.nn.ModuleList, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    from rai_harness.classifiers.embedding import pool_hidden_states
    from rai_harness.classifiers.toxicity_encoder import top_layers_forward

    out = top_layers_forward(layers, hidden, mask)
    return F.normalize(pool_hidden_states(out, mask, "mean"), dim=-1)


def _encode_all(layers: torch.nn.ModuleList, lower: LowerStates, batch: int = 256) -> np.ndarray:
    """Features of every text (eval mode, no gradient), in input order."""
    import torch

    layers.eval()
    order = sorted(range(len(lower.states)), key=lambda i: len(lower.states[i]))
    out = np.zeros((len(order), lower.states[0].shape[-1]), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            hidden, mask = _pad([lower.states[i] for i in idx])
            out[idx] = _features(layers, hidden, mask).numpy()
    return out


def _batches(
    train_idx: np.ndarray, lengths: np.ndarray, size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Length-bucketed batches in a seeded random order (little padding, no order bias)."""
    shuffled = rng.permutation(train_idx)
    # Sort within chunks of 50 batches by length, then shuffle the batches themselves.
    chunk = size * 50
    batches: list[np.ndarray] = []
    for start in range(0, len(shuffled), chunk):
        part = shuffled[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + size] for i in range(0, len(part), size))
    return [batches[i] for i in rng.permutation(len(batches))]


#: Largest weight of one text relative to the mean: a cell of 20 texts must not count as much as
#: a corpus of thousands text for text (it would be memorised, not learned from).
MAX_RELATIVE_WEIGHT = 20.0


def _cell_weights(groups: Sequence[str], y: np.ndarray) -> np.ndarray:
    """Weights giving every (group, class) cell the same total weight, mean 1, capped.

    No text weighs more than :data:`MAX_RELATIVE_WEIGHT` times the mean (then renormalised).
    """
    cells = list(zip(groups, y.tolist(), strict=True))
    counts = Counter(cells)
    w = np.array([1.0 / counts[c] for c in cells])
    w = np.minimum(w * (len(cells) / w.sum()), MAX_RELATIVE_WEIGHT)
    out: np.ndarray = w * (len(cells) / w.sum())
    return out


def _validation_score(
    logits: np.ndarray, y: np.ndarray, sources: Sequence[str], reference: np.ndarray, target: float
) -> dict[str, float]:
    """Toxic recall at benign-FPR targets ``target``, ``2 * target`` and ``5 * target`` (and their mean), mean per-source ROC-AUC.

    The mean over three operating points is what picks the epoch: validation benign texts come in
    template clusters, so recall at one point jumps when one cluster crosses the cut.
    """
    from sklearn.metrics import roc_auc_score

    benign = np.sort(logits[reference])
    toxic = logits[y == 1]

    def recall_at(fpr: float) -> float:
        if not len(benign) or not len(toxic):
            return 0.0
        cut = benign[len(benign) - math.floor(fpr * len(benign)) - 1]
        return float((toxic > cut).mean())

    aucs = []
    src = np.asarray(sources)
    for s in sorted(set(sources)):
        m = src == s
        if 0 < y[m].sum() < m.sum():
            aucs.append(float(roc_auc_score(y[m], logits[m])))
    points = {f"recall_at_{f:g}": recall_at(f) for f in (target, 2 * target, 5 * target)}
    return {
        "recall_at_target": float(np.mean(list(points.values()))),
        **points,
        "mean_source_auc": float(np.mean(aucs)) if aucs else 0.0,
    }


def finetune_top_layers(
    embedder: MiniLMEmbedder,
    texts: Sequence[str],
    labels: np.ndarray,
    splits: Sequence[str],
    sources: Sequence[str],
    reference: np.ndarray,
    *,
    seed: int = 0,
    config: FineTuneConfig | None = None,
    weight_groups: Sequence[str] | None = None,
) -> FineTuneResult:
    """Fine-tune the top ``config.layers`` layers of ``embedder``'s encoder plus a head.

    Args:
        embedder: The bundled MiniLM (its model is not modified).
        texts: Every preprocessed text (train, validation and test).
        labels: ``(n, 2)`` int array: toxic, hate.
        splits: ``train`` / ``validation`` / ``test`` per text; only train is fitted,
            validation picks the epoch, test is only encoded.
        sources: Source per text (for the balanced weights and the per-source AUC).
        reference: Boolean mask of the benign validation assistant-register texts (the
            false-positive reference for the epoch choice).
        seed: Torch and batch-order seed.
        config: Hyper-parameters.
        weight_groups: Group per text for the balanced weights (every (group, class) cell
            weighs the same); default ``sources``.
    """
    import torch
    import torch.nn.functional as F

    config = config or FineTuneConfig()
    t_start = time.perf_counter()
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    _set_determinism(seed, config.threads)
    try:
        n_layers = len(embedder.model.encoder.layer)
        if not 1 <= config.layers <= n_layers:
            raise ValueError(f"layers must be in [1, {n_layers}], got {config.layers}")
        first = n_layers - config.layers
        lower = cache_lower_states(embedder, texts, first, config.max_tokens)
        logger.info("cached lower-layer states of %d texts in %.0f s", len(texts), lower.seconds)
        layers = torch.nn.ModuleList(
            [copy.deepcopy(embedder.model.encoder.layer[i]).float().cpu() for i in range(first, n_layers)]
        )
        dim = int(embedder.model.config.hidden_size)
        head = torch.nn.Linear(dim, labels.shape[1])
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        decay = [p for n, p in layers.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in layers.named_parameters() if p.ndim <= 1]
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "lr": config.lr, "weight_decay": config.weight_decay},
                {"params": no_decay, "lr": config.lr, "weight_decay": 0.0},
                {"params": head.parameters(), "lr": config.head_lr, "weight_decay": 0.0},
            ]
        )
        groups = list(weight_groups) if weight_groups is not None else list(sources)
        split = np.asarray(splits)
        train_idx = np.flatnonzero(split == "train")
        val_idx = np.flatnonzero(split == "validation")
        lengths = np.array([len(s) for s in lower.states])
        weights = np.stack(
            [
                _cell_weights([groups[i] for i in train_idx], labels[train_idx, j])
                for j in range(labels.shape[1])
            ],
            axis=1,
        )
        w_of = {int(i): weights[k] for k, i in enumerate(train_idx)}
        label_weight = torch.tensor([1.0, config.hate_weight][: labels.shape[1]])
        rng = np.random.default_rng(seed)
        steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
        total_steps = steps_per_epoch * config.epochs
        warmup = max(1, total_steps // 20)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: min(
                (step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup))
            ),
        )
        history: list[dict[str, Any]] = []
        best: tuple[tuple[float, float], int, dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None
        for epoch in range(config.epochs):
            t_epoch = time.perf_counter()
            layers.train()
            total = 0.0
            for step, batch in enumerate(_batches(train_idx, lengths, config.batch_size, rng)):
                hidden, mask = _pad([lower.states[i] for i in batch])
                logits = head(_features(layers, hidden, mask))
                target = torch.from_numpy(labels[batch].astype(np.float32))
                w = torch.from_numpy(np.stack([w_of[int(i)] for i in batch]).astype(np.float32))
                loss = (
                    F.binary_cross_entropy_with_logits(logits, target, reduction="none") * w * label_weight
                ).sum()
                loss = loss / len(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([*layers.parameters(), *head.parameters()], 1.0)
                optimizer.step()
                scheduler.step()
                total += float(loss.detach())
                if step % 100 == 0:
                    logger.info(
                        "epoch %d step %d/%d loss %.4f", epoch + 1, step, steps_per_epoch, total / (step + 1)
                    )
            feats = _encode_all(layers, LowerStates([lower.states[i] for i in val_idx], first, 0, 0.0))
            with torch.inference_mode():
                val_logits = head(torch.from_numpy(feats)).numpy()[:, 0]
            score = _validation_score(
                val_logits,
                labels[val_idx, 0],
                [sources[int(i)] for i in val_idx],
                reference[val_idx],
                config.benign_fpr_target,
            )
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": total / steps_per_epoch,
                    **score,
                    "seconds": round(time.perf_counter() - t_epoch, 1),
                }
            )
            logger.info("epoch %d: %s", epoch + 1, history[-1])
            key = (score["recall_at_target"], score["mean_source_auc"])
            if best is None or key > best[0]:
                best = (
                    key,
                    epoch + 1,
                    {k: v.detach().clone() for k, v in layers.state_dict().items()},
                    {k: v.detach().clone() for k, v in head.state_dict().items()},
                )
        assert best is not None
        layers.load_state_dict(best[2])
        # Round through the shipped dtype, so the features (and every number) are the shipped model's.
        dtype = getattr(torch, config.shipped_dtype)
        with torch.no_grad():
            for p in layers.parameters():
                p.copy_(p.to(dtype).float())
        state = {
            f"encoder.layer.{first + int(name.split('.', 1)[0])}.{name.split('.', 1)[1]}": v.numpy().copy()
            for name, v in layers.state_dict().items()
        }
        features = _encode_all(layers, lower)
        report = {
            "method": (
                f"top {config.layers} of {n_layers} transformer layers and a linear head (toxic, hate) trained end "
                "to end with AdamW on the train split, embeddings and lower layers frozen (their outputs cached "
                "once); (source, class)-balanced binary cross-entropy; the epoch with the best validation toxic "
                f"recall at {config.benign_fpr_target:.0%} benign assistant-register false positives is kept; the "
                "final calibrated head is then refitted on the fine-tuned features"
            ),
            "config": asdict(config),
            "seed": seed,
            "fine_tuned_layers": list(range(first, n_layers)),
            "trainable_parameters": int(sum(p.numel() for p in layers.parameters())),
            "texts": len(texts),
            "train_texts": len(train_idx),
            "texts_truncated_to_max_tokens": lower.truncated,
            "history": history,
            "chosen_epoch": best[1],
            "lower_layers_seconds": round(lower.seconds, 1),
            "seconds": round(time.perf_counter() - t_start, 1),
            "threads": config.threads,
        }
        return FineTuneResult(state, features, report)
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(deterministic_before)
