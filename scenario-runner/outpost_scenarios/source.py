"""The source checkout the runner works from: charts/, images/ and scenarios/ are not in
any Python package, so kind mode and the image builds need the repository itself."""

from __future__ import annotations

import os
from pathlib import Path


def source_root() -> Path:
    """``$OUTPOST_SOURCE_DIR``, else the checkout this (editable) package lives in."""
    configured = os.environ.get("OUTPOST_SOURCE_DIR")
    root = Path(configured) if configured else Path(__file__).resolve().parents[2]
    if not (root / "charts").is_dir() or not (root / "images").is_dir():
        raise FileNotFoundError(
            f"{root} is not a jupyterhub-outpost source checkout (no charts/ and images/): "
            "install the scenario runner editable from the checkout (make runner) or set "
            "OUTPOST_SOURCE_DIR"
        )
    return root
