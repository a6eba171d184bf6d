"""docs/conventions.md names, for each convention, the test that holds it: every test it names exists, in the file
its letter stands for, so the table cannot point at a test that was renamed or removed."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "conventions.md"


def test_every_test_the_conventions_table_names_exists():
    text = DOC.read_text()
    files = dict(re.findall(r"\b([A-Z]) = `(tests/test_\w+\.py)`", text))
    assert len(files) >= 8, files
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method or scope")]
    assert len(rows) >= 30
    named = 0
    for row in rows:
        test_cell = row.rstrip(" |").rsplit(" | ", 1)[-1]
        current = None
        for token in re.findall(r"\b([A-Z])\b (?=`)|`(test_\w+)(?:\[[^\]]*\])?`", test_cell):
            letter, name = token
            if letter:
                current = files[letter]
                continue
            assert current, f"{row[:60]}...: test {name} without a file letter before it"
            source = (REPO / current).read_text()
            assert re.search(rf"^def {name}\(", source, re.M), f"{name} is not a test in {current}"
            named += 1
    assert named >= 30
