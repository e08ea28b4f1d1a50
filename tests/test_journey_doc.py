"""docs/journey.md names the file of every stage; a moved module must not leave it pointing nowhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_file_the_journey_names_exists() -> None:
    text = (ROOT / "docs" / "journey.md").read_text()
    named = set(re.findall(r"`([\w/.-]+\.py)`", text))
    assert len(named) > 20
    missing = [
        p
        for p in sorted(named)
        if not (ROOT / "src" / "msgr_bridge" / p).exists() and not (ROOT / p).exists()
    ]
    assert not missing, f"docs/journey.md names files that do not exist: {missing}"
