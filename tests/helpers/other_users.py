"""Files for processes that a test starts as another system user (e.g. a server as ``nobody``).

The checkout may sit in a directory that only its owner can enter: a clone in ``/root``,
or in any ``mktemp -d`` (mode 0700). A process running as another user cannot read a file
from there, so a test hands it a copy in a fresh directory that everyone can enter
(mode 0755, under the system's temp directory), removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def unreachable_reason(path: str | os.PathLike) -> str | None:
    """Why a user other than the owner cannot read ``path``, or None when it can."""
    path = Path(path).resolve()
    for directory in reversed(path.parents):
        mode = os.stat(directory).st_mode
        if not mode & stat.S_IXOTH:
            return f"other users cannot enter {directory} (mode {stat.filemode(mode)})"
    if not os.stat(path).st_mode & stat.S_IROTH:
        return f"other users cannot read {path}"
    return None


@contextlib.contextmanager
def shared_copy(source: str | os.PathLike) -> Iterator[Path]:
    """A copy of ``source`` (mode 0644) in a new 0755 directory under the temp directory.

    Raises RuntimeError naming the directory when other users still cannot reach the copy
    (a private ``TMPDIR``).
    """
    directory = tempfile.mkdtemp(prefix="outpost-shared-")  # made 0700
    try:
        os.chmod(directory, 0o755)
        copy = Path(directory) / Path(source).name
        shutil.copyfile(source, copy)
        os.chmod(copy, 0o644)
        reason = unreachable_reason(copy)
        if reason:
            raise RuntimeError(f"a copy for another user is not readable: {reason}; set TMPDIR")
        yield copy
    finally:
        shutil.rmtree(directory, ignore_errors=True)
