"""docs/ARCHITECTURE.md names every module of helpers/, and every module it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def documented() -> set[str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    return set(re.findall(r"`(helpers/[\w/]+\.py)`", text))


def modules() -> set[str]:
    return {path.relative_to(ROOT).as_posix() for path in (ROOT / "helpers").rglob("*.py")}


def test_every_module_named_in_the_architecture_exists():
    missing = sorted(documented() - modules())
    assert not missing, f"docs/ARCHITECTURE.md names modules that do not exist: {missing}"


def test_every_module_is_named_in_the_architecture():
    undocumented = sorted(modules() - documented())
    assert not undocumented, f"add these modules to the table in docs/ARCHITECTURE.md: {undocumented}"
