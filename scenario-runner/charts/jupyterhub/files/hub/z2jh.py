"""The values of this Helm release, for jupyterhub_config.py and hub.extraConfig snippets.

The same functions zero-to-jupyterhub's hub offers (``from z2jh import get_config``), so
that snippets written for z2jh run here. Everything is read from the files the chart
mounts next to this module: ``secret/`` (the Secret ``hub``: ``values.yaml`` and the
generated secrets) and ``config/`` (the ConfigMap ``hub``: resource names).
"""

from __future__ import annotations

import copy
import os
from functools import cache

import yaml

HERE = os.path.dirname(os.path.realpath(__file__))
_UNSET = object()


@cache
def _values() -> dict:
    with open(os.path.join(HERE, "secret", "values.yaml")) as f:
        return yaml.safe_load(f) or {}


def _read(folder: str, key: str) -> str:
    path = os.path.join(HERE, folder, key)
    if not os.path.exists(path):
        raise KeyError(f"{path} not found: the chart mounts no such {folder} key")
    with open(path) as f:
        return f.read()


def get_config(key: str, default=None):
    """The value at a dotted path of the release's values (``"hub.db.type"``); ``default``
    when a level is missing or not a mapping. Mappings and lists come back as copies, so
    changing them changes nothing for the next caller."""
    value = _values()
    for level in key.split("."):
        if not isinstance(value, dict) or level not in value:
            return default
        value = value[level]
    return copy.deepcopy(value)


def get_secret_value(key: str, default=_UNSET) -> str:
    """A key of the Secret ``hub`` (e.g. ``hub.services.<name>.apiToken``)."""
    try:
        return _read("secret", key)
    except KeyError:
        if default is _UNSET:
            raise
        return default


def get_name(name: str) -> str:
    """The resource name of a component (``hub``, ``proxy-api``, ``proxy-public``)."""
    return _read("config", name)


def get_name_env(name: str, suffix: str = "") -> str:
    """An environment variable Kubernetes sets for a Service, e.g.
    ``get_name_env("hub", "_SERVICE_PORT")`` reads ``HUB_SERVICE_PORT``."""
    return os.environ[(get_name(name) + suffix).upper().replace("-", "_")]


def set_config_if_not_none(section, trait: str, key: str) -> None:
    """``section.<trait> = get_config(key)`` unless that value is missing or null."""
    value = get_config(key)
    if value is not None:
        setattr(section, trait, value)
