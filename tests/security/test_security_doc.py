"""docs/security.md maps every property to its test: each test it names exists."""

import glob
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
# `outpost/test_x.py::test_name`, `::test_name` (same file as the reference before it),
# `security/test_x.py` (a whole file), `e2e/test_*::test_name` (every file of a glob)
REFERENCE = re.compile(r"`((?:[\w*]+/)*test_[\w*]+(?:\.py)?)?(?:::(test_\w+))?`")


def references() -> list[tuple[str, str | None]]:
    found = []
    for line in DOC.read_text().splitlines():
        current = None
        for match in REFERENCE.finditer(line):
            path, name = match.groups()
            if path is None and name is None:
                continue
            if path is not None:
                current = path
            assert current is not None, f"`::{name}` without a file before it: {line}"
            found.append((current, name))
    return found


def test_every_test_named_in_the_security_page_exists():
    refs = references()
    assert len(refs) > 100, "the page's references were not found: the test proves nothing"
    missing = []
    for path, name in refs:
        pattern = str(ROOT / "tests" / path) + ("" if path.endswith(".py") else ".py")
        files = glob.glob(pattern)
        if not files:
            missing.append(f"{path} (no such file)")
            continue
        if name and not any(
            re.search(rf"^(async )?def {name}\(", Path(f).read_text(), re.M) for f in files
        ):
            missing.append(f"{path}::{name}")
    assert not missing, "docs/security.md names tests that do not exist:\n" + "\n".join(missing)
