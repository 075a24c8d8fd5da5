"""What an Outpost keeps in memory: no import it never uses, nothing per running server
that only its start needed (docs/performance.md: memory against the original)."""

import subprocess
import sys

from .support import fetch_or_none, start_body, wait_for

UNUSED = ("rfc3987_syntax", "isoduration", "webcolors", "uri_template", "pygments")


def test_the_outpost_imports_no_library_it_never_uses_yet_they_stay_importable():
    """jsonschema's format libraries, and pygments for mako's error pages (lean_imports)."""
    code = f"""
import sys
import jupyterhub_outpost.outpost.app
from jupyterhub_outpost.outpost.schema import validate
validate("StartRequest", {{"name": "a"}})
print(sorted(set({UNUSED!r}) & set(sys.modules)))
import rfc3987_syntax, isoduration, pygments  # another user in the process gets them
print("importable")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split("\n")[:2] == ["[]", "importable"], done.stderr


async def test_a_running_servers_spawner_keeps_no_start_task(outpost):
    code, data = await outpost.api.call("POST", "/services", body=start_body("a"))
    assert code == 200, data
    await wait_for(lambda: fetch_or_none(data["service"]), "a answers")
    manager = outpost.app.manager
    live = manager._spawners[manager._running[("hub1", "a")]]
    assert live.start_future is None and live.spawner._spawn_future is None
    assert await outpost.api.call("GET", "/services/a") == (200, {"status": None})
