"""Cached build products: a failed build's left-overs are removed without reaching into
what is still mounted below them (debootstrap mounts /proc in the tree it builds)."""

from __future__ import annotations

import os
import subprocess

import pytest
from outpost_scenarios.kindbuild import cache


def test_a_product_is_visible_only_once_committed(tmp_path):
    slot = cache.Slot("go", "demo", cache.key("inputs"), root=tmp_path)
    out = slot.begin()
    out.mkdir()
    (out / "program").write_text("x")
    assert not slot.exists()
    assert (slot.commit() / "program").read_text() == "x"
    assert slot.exists()


def test_keys_change_with_file_contents(tmp_path):
    path = tmp_path / "go.mod"
    path.write_text("module a\n")
    before = cache.key("go1.26", path)
    path.write_text("module b\n")
    assert cache.key("go1.26", path) != before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount")
def test_discarding_a_partial_tree_unmounts_what_is_mounted_in_it_first(tmp_path):
    slot = cache.Slot("rootfs", "demo", cache.key("x"), root=tmp_path)
    tree = slot.begin()
    proc = tree / "proc"
    proc.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(proc)], check=True)
    (proc / "keep").write_text("a file of the mounted filesystem")

    slot.discard()

    assert not tree.exists()
    assert cache.mounts_under(tmp_path) == []
