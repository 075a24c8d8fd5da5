"""Run the tunnel daemon as a JupyterHub managed service (started and stopped with the hub).

::

    from jupyterhub_outpost.hub import tunnel_daemon_service
    c.JupyterHub.services = [tunnel_daemon_service(ssh_key="/srv/jupyterhub/outpost_ed25519")]

The daemon and the OutpostSpawner share one token: $OUTPOST_TUNNEL_API_TOKEN in the hub's
environment (the spawner's default for ``tunnel_api_token``), passed on to the daemon.
For external tunneling run ``jupyterhub-outpost tunnels`` elsewhere instead and set only
``c.OutpostSpawner.tunnel_api_url`` and ``tunnel_api_token``.
"""

from __future__ import annotations

import os
import sys


def tunnel_daemon_service(
    *,
    ssh_key: str,
    state_file: str = "outpost-tunnels.json",
    token: str | None = None,
    api_ip: str = "127.0.0.1",
    api_port: int = 8765,
    forward_ip: str = "127.0.0.1",
    log_level: str = "INFO",
    name: str = "outpost-tunnels",
    extra_args: list[str] | None = None,
) -> dict:
    """The ``c.JupyterHub.services`` entry that runs ``jupyterhub-outpost tunnels``.

    ``ssh_key`` is the hub's private key (its public half is in every Outpost's
    ``ssh_authorized_keys``); ``state_file`` keeps the forward table across restarts of
    the daemon. ``token`` defaults to $OUTPOST_TUNNEL_API_TOKEN; a missing token is an
    error here rather than an unauthenticated daemon later. Set
    ``c.OutpostSpawner.tunnel_api_url`` to ``http://<api_ip>:<api_port>`` when you change them.
    """
    token = token if token is not None else os.environ.get("OUTPOST_TUNNEL_API_TOKEN", "")
    if not token:
        raise ValueError(
            "tunnel_daemon_service needs a token: set OUTPOST_TUNNEL_API_TOKEN in the hub's "
            "environment (e.g. `openssl rand -hex 32`) or pass token=..."
        )
    command = [
        sys.executable,
        "-m",
        "jupyterhub_outpost",
        "tunnels",
        "--api-ip",
        api_ip,
        "--api-port",
        str(int(api_port)),
        "--forward-ip",
        forward_ip,
        "--ssh-key",
        ssh_key,
        "--state-file",
        state_file,
        "--log-level",
        log_level,
    ]
    command += list(extra_args or [])
    return {
        "name": name,
        "command": command,
        "environment": {"OUTPOST_TUNNEL_API_TOKEN": token},
        "display": False,
    }
