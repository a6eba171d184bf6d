"""A task's prepared data as `scd prepare` wrote it: splits as JSON lines, the shared tokenizer, the manifest."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from scd.data import Encoded, encode, read_jsonl
from scd.tokenizer import load_tokenizer
from tasks import Task, get_task


@dataclass
class Prepared:
    """A task's prepared splits and tokenizer, as `scd prepare` wrote them."""
    task: Task
    dir: Path
    tokenizer: object
    manifest: dict

    @classmethod
    def open(cls, data_dir: str | Path) -> "Prepared":
        data_dir = Path(data_dir)
        manifest_path = data_dir / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{data_dir} holds no prepared data (no manifest.json); run `scd prepare` first")
        manifest = json.loads(manifest_path.read_text())
        task = get_task(manifest["task"])
        task = replace(task, max_length=manifest.get("max_length", task.max_length))  # as prepared
        tokenizer = load_tokenizer(data_dir / "tokenizer")
        # how every stage encodes prompts (scd/data.py encode), as `scd prepare` resolved it
        tokenizer.prompt_format = manifest.get("prompt_format", "plain")
        return cls(task, data_dir, tokenizer, manifest)

    def rows(self, split: str) -> list[dict]:
        return read_jsonl(self.dir / f"{split}.jsonl")

    def encoded(self, split: str) -> list[Encoded]:
        return encode(self.rows(split), self.tokenizer, self.task.max_length)
