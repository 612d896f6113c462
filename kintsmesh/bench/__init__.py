"""Benchmarks: commands that print a table and write ``bench/results/<stage>.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kintsmesh.settings import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"


def write_result(stage: str, result: dict[str, Any], path: Path | None = None) -> Path:
    """Write a run's figures to ``bench/results/<stage>.json`` (or ``path``) and say where."""
    out = path or RESULTS / f"{stage}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  written to {out}")
    return out
