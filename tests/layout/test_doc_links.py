"""The documentation links only inside the repository, and every such link resolves."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "scenarios").glob("*/README.md")]
)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def local_links(page: Path) -> list[str]:
    links = [m.group(1).split("#")[0] for m in LINK.finditer(page.read_text())]
    return [link for link in links if link and "://" not in link and not link.startswith("mailto:")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve_inside_the_repository(page):
    for link in local_links(page):
        target = (page.parent / link).resolve()
        assert target.is_relative_to(REPO), f"{link} leaves the repository"
        assert target.exists(), f"{link} does not exist"


def test_internals_names_no_file_outside_the_repository():
    text = (REPO / "docs" / "internals.md").read_text()
    assert "../shared" not in text and "ARCHITECTURE.md" not in text
