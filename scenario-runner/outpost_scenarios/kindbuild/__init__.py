"""Kind clusters built on this machine: for now, the project's Docker engine (docs/kind.md).

- ``Engine``: start, stop and check the project's dockerd (``--iptables=false``, the runc
  wrapper as default runtime); ``Engine().env()`` has DOCKER_HOST for its clients.
"""

from .commands import BuildError
from .engine import Engine, EngineError

__all__ = ["BuildError", "Engine", "EngineError"]
