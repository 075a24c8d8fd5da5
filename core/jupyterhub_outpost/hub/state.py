"""The spawner's state in the hub database: what a restarted hub needs to find its servers.

``get_state``/``load_state`` carry every field (versioned: ``STATE_VERSION``). The start is
committed *before* its request leaves (``_record_start``), so a hub killed during a start
knows, when it comes back, which remote server it had asked for.
"""

from __future__ import annotations

from sqlalchemy import inspect as sa_inspect
from traitlets import HasTraits

from .addresses import ServiceAddress

STATE_KEY = "outpost_spawner"
STATE_VERSION = 1


class SpawnerStateMixin(HasTraits):
    """OutpostSpawner's persistent fields and their round trip through the hub database."""

    # ------------------------------------------------------------------ runtime fields
    outpost_name = ""
    start_id = ""
    service_name = ""
    service_address: ServiceAddress | None = None
    address_source = "outpost"  # "outpost": from the start answer; "setuptunnel": delayed
    forward: dict | None = None  # {"key", "local_host", "local_port", "custom"}
    k8s_service: dict | None = None  # {"host", "port", "custom"}
    target_url = ""

    def _record_start(self) -> None:
        """Commit this spawner's state (Outpost, service name, start_id; no target yet) to the
        hub's database before the start request leaves. JupyterHub itself saves the state only
        after ``start()`` returns; without this, a hub killed during a start would come back not
        knowing the server it had asked the Outpost for."""
        orm_spawner = self.orm_spawner
        if orm_spawner is None:  # a spawner built outside a hub (unit tests)
            return
        session = sa_inspect(orm_spawner).session
        if session is None:
            return
        orm_spawner.state = self.get_state()
        try:
            session.commit()
        except Exception:
            session.rollback()
            raise

    # ------------------------------------------------------------------ state
    def get_state(self):
        state = super().get_state()
        if self.start_id:
            state[STATE_KEY] = {
                "version": STATE_VERSION,
                "outpost": self.outpost_name,
                "start_id": self.start_id,
                "service_name": self.service_name,
                "service_address": (
                    {
                        "host": self.service_address.host,
                        "port": self.service_address.port,
                        "scheme": self.service_address.scheme,
                    }
                    if self.service_address
                    else None
                ),
                "address_source": self.address_source,
                "forward": dict(self.forward) if self.forward else None,
                "k8s_service": dict(self.k8s_service) if self.k8s_service else None,
                "target_url": self.target_url,
            }
        return state

    def load_state(self, state):
        super().load_state(state)
        data = (state or {}).get(STATE_KEY)
        if not data:
            return
        version = data.get("version", 0)
        if version > STATE_VERSION:
            self.log.warning(
                "State of %s has version %s, newer than this OutpostSpawner (%s)",
                self._log_name,
                version,
                STATE_VERSION,
            )
        self.outpost_name = data.get("outpost", "")
        self.start_id = data.get("start_id", "")
        self.service_name = data.get("service_name", "")
        addr = data.get("service_address")
        self.service_address = (
            ServiceAddress(addr["host"], int(addr["port"]), addr.get("scheme", "http"))
            if addr
            else None
        )
        self.address_source = data.get("address_source", "outpost")
        self.forward = dict(data["forward"]) if data.get("forward") else None
        self.k8s_service = dict(data["k8s_service"]) if data.get("k8s_service") else None
        self.target_url = data.get("target_url", "")

    def clear_state(self):
        super().clear_state()
        self._forget()

    def _forget(self):
        self.outpost_name = ""
        self.start_id = ""
        self.service_name = ""
        self.service_address = None
        self.address_source = "outpost"
        self.forward = None
        self.k8s_service = None
        self.target_url = ""
