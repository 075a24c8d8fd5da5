"""Running the build's programs: argv lists, no shell, errors that say what failed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path


class BuildError(RuntimeError):
    """A step of the kind build or of a cluster could not be done; the message says which
    and what the operator can do."""


def run(
    argv: list[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
    stdin: bytes | None = None,
) -> str:
    """Run ``argv`` and return its stdout; BuildError with the end of stderr on failure."""
    try:
        result = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
        )
    except FileNotFoundError as e:
        raise BuildError(f"{argv[0]} is not installed ({e})") from e
    except subprocess.TimeoutExpired as e:
        raise BuildError(f"{' '.join(argv[:4])} did not finish within {timeout:.0f} s") from e
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip()[-3000:]
        raise BuildError(f"{' '.join(argv[:4])} failed with exit code {result.returncode}: {err}")
    return result.stdout.decode(errors="replace")


def run_logged(
    argv: list[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 7200,
) -> None:
    """Run a long step with its output appended to ``log``; BuildError names the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            code = subprocess.run(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                timeout=timeout,
            ).returncode
        except FileNotFoundError as e:
            raise BuildError(f"{argv[0]} is not installed ({e})") from e
        except subprocess.TimeoutExpired as e:
            raise BuildError(f"{' '.join(argv[:4])} did not finish within {timeout:.0f} s") from e
    if code != 0:
        tail = log.read_bytes()[-3000:].decode(errors="replace")
        raise BuildError(f"{' '.join(argv[:4])} failed with exit code {code} (log {log}):\n{tail}")


def environ(**extra: str) -> dict[str, str]:
    """This process's environment with ``extra`` set."""
    return {**os.environ, **extra}
