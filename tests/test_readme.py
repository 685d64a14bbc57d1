"""The README's module table matches the code: every public module and subpackage of onthefly is in it, and every
module it names exists."""
from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import onthefly

ROOT = Path(__file__).resolve().parents[1]


def _table_modules() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## What is there", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| `onthefly")]
    return {m for ln in rows for m in re.findall(r"`(onthefly(?:\.\w+)*)`", ln.split("|")[1])}


def test_readme_module_table_matches_the_package():
    named = _table_modules()
    public = {f"onthefly.{m.name}" for m in pkgutil.iter_modules(onthefly.__path__) if not m.name.startswith("_")}
    assert public - named == set(), f"modules missing from the README table: {sorted(public - named)}"
    for name in named:
        importlib.import_module(name)  # every module the table names exists
