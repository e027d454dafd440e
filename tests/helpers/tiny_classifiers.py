"""Tiny random classifiers built on the fly, so classifier tests never download anything.

:func:`build_tiny_bert_classifier` writes a ``BertForSequenceClassification`` folder with a
real WordPiece tokenizer (trained by ``tokenizers`` on a few lines) that
``AutoModelForSequenceClassification`` loads offline in well under a second.
:func:`build_tiny_detoxify_checkpoint` wraps such a model in Detoxify's checkpoint format
(``state_dict`` + ``config.arch.args`` pointing at the local folder + class names), which
``detoxify.Detoxify(checkpoint=...)`` loads offline.

The weights are random but seeded; ``initializer_range`` is large so that the outputs
spread over (0, 1) instead of all sitting at 0.5, which makes order and activation
mistakes visible in tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DETOXIFY_CLASSES",
    "TINY_BERT_CORPUS",
    "build_tiny_bert_classifier",
    "build_tiny_detoxify_checkpoint",
    "train_tiny_wordpiece",
]

TINY_BERT_CORPUS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Thank you for your help, have a wonderful day!",
    "You are an idiot and I hate you.",
    "Please summarise the meeting notes in three bullet points.",
    "The weather in Paris is mild in spring and hot in summer.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.",
    "A responsible AI harness measures toxicity, bias, privacy leakage and factuality.",
    "Kill the process, then restart the server and check the logs.",
)

#: Detoxify's ``original`` class names, as stored in its checkpoints (before renaming).
DETOXIFY_CLASSES: tuple[str, ...] = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")


def train_tiny_wordpiece(
    corpus: Sequence[str] = TINY_BERT_CORPUS, *, vocab_size: int = 300, max_length: int = 128
):
    """Train a lower-casing BERT-style WordPiece tokenizer and wrap it for transformers.

    Returns:
        A ``BertTokenizerFast`` with ``[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(list(corpus) * 4, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def build_tiny_bert_classifier(
    path: str | Path,
    *,
    labels: Sequence[str] = ("toxicity", "insult", "threat"),
    multi_label: bool = True,
    seed: int = 0,
    max_length: int = 128,
    hidden_size: int = 32,
    layers: int = 2,
) -> Path:
    """Write a tiny random ``BertForSequenceClassification`` + tokenizer folder at ``path``.

    Args:
        path: Folder to create (parents too).
        labels: Label names (``config.id2label``).
        multi_label: Set ``problem_type`` to ``multi_label_classification`` (sigmoid)
            rather than ``single_label_classification`` (softmax).
        seed: Torch seed for the weights.
        max_length: ``max_position_embeddings`` and the tokenizer's ``model_max_length``.
        hidden_size: Width of the encoder.
        layers: Encoder layers.

    Returns:
        The folder.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_wordpiece(max_length=max_length)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=max_length,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
        initializer_range=0.5,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_detoxify_checkpoint(
    path: str | Path, *, classes: Sequence[str] = DETOXIFY_CLASSES, seed: int = 0
) -> Path:
    """Write a Detoxify-format checkpoint of a tiny random BERT under the folder ``path``.

    ``path/base`` holds the base model's config and tokenizer (what Detoxify would fetch
    from the hub as ``bert-base-uncased``) and ``path/tiny_detoxify.ckpt`` the checkpoint
    dict: ``{"config": {"arch": {"args": {...}}, "dataset": {"args": {"classes": [...]}}},
    "state_dict": ...}``.

    Returns:
        The checkpoint file.
    """
    import torch
    from transformers import BertForSequenceClassification

    folder = Path(path)
    base = build_tiny_bert_classifier(folder / "base", labels=list(classes), multi_label=True, seed=seed)
    model = BertForSequenceClassification.from_pretrained(base)
    checkpoint = {
        "config": {
            "arch": {
                "type": "ToxicClassifier",
                "args": {
                    "model_type": str(base),
                    "model_name": "BertForSequenceClassification",
                    "tokenizer_name": "BertTokenizer",
                    "num_classes": len(classes),
                },
            },
            "dataset": {"args": {"classes": list(classes)}},
        },
        "state_dict": model.state_dict(),
    }
    out = folder / "tiny_detoxify.ckpt"
    torch.save(checkpoint, out)
    return out
