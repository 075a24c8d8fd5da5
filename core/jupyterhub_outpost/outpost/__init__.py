from . import lean_imports  # noqa: F401 - first: see its docstring
