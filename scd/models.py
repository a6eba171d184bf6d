"""Teacher and student models. One code path for a Llama built from a config (the embedded default), a local
model directory, a Hugging Face model id, or a GGUF file: real models are a config change."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel

ARCH_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size")


def build_model(spec: dict, tokenizer, max_length: int, seed: int) -> PreTrainedModel:
    """A fresh model for SFT: pretrained weights if `spec['pretrained']` is set, else a seeded random Llama."""
    if spec.get("pretrained"):
        return load_pretrained(spec["pretrained"], gguf_file=spec.get("gguf_file"),
                               trust_remote_code=spec.get("trust_remote_code", False))
    arch = {k: spec[k] for k in ARCH_KEYS if k in spec}
    missing = {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"} - set(arch)
    if missing:
        raise ValueError(f"model spec needs either `pretrained` or the sizes {sorted(missing)}")
    config = LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=max(max_length, 16),
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True, attention_dropout=0.0, **arch,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_pretrained(name_or_path: str | Path, gguf_file: str | None = None,
                    trust_remote_code: bool = False) -> PreTrainedModel:
    """Load weights from a directory we saved (safetensors), a hub id, or a GGUF file inside a directory."""
    kwargs = {"trust_remote_code": trust_remote_code, "dtype": torch.float32}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    else:
        kwargs["use_safetensors"] = True if Path(str(name_or_path)).is_dir() else None
    return AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)


def count_parameters(model: torch.nn.Module) -> int:
    # Tied embeddings are one tensor: count unique storages.
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
