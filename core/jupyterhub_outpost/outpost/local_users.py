"""The user name a spawner sees (``c.JupyterHubOutpost.local_user_name``): by default
hub-qualified, so that two hubs' users of one name share no directory, pod, volume or
account, and no hub can pick a local account."""

from .errors import OutpostError
from .hooks import call_hook


async def local_user_name(option, hub: str, user: str, log) -> str | None:
    """The local name of ``hub``'s user ``user`` (``option``: a template with {user} and
    {hub}, or a hook (hub, user) -> name); None without a user (the runner's stand-in
    name is used). A hook that raises refuses the start (403); a result that is not a
    user name is the admin's error (500)."""
    if not user:
        return None
    try:
        if callable(option):
            name = await call_hook(option, hub, user)
        else:
            name = option.format(hub=hub, user=user)
    except Exception as e:
        raise OutpostError(
            403,
            f"This Outpost has no local user for {user!r} of hub {hub!r} "
            f"(c.JupyterHubOutpost.local_user_name: {e}).",
            reason="refused",
        ) from None
    if not (
        isinstance(name, str)
        and name
        and "/" not in name
        and set(name) != {"."}
        and name == name.strip()
        and name.isprintable()
    ):
        log.error("local_user_name gave %r for %r of hub %s: not a user name", name, user, hub)
        raise OutpostError(
            500,
            f"This Outpost's local_user_name gave no usable name for {user!r} of hub "
            f"{hub!r}; tell its administrator.",
        )
    return name
