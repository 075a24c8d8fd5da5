"""The product stays in small modules: none over 600 lines, and docs/internals.md names
every one of them (its package map is where a reader finds a module's job)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = REPO / "core" / "jupyterhub_outpost"
MODULES = sorted(
    p for p in PRODUCT.rglob("*.py") if "alembic" not in p.parts and p.name != "__init__.py"
)
MAX_LINES = 600


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PRODUCT)))
def test_product_module_is_at_most_600_lines(module):
    lines = len(module.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"{module.relative_to(REPO)} has {lines} lines: split it by concern (docs/internals.md)"
    )


def test_internals_names_every_product_module():
    text = (REPO / "docs" / "internals.md").read_text()
    missing = [
        str(m.relative_to(PRODUCT)) for m in MODULES if str(m.relative_to(PRODUCT)) not in text
    ]
    assert not missing, f"docs/internals.md does not name: {missing}"
