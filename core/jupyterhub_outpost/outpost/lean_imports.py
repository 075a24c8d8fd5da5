"""Two libraries the Outpost imports, imported without optional libraries that they would
load for features the Outpost never uses (imported first, from the package's
``__init__``; docs/performance.md: memory).

- jsonschema registers, at import, a format checker for each optional format library it
  finds (jupyterhub installs them with jsonschema[format-nongpl]): ~18 MB kept for good
  (rfc3987_syntax alone builds a parser of its grammar), for format checks the Outpost
  never runs: its validators (schema.py) check no "format".
- mako, which alembic imports (through jupyterhub.orm) for writing migration scripts,
  loads pygments at import to highlight its HTML error pages: ~5 MB.

Each is hidden from that one import only (``sys.modules[name] = None`` makes importing
it raise ImportError, which both libraries expect); any later import of it works.
"""

import contextlib
import sys

JSONSCHEMA_FORMAT_LIBRARIES = (
    "fqdn",
    "isoduration",
    "jsonpointer",
    "rfc3339_validator",
    "rfc3986_validator",
    "rfc3987",
    "rfc3987_syntax",
    "uri_template",
    "webcolors",
)


@contextlib.contextmanager
def hidden(names):
    """Imports inside this block find none of ``names`` (unless already imported)."""
    hide = [name for name in names if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hide))
    try:
        yield
    finally:
        for name in hide:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


with hidden(JSONSCHEMA_FORMAT_LIBRARIES):
    import jsonschema  # noqa: F401
with hidden(["pygments"]):
    import mako.exceptions  # noqa: F401
