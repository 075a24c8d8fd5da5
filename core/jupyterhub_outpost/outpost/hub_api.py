"""Where the Outpost may call a hub: URLs built from the Outpost's own configuration.

The Outpost calls a hub for three things: progress events of a starting server, its flavor
usage, and tunnel re-creation after a restart. Every URL is built here from that hub's entry
of ``c.JupyterHubOutpost.hub_api`` (its API URL, checked to be http(s) when the entry is
loaded) and names checked or percent-encoded here; a URL sent in a start request
(``JUPYTERHUB_EVENTS_URL`` and friends) is never called. A hub without an entry gets no call
at all: its starts still work, without progress events, flavor updates or tunnel
re-creation (logged once per hub).

An entry::

    {"url": "https://hub.example.org/hub/api",  # the hub's API as this Outpost reaches it
     "outpost_name": "site",                     # the name that hub gives this Outpost
     "flavors_update_token": "...",              # optional (see ``flavors_token``)
     "layout": "outpost"}                        # or "outpostspawner" (see LAYOUTS)
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from traitlets import Dict, HasTraits, Unicode, Union, observe

from .credentials import CredentialsError, FileBackedMapping
from .errors import StartupError

OUTPOST_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")  # the hub side's rule for Outpost names
ENTRY_KEYS = {"url", "outpost_name", "flavors_update_token", "layout"}


def _ours(kind: str, user: str, server: str) -> str:
    return f"outpost/{kind}/{_segment(user)}/{_segment(server) if server else '_default'}"


def _stock(kind: str, user: str, server: str) -> str:
    base = {"events": "users/progress/events", "setuptunnel": "users/setuptunnel"}[kind]
    return f"{base}/{_segment(user)}" + (f"/{_segment(server)}" if server else "")


# path of each call below the hub's API URL, per hub implementation
LAYOUTS = {
    # this project's OutpostSpawner (jupyterhub_outpost.hub.outpost_handlers)
    "outpost": {"server": _ours, "flavors": "outpost/flavors/{outpost}"},
    # the stock jupyterhub-outpostspawner's API handlers
    "outpostspawner": {"server": _stock, "flavors": "outpostflavors/{outpost}"},
}


class HubAPIError(ValueError):
    """An entry of ``hub_api`` is malformed; the message names the hub and the key."""


def _segment(name: str) -> str:
    """One path segment: percent-encoded, and never "." or ".." (which a server or proxy
    would resolve to another path)."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if set(name) <= {"."} else encoded


@dataclass(frozen=True)
class HubEndpoints:
    """One hub's entry after validation."""

    hub: str
    url: str
    outpost_name: str = ""
    flavors_update_token: str = field(default="", repr=False)
    layout: str = "outpost"

    def server_url(self, kind: str, user: str, server: str) -> str:
        """``kind`` is "events" or "setuptunnel"; ``user``/``server`` the hub's names."""
        return f"{self.url}/{LAYOUTS[self.layout]['server'](kind, user, server)}"

    def flavors_url(self) -> str:
        """The flavors update URL; "" when the entry names no ``outpost_name``."""
        if not self.outpost_name:
            return ""
        return f"{self.url}/{LAYOUTS[self.layout]['flavors'].format(outpost=self.outpost_name)}"


def parse_entry(hub: str, entry) -> HubEndpoints:
    where = f"hub_api[{hub!r}]"
    if not isinstance(entry, dict):
        raise HubAPIError(f"{where} must be a dict with at least 'url'.")
    unknown = set(entry) - ENTRY_KEYS
    if unknown:
        raise HubAPIError(
            f"{where}: unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(ENTRY_KEYS))}."
        )
    url = entry.get("url")
    if not isinstance(url, str):
        raise HubAPIError(f"{where}['url'] is required: the hub's API URL (.../hub/api).")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as e:
        raise HubAPIError(f"{where}['url'] {url!r} is not a URL ({e}).") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HubAPIError(f"{where}['url'] {url!r} must be an http:// or https:// URL.")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise HubAPIError(
            f"{where}['url'] {url!r} must not hold a query, fragment or user:password."
        )
    if not url.isprintable() or " " in url:
        raise HubAPIError(f"{where}['url'] {url!r} holds spaces or control characters.")
    outpost_name = entry.get("outpost_name", "")
    if outpost_name and not (
        isinstance(outpost_name, str) and OUTPOST_NAME_RE.fullmatch(outpost_name)
    ):
        raise HubAPIError(
            f"{where}['outpost_name'] {outpost_name!r}: use 1 to 63 of A-Z a-z 0-9 _ - "
            "(the name of this Outpost in that hub's c.OutpostSpawner.outposts)."
        )
    token = entry.get("flavors_update_token", "")
    if not isinstance(token, str):
        raise HubAPIError(f"{where}['flavors_update_token'] must be a string.")
    layout = entry.get("layout", "outpost")
    if layout not in LAYOUTS:
        raise HubAPIError(f"{where}['layout'] {layout!r}: use one of {', '.join(LAYOUTS)}.")
    return HubEndpoints(
        hub=hub,
        url=url.rstrip("/"),
        outpost_name=outpost_name,
        flavors_update_token=token,
        layout=layout,
    )


def parse_hub_api(mapping: dict) -> dict[str, HubEndpoints]:
    return {hub: parse_entry(hub, entry) for hub, entry in mapping.items()}


class HubAPI:
    """``c.JupyterHubOutpost.hub_api`` (a dict or a YAML/JSON file, re-read when it changes).

    ``for_hub(hub)`` is the hub's :class:`HubEndpoints`, or None when the hub has no entry
    (logged once per hub) or the file has become malformed (logged; no call is made).
    """

    def __init__(self, source, log: logging.Logger):
        self._mapping = FileBackedMapping(source, "hub_api")
        self.log = log
        self._parsed: tuple[dict, dict[str, HubEndpoints]] | None = None
        self._told: set[str] = set()

    def check(self) -> dict[str, HubEndpoints]:
        """Parse now; raises HubAPIError or CredentialsError (used at start-up)."""
        mapping = self._mapping.get()
        if self._parsed is None or self._parsed[0] is not mapping:
            self._parsed = (mapping, parse_hub_api(mapping))
        return self._parsed[1]

    def for_hub(self, hub: str) -> HubEndpoints | None:
        try:
            endpoints = self.check().get(hub)
        except (HubAPIError, CredentialsError, OSError) as e:
            self.log.error("c.JupyterHubOutpost.hub_api cannot be used, no hub is called: %s", e)
            return None
        if endpoints is None and hub not in self._told:
            self._told.add(hub)
            self.log.warning(
                "Hub %s has no entry in c.JupyterHubOutpost.hub_api: this Outpost sends it no "
                "progress events, flavor updates or tunnel re-creation requests (its starts "
                "work without them). URLs in start requests are never called.",
                hub,
            )
        return endpoints


class HubAPISettings(HasTraits):
    """The application's ``hub_api`` option (a mixin of :class:`~.app.JupyterHubOutpost`)."""

    hub_api = Union(
        [Dict(), Unicode()],
        default_value={},
        help="""Where this Outpost may call each hub, by hub name: {"url": the hub's API
        URL as this Outpost reaches it ("https://hub.example.org/hub/api"; http or https,
        checked at start-up), "outpost_name": the name that hub gives this Outpost (in its
        c.OutpostSpawner.outposts; needed for flavor updates), "flavors_update_token":
        optional token for flavor updates, "layout": "outpost" (this project's hub, the
        default) or "outpostspawner" (the stock jupyterhub-outpostspawner)}; or the path
        of a YAML or JSON file holding that mapping (read again when it changes). The
        Outpost sends progress events, flavor usage and tunnel re-creation requests only
        to URLs built from this entry, never to a URL of a start request. A hub without
        an entry gets no call (its starts still work; logged once).""",
    ).tag(config=True)

    @observe("hub_api")
    def _hub_api_changed(self, change):
        self._hub_api = None

    _hub_api = None

    def hub_endpoints(self, hub: str):
        """The hub's validated hub_api entry (``hub_api.HubEndpoints``), or None."""
        if self._hub_api is None:
            self._hub_api = HubAPI(self.hub_api, self.log)
        return self._hub_api.for_hub(hub)

    def _check_hub_api(self, hubs: dict) -> None:
        """At start-up: the entries parse (else StartupError); hubs without one and one
        flavors token string for several hubs are logged."""
        if isinstance(self.hub_api, str) and self.hub_api and not os.path.exists(self.hub_api):
            raise StartupError(f"c.JupyterHubOutpost.hub_api: file {self.hub_api} does not exist.")
        self._hub_api = HubAPI(self.hub_api, self.log)
        try:
            entries = self._hub_api.check()
        except (HubAPIError, CredentialsError) as e:
            raise StartupError(f"c.JupyterHubOutpost.{e}") from None
        missing = sorted(set(hubs) - set(entries))
        if missing:
            self.log.warning(
                "No hub_api entry for hub(s) %s: they get no progress events, flavor updates "
                "or tunnel re-creation requests from this Outpost.",
                ", ".join(missing),
            )
        token = self.flavors_update_token
        if isinstance(token, str) and token and len(hubs) > 1:
            self.log.warning(
                "c.JupyterHubOutpost.flavors_update_token is one string for %d hubs: each hub "
                "learns the token of the others. Give each hub its own token (hub_api entries "
                "or a hook).",
                len(hubs),
            )
