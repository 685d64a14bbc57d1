"""Shared by the benchmark scripts: write a result dict as JSON under ``benchmarks/results/``."""
from __future__ import annotations

import json
from pathlib import Path


def save_json(path, result) -> Path:
    """Write ``result`` as indented JSON to ``path`` (parents created) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"saved {out}")
    return out
