"""Go programs from the Go module proxy: ``go build`` in a pinned recipe module, cached.

One recipe (``images/kind/go/<recipe>/``) is built at a time, every program of it at low
CPU priority (``nice -n 19``; the machines are shared) and with the user's one GOCACHE,
so a package compiled for one program is not compiled again for the next, nor in the
next run. The binaries of a recipe are kept under a key of the recipe's files, the
programs' flags and the Go version (see cache.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from . import cache
from .commands import BuildError, environ, run, run_logged
from .recipe import GoProgram, programs

GO_HINT = "install Go 1.24 or later (https://go.dev/dl/) and put it on PATH"


def go_command() -> str:
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        raise BuildError(f"the go command is not on PATH: {GO_HINT}")
    return go


def go_version(go: str) -> str:
    return run([go, "env", "GOVERSION"], timeout=60).strip()


def build_argv(go: str, program: GoProgram, output: Path) -> list[str]:
    argv = [
        "nice",
        "-n",
        "19",
        go,
        "build",
        "-trimpath",
        "-buildvcs=false",
        "-mod=readonly",
        "-ldflags",
        " ".join(("-s", "-w", *program.ldflags)),
        "-o",
        str(output),
    ]
    if program.tags:
        argv += ["-tags", ",".join(program.tags)]
    return [*argv, program.package]


def module_dir(recipe: str, module: str) -> Path:
    """The unpacked source of ``module`` at the version ``recipe`` pins (downloaded from
    the Go module proxy into the module cache if needed)."""
    directory = programs(recipe)[0].directory
    out = run(
        [go_command(), "mod", "download", "-json", module],
        cwd=directory,
        env=environ(GOTOOLCHAIN="local", GOFLAGS="-mod=readonly"),
        timeout=1800,
    )
    return Path(json.loads(out)["Dir"])


def build(recipe: str, log: Path) -> dict[str, Path]:
    """The binaries of ``recipe`` (name -> path), built unless cached."""
    wanted = programs(recipe)
    if not wanted:
        raise BuildError(f"no Go programs in the recipe {recipe!r}")
    directory = wanted[0].directory
    go = go_command()
    slot = cache.Slot(
        "go",
        recipe,
        cache.key(go_version(go), [asdict(p) for p in wanted], *cache.files_under(directory)),
    )
    if not slot.exists():
        out = slot.begin()
        out.mkdir()
        for program in wanted:
            env = environ(CGO_ENABLED="1" if program.cgo else "0", GOTOOLCHAIN="local", GOFLAGS="")
            run_logged(build_argv(go, program, out / program.name), log, env=env, cwd=directory)
        slot.commit()
    return {p.name: slot.path / p.name for p in wanted}
