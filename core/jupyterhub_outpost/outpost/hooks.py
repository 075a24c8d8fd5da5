"""Calling the admin's hooks: a hook may be a plain function or a coroutine function."""

import inspect
from urllib.parse import urlparse


async def call_hook(hook, *args):
    """Call ``hook(*args)`` and await the result when it is awaitable."""
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def decide(option, *args) -> bool:
    """A Bool option's value, or what its hook returns for ``args``."""
    return bool(await call_hook(option, *args) if callable(option) else option)


def default_sanitize_start_response(spawner, response) -> str:
    """Turn what ``Spawner.start()`` returned into ``"host:port"``.

    ``start()`` returns a URL (``"http://10.0.0.5:8888"``) or an ``(ip, port)`` tuple;
    an empty or missing answer stays ``""`` (delayed tunneling). A URL without a port
    gets the scheme's default (80/443). IPv6 hosts are written in brackets.
    """
    if not response:
        return ""
    if isinstance(response, (tuple, list)):
        host, port = response[0], int(response[1])
    else:
        text_value = str(response)
        if "://" not in text_value:
            text_value = "http://" + text_value
        parsed = urlparse(text_value)
        host = parsed.hostname or ""
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = host or "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def default_allow_override(hub_name: str, misc: dict) -> bool:
    """Refuse every override: a hub may not change this Outpost's spawner options."""
    return False
