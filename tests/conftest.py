import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real task data: $SCD_DATA_DIR, else ../shared/data beside the clone (as in CI)."""
    path = Path(os.environ.get("SCD_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (path / "pubmedqa").is_dir():
        pytest.skip(f"task data not found at {path}; set SCD_DATA_DIR")
    return path
