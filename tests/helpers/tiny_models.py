"""Tiny random models built on the fly, so tests never download anything.

:func:`build_tiny_gpt2` writes a causal LM folder (``config.json``, ``model.safetensors``,
tokenizer files with a chat template) that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load offline in well under a second. The weights are
random, so the text is gibberish, but it is deterministic for a given seed and the
shapes, padding and special tokens behave like a real model's.

:func:`train_tiny_tokenizer` is the reusable part (a ByteLevel BPE tokenizer trained by
the ``tokenizers`` library on a few sentences), for other tiny models (a BERT-style
classifier, say) that need a real tokenizer too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "TINY_CHAT_TEMPLATE",
    "TINY_CORPUS",
    "build_tiny_gpt2",
    "train_tiny_tokenizer",
]

#: Sentences the tiny tokenizers are trained on: varied enough to learn a few hundred merges.
TINY_CORPUS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "A responsible AI harness measures bias, toxicity, privacy leakage and factuality.",
    "Latency, time to first token and cost are measured next to the quality scores.",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "Please answer the question politely and say when you do not know.",
    "The nurse said that she would be late; the engineer said that he would be early.",
    "My phone number is 555-0100 and my email is jane.doe@example.com.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Once upon a time there was a small model that learned to write short stories.",
    "user: hello there! assistant: hello, how can I help you today?",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20.",
    "Evaluation suites group prompts by topic, language and demographic attribute.",
)

#: A minimal ChatML-like template: one line per turn, then the assistant tag when asked.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def train_tiny_tokenizer(
    *,
    vocab_size: int = 1024,
    special_tokens: Sequence[str] = ("<|endoftext|>", "<|pad|>"),
    corpus: Sequence[str] = TINY_CORPUS,
    byte_level: bool = True,
):  # -> transformers.PreTrainedTokenizerFast (untyped: transformers is imported lazily)
    """Train a small BPE tokenizer with ``tokenizers`` and wrap it for ``transformers``.

    Args:
        vocab_size: Target vocabulary size (the real one can be smaller: few merges exist
            in a few sentences; ByteLevel starts from the 256 byte symbols).
        special_tokens: Added first, so they get the lowest ids (0, 1, ...).
        corpus: Training sentences (repeated internally to weigh the counts).
        byte_level: ByteLevel pre-tokenizer and decoder (GPT-2 style); ``False`` gives a
            whitespace-split BPE, closer to what a BERT-style model expects.

    Returns:
        A ``PreTrainedTokenizerFast`` without special-token roles; the caller sets them.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if byte_level:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        alphabet = []
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    # Repeating the corpus makes rare pairs frequent enough to be merged.
    tok.train_from_iterator(list(corpus) * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def build_tiny_gpt2(
    path: str | Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    n_positions: int = 512,
    seed: int = 0,
    initializer_range: float = 0.2,
) -> Path:
    """Write a tiny random GPT-2 causal LM with a chat-templated tokenizer into ``path``.

    Args:
        path: Folder to create (or fill); it ends up loadable with ``from_pretrained``.
        n_layer: Transformer blocks.
        n_embd: Hidden size.
        n_head: Attention heads (must divide ``n_embd``).
        n_positions: Context length in tokens.
        seed: Seed of the random weights (same seed, same model, same outputs).
        initializer_range: Std of the random weights; larger than GPT-2's 0.02 so the
            next-token distribution is peaked and greedy decoding has no near-ties that
            padding's rounding differences could flip.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_tokenizer()
    tokenizer.eos_token = "<|endoftext|>"
    tokenizer.bos_token = "<|endoftext|>"
    tokenizer.pad_token = "<|pad|>"
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # fork_rng: seeding must not leak into the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_llama_gguf(path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random Llama model as an fp32 GGUF file with a BPE tokenizer inside.

    It has the layout of the embedded SmolLM2 GGUF (``llama`` architecture, ``gpt2``
    tokenizer model, ChatML-free chat template), so ``transformers`` loads it with
    ``from_pretrained(folder, gguf_file=name)`` through the same code path, in a second.

    Args:
        path: The ``.gguf`` file to write (its folder is created).
        seed: Seed of the random weights.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import json

    import gguf
    import numpy as np

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    hf_tokenizer = train_tiny_tokenizer()
    backend = hf_tokenizer.backend_tokenizer
    vocab = backend.get_vocab()
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    merges = [
        m if isinstance(m, str) else " ".join(m) for m in json.loads(backend.to_str())["model"]["merges"]
    ]
    special = {"<|endoftext|>", "<|pad|>"}
    # GGUF token types: 1 normal, 3 control (special tokens).
    token_types = [3 if t in special else 1 for t in tokens]
    n_embd, n_ff, n_layer, n_head, n_kv = 32, 64, 2, 4, 2
    head_dim = n_embd // n_head
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(256)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab["<|endoftext|>"])
    writer.add_eos_token_id(vocab["<|endoftext|>"])
    writer.add_pad_token_id(vocab["<|pad|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(TINY_CHAT_TEMPLATE)
    rng = np.random.default_rng(seed)

    def weight(*shape: int, std: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    # numpy shapes are (out_features, in_features), as in torch; GGUFWriter reverses them.
    writer.add_tensor("token_embd.weight", weight(len(tokens), n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(n_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(n_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
