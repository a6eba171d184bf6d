"""Writes the per-language task files of the SIB-200 and tweet-sentiment families (one small YAML per language
that includes the family's `_base.yaml`), with each file's sha256 from the data folder's SHA256SUMS.

    python -m tasks.generate_language_tasks <data directory>/SHA256SUMS
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
FAMILIES = {  # folder -> (base file, task-name prefix, data subdir, upstream prefix, files per language)
    "sib200": ("_sib200.yaml", "sib200", "sib200", "data/annotated", ["train.tsv", "dev.tsv", "test.tsv"]),
    "tweet_sentiment": ("_tweet_sentiment.yaml", "tweet_sentiment", "tweet_sentiment_multilingual", "data/sentiment",
                        [f"{s}_{k}.txt" for s in ("train", "val", "test") for k in ("text", "labels")]),
}


def checksums(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        out[name.removeprefix("./")] = digest
    return out


def kept_lines(path: Path) -> list[str]:
    """What an existing file adds after its generated part (e.g. a `known_overlap:` declaration), kept as is."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    files = [i for i, line in enumerate(lines) if line.startswith("    ")]
    return lines[files[-1] + 1:] if files else []


def main(sums_file: str) -> None:
    sums = checksums(Path(sums_file))
    for folder, (base, prefix, subdir, upstream, files) in FAMILIES.items():
        languages = sorted({name.split("/")[1] for name in sums
                            if name.startswith(subdir + "/") and name.count("/") == 2})
        for lang in languages:
            lines = [f"include: {base}", f"name: {prefix}_{lang.lower()}", f"language: {lang}", "data:", "  files:"]
            lines += [f"    {lang}/{f}: {{upstream: {upstream}/{lang}/{f}, sha256: {sums[f'{subdir}/{lang}/{f}']}}}"
                      for f in files]
            path = HERE / folder / f"{lang}.yaml"
            path.write_text("\n".join(lines + kept_lines(path)) + "\n")
        print(f"{folder}: {len(languages)} languages")


if __name__ == "__main__":
    main(sys.argv[1])
