"""One tokenizer per task, trained locally and deterministically on the task's training text, shared by teacher
and student. Character-level for the synthetic task, byte-level BPE for natural language."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

if TYPE_CHECKING:  # transformers is imported where a tokenizer is made: listings import this module too
    from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIALS = [PAD, EOS, UNK]


def train_tokenizer(kind: str, texts: list[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    if kind == "char":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
        tok.decoder = decoders.Fuse()
        trainer = trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; use 'char' or 'bpe'")
    # Sorted input: training depends on text order only through ties, and sorting pins it.
    tok.train_from_iterator(sorted(texts), trainer=trainer)
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)


def load_tokenizer(path: str | Path, gguf_file: str | None = None) -> PreTrainedTokenizerFast:
    """A saved tokenizer directory, a pretrained model's directory or hub id, or a GGUF file inside a directory."""
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, **kwargs)
    if tok.pad_token is None:  # pretrained causal LMs often ship without one
        tok.pad_token = tok.eos_token
    return tok
