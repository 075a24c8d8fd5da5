"""Which of a hub's spawner overrides (``misc`` of a start request) this Outpost applies.

A hub may send ``misc = {option: value}`` to change options of the configured spawner for
one server (the stock OutpostSpawner always sends a few Kubernetes ones). The admin's
``allow_override`` decides: False (the default) applies none, True all, and a hook
``(hub_name, misc)`` returns either of these or the collection of keys it allows. Of the
allowed keys only configurable options of the spawner class apply (``cmd`` yes; ``Cmd``,
``spawner_class``, ``api_token``, ``user`` never).

What is not applied is dropped, not refused: the start goes on with the Outpost's own
configuration, the dropped keys are logged, and the hub is told in the start's progress
events. This is how the original Outpost behaves towards hubs (it ignores what it does
not apply), while "deny" stays the default for what is applied.
"""

from collections.abc import Iterable

from .hooks import call_hook


async def allowed_keys(policy, hub: str, misc: dict) -> set[str]:
    """The misc keys the admin's ``allow_override`` lets ``hub`` set."""
    decision = await call_hook(policy, hub, misc) if callable(policy) else policy
    if isinstance(decision, bool) or decision is None:
        return set(misc) if decision else set()
    if isinstance(decision, (str, bytes)) or not isinstance(decision, Iterable):
        raise TypeError(
            "c.JupyterHubOutpost.allow_override must return True, False or a collection of "
            f"option names, not {type(decision).__name__}"
        )
    return set(misc) & {str(key) for key in decision}


async def split_overrides(policy, hub: str, misc: dict, spawner_class: type):
    """``(applied, dropped)``: the overrides to set on the spawner, and the sorted names of
    the keys that are not applied (not allowed, or not an option of ``spawner_class``)."""
    if not misc:
        return {}, []
    configurable = set(spawner_class.class_trait_names(config=True))
    keep = await allowed_keys(policy, hub, misc) & configurable
    applied = {key: value for key, value in misc.items() if key in keep}
    return applied, sorted(set(misc) - keep)


def dropped_event(dropped: list[str]) -> dict:
    """The progress event that tells the hub (and its user) which overrides were dropped."""
    names = ", ".join(dropped)
    return {
        "progress": 10,
        "message": (
            f"The Outpost did not apply these spawner overrides (misc): {names}. Its own "
            "configuration is used for them (its administrator decides with "
            "c.JupyterHubOutpost.allow_override; only options of its spawner apply)."
        ),
        "dropped_overrides": list(dropped),
    }
