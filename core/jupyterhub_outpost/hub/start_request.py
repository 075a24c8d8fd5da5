"""The start of one server: the start request to the Outpost and its hooks.

``start()`` picks the Outpost and flavor (``check_allowed`` and the cached flavors may refuse
the start; the user sees why), builds the request body (name, env, user_options with
``start_id``, misc, and with internal_ssl the certs and trust bundles; ``custom_*`` hooks add
to each), records the start in the hub's database (state.py) and POSTs it. The answer is the
server's ``host:port``, or ``""`` when the server reports its address itself later
(delayed tunneling: wait for the setuptunnel POST); tunnel_setup.py then makes that address
reachable. Anything failing after the POST undoes everything (poll_and_stop.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from pathlib import Path
from urllib.parse import quote

from jupyterhub.spawner import SpawnException
from jupyterhub.utils import exponential_backoff
from traitlets import Any as AnyTrait
from traitlets import Bool, Callable, Dict, Float, HasTraits, Union

from .addresses import AddressError, parse_service_address
from .flavors import flavor_is_full, sorted_flavors
from .hooks import resolve_hook
from .outposts import Outpost, OutpostAPI, OutpostError
from .spawn_error import OutpostSpawnError

_SERVICE_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,63}")  # used with fullmatch


def make_service_name(user_id: int, server_name: str) -> str:
    """The name of a server at the Outpost, ``[A-Za-z0-9._-]{1,63}``.

    ``jh<user id>`` for the default server, ``jh<user id>-<server name>`` for a named
    one. When the server name has other characters, or the result is too long, the
    name is cut and a hash of the original is appended, so two servers never share one.
    """
    base = f"jh{int(user_id)}"
    if not server_name:
        return base
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", server_name)
    name = f"{base}-{safe}"
    if safe != server_name or len(name) > 63:
        digest = hashlib.sha256(server_name.encode()).hexdigest()[:10]
        name = f"{base}-{safe[: 63 - len(base) - 12]}-{digest}"
    assert _SERVICE_NAME_RE.fullmatch(name), name
    return name


class StartRequestMixin(HasTraits):
    """OutpostSpawner's start: options, hooks, the request body and the start itself."""

    start_request_timeout = Float(
        0,
        help="""Seconds to wait for the Outpost's answer to a start request (0: start_timeout).
        JupyterHub's own ``http_timeout`` (how long the started server may take to answer
        through the tunnel) is unchanged.""",
    ).tag(config=True)

    delayed_start_check_interval = Float(
        10,
        help="""Delayed tunneling: while a start waits for the server to report its address,
        ask the Outpost this often (seconds) whether the server still runs. One that ended
        (a batch job that died before it reported) fails the start at once instead of after
        ``start_timeout``. 0: do not ask.""",
    ).tag(config=True)

    # hooks are compatible with jupyterhub-outpostspawner: same names, same arguments; a
    # value, a function or a coroutine
    start_async = Union(
        [Bool(), Callable()],
        default_value=False,
        help="""Ask the Outpost to start in the background (header ``execution-type: async``): the
        start request returns at once (202) and the spawner follows the start in GET /services.
        Use it when a start takes longer than a proxy between hub and Outpost keeps a request
        open. ``start_async(spawner)``; may be a coroutine.""",
    ).tag(config=True)

    custom_env = Union(
        [Dict(), Callable()],
        default_value={},
        help="""Extra environment variables sent with the start request.
        ``custom_env(spawner, user_options, jupyterhub_api_url)``; may be a coroutine.""",
    ).tag(config=True)

    custom_user_options = Union(
        [Dict(), Callable()],
        default_value={},
        help="""Extra user_options sent with the start request (merged over the user's).
        ``custom_user_options(spawner, user_options)``; may be a coroutine.""",
    ).tag(config=True)

    custom_misc = Union(
        [Dict(), Callable()],
        default_value={},
        help="""``misc`` of the start request: Spawner settings the Outpost applies to its spawner
        (if its ``allow_override`` permits). ``custom_misc(spawner, user_options)``; may be a coroutine.""",
    ).tag(config=True)

    check_allowed = AnyTrait(
        None,
        allow_none=True,
        help="""Called before a start; raise to refuse it (the message is shown to the user).
        ``check_allowed(spawner, user_options)``; may be a coroutine.""",
    ).tag(config=True)

    post_spawn_request_hook = AnyTrait(
        None,
        allow_none=True,
        help="""Called after the Outpost accepted a start. ``post_spawn_request_hook(spawner,
        resp_json)``; may be a coroutine.""",
    ).tag(config=True)

    failed_spawn_request_hook = AnyTrait(
        None,
        allow_none=True,
        help="""Called when a start request to the Outpost failed. ``failed_spawn_request_hook(
        spawner, exception)``; may be a coroutine.""",
    ).tag(config=True)

    def hub_api_url_for(self, outpost: Outpost) -> str:
        if outpost.hub_api_url:
            return outpost.hub_api_url
        return super().get_env()["JUPYTERHUB_API_URL"].rstrip("/")

    def get_env(self) -> dict:
        env = super().get_env()
        # the remote spawner binds where it wants; our bind URL would be wrong there
        env.pop("JUPYTERHUB_SERVICE_URL", None)
        env["JUPYTERHUB_USER_ID"] = str(self.user.id)
        outpost = self.get_outposts().get(self.outpost_name)
        if outpost is None:
            return env
        api = self.hub_api_url_for(outpost)
        env["JUPYTERHUB_API_URL"] = api
        env["JUPYTERHUB_ACTIVITY_URL"] = f"{api}/users/{quote(self.user.name, safe='')}/activity"
        user_server = f"{quote(self.user.name, safe='')}/{quote(self.name or '_default', safe='')}"
        env["JUPYTERHUB_EVENTS_URL"] = f"{api}/outpost/events/{user_server}"
        env["JUPYTERHUB_SETUPTUNNEL_URL"] = f"{api}/outpost/setuptunnel/{user_server}"
        env["JUPYTERHUB_FLAVORS_UPDATE_URL"] = f"{api}/outpost/flavors/{outpost.name}"
        if outpost.flavors_update_token:
            # the token with which this Outpost alone reports its flavor usage (the original
            # Outpost's wire format); this project's Outpost never passes it to the server
            env["JUPYTERHUB_FLAVORS_UPDATE_TOKEN"] = outpost.flavors_update_token
        return env

    async def move_certs(self, paths):
        """Keep the hub-side paths; their contents travel in the start request."""
        return paths

    async def _read_certs(self) -> tuple[dict, dict]:
        def read():
            certs = {}
            for key in ("keyfile", "certfile", "cafile"):
                path = (self.cert_paths or {}).get(key)
                if path:
                    certs[key] = Path(path).read_text()
            bundles = {
                name: Path(path).read_text()
                for name, path in (self.internal_trust_bundles or {}).items()
            }
            return certs, bundles

        return await asyncio.to_thread(read)

    async def build_start_body(self, outpost: Outpost, user_options: dict) -> dict:
        env = self.get_env()
        extra_env = await resolve_hook(
            self.custom_env, self, user_options, self.hub_api_url_for(outpost)
        )
        env.update({str(k): str(v) for k, v in (extra_env or {}).items()})
        options = dict(user_options)
        options.update(await resolve_hook(self.custom_user_options, self, user_options) or {})
        options["outpost"] = outpost.name
        options["start_id"] = self.start_id
        misc = await resolve_hook(self.custom_misc, self, user_options) or {}
        body = {
            "name": self.service_name,
            "env": env,
            "user_options": options,
            "misc": dict(misc),
            "certs": {},
            "internal_trust_bundles": {},
            "authentication": await self.get_authentication(),
        }
        if self.internal_ssl:
            body["certs"], body["internal_trust_bundles"] = await self._read_certs()
        return body

    async def _choose_flavor(self, outpost: Outpost, user_options: dict) -> str | None:
        flavors = await self.flavors_for_user(await self.get_api(outpost, user_options))
        flavor = user_options.get("flavor")
        if isinstance(flavor, list):
            flavor = flavor[0] if flavor else None
        if flavor:
            known = flavors.get(flavor)
            if known is not None and flavor_is_full(known):
                raise OutpostSpawnError(
                    f"The flavor {known.get('display_name') or flavor!r} on {outpost.label} is full. "
                    "Choose another flavor or try again later.",
                    reason="flavor_full",
                    status_code=409,
                )
            return str(flavor)
        for name, spec in sorted_flavors(flavors):
            if not flavor_is_full(spec):
                return name
        if flavors:
            raise OutpostSpawnError(
                f"Every flavor on {outpost.label} is full. Try again later.",
                reason="flavor_full",
                status_code=409,
            )
        return None

    async def start(self):
        """POST the start to the Outpost; return the URL the proxy should target."""
        self._events = []
        user_options = dict(self.user_options or {})
        outpost = self.get_outpost(self._chosen_outpost_name(user_options))
        if self.check_allowed is not None:
            try:
                await resolve_hook(self.check_allowed, self, user_options)
            except SpawnException as e:
                raise OutpostSpawnError(
                    e.message or "This start is not allowed.",
                    reason=e.reason or "not_allowed",
                    log_message=e.log_message,
                    message_html=e.message_html,
                    status_code=e.status_code,
                ) from None
            except Exception as e:
                raise OutpostSpawnError(
                    str(e) or "This start is not allowed.", reason="not_allowed"
                ) from None
        flavor = await self._choose_flavor(outpost, user_options)
        if flavor:
            user_options["flavor"] = flavor
        self.outpost_name = outpost.name
        self.start_id = uuid.uuid4().hex[:16]
        self.service_name = make_service_name(self.user.id, self.name)
        self.service_address = None
        self.address_source = "outpost"
        self.forward = None
        self.k8s_service = None
        self.target_url = ""
        try:
            api = await self.get_api(outpost, user_options)
            body = await self.build_start_body(outpost, user_options)
        except Exception as e:
            self.log.exception("Preparing the start request of %s failed", self._log_name)
            self._forget()
            raise OutpostSpawnError(
                f"Preparing the start on {outpost.label} failed: {e}", reason="hook"
            ) from None
        try:
            self._record_start()
        except Exception as e:
            self.log.exception(
                "Recording the start of %s in the hub database failed", self._log_name
            )
            self._forget()
            raise OutpostSpawnError(
                f"The hub could not record the start on {outpost.label}: {e}", reason="hub"
            ) from None
        self._starting = True
        self._setuptunnel = asyncio.get_running_loop().create_future()
        try:
            try:
                asynchronous = bool(await resolve_hook(self.start_async, self))
                answer = await api.start(
                    body,
                    timeout=self.start_request_timeout or self.start_timeout,
                    asynchronous=asynchronous,
                )
                if answer.get("accepted"):
                    answer = await self._wait_async_start(api)
            except OutpostError as e:
                await self._run_failed_hook(e)
                raise OutpostSpawnError(
                    f"{outpost.label}: {e.message}",
                    reason="outpost",
                    log_message=f"Start of {self._log_name} on Outpost {outpost.name} failed: {e.message}",
                ) from None
            await resolve_hook(self.post_spawn_request_hook, self, answer)
            address = answer.get("service") or ""
            if address:
                try:
                    self.service_address = parse_service_address(address)
                except AddressError as e:
                    raise OutpostSpawnError(
                        f"{outpost.label} reported an invalid server address: {e}", reason="outpost"
                    ) from None
            else:
                self.log.info(
                    "%s: waiting for the server's address (delayed tunneling)", self._log_name
                )
                self.add_event(
                    {"message": f"{outpost.label}: waiting for the server to report its address"}
                )
                self.service_address = await self._wait_for_reported_address(api, outpost)
                self.address_source = "setuptunnel"
            self.target_url = await self.connect(outpost)
            return self.target_url
        except BaseException as e:
            # undo everything; shielded so that a cancelled start (start_timeout) still cleans up
            self.log.warning(
                "Start of %s failed (%s); cleaning up", self._log_name, type(e).__name__
            )
            await asyncio.shield(self._cleanup(api, outpost))
            self._forget()
            if isinstance(e, (SpawnException, asyncio.CancelledError)):
                raise
            raise OutpostSpawnError(
                f"Starting on {outpost.label} failed: {e}", reason="outpost"
            ) from e
        finally:
            self._starting = False
            if self._setuptunnel is not None and not self._setuptunnel.done():
                self._setuptunnel.cancel()

    async def _wait_for_reported_address(self, api: OutpostAPI, outpost: Outpost):
        """Delayed tunneling: wait for the server's own setuptunnel report. Meanwhile ask the
        Outpost every ``delayed_start_check_interval`` seconds whether the server still runs,
        so that a batch job that ends before it reports fails the start at once."""
        while True:
            done, _ = await asyncio.wait(
                {self._setuptunnel}, timeout=self.delayed_start_check_interval or None
            )
            if done:
                return self._setuptunnel.result()
            try:
                status = await api.status(self.service_name, self.start_id)
            except OutpostError as e:
                if e.status != 404:
                    self.log.warning(
                        "Checking %s on Outpost %s failed: %s; still waiting for its address",
                        self._log_name,
                        outpost.name,
                        e.message,
                    )
                    continue
                raise OutpostSpawnError(
                    f"{outpost.label} no longer knows the server, which never reported its "
                    "address.",
                    reason="outpost",
                ) from None
            if status is not None:
                raise OutpostSpawnError(
                    f"The server on {outpost.label} ended (exit status {status}) before it "
                    "reported its address.",
                    reason="outpost",
                )

    async def _wait_async_start(self, api: OutpostAPI) -> dict:
        """An asynchronous start was accepted (202): follow it in GET /services until it runs
        (its ``service`` is the answer) or fails (its ``error`` is the message)."""
        result: dict = {}

        async def finished():
            item = await api.find(self.service_name, self.start_id)
            if item is None:
                raise OutpostError("The Outpost no longer knows the server it was starting")
            status = item.get("status")
            if status == "running":
                result["service"] = item.get("service") or ""
                return True
            if status in ("failed", "stopped"):
                raise OutpostError(item.get("error") or f"The start ended ({status})")
            return False

        await exponential_backoff(
            finished,
            f"{self._log_name} to start on Outpost {api.outpost.name}",
            start_wait=0.2,
            max_wait=5,
            timeout=self.start_timeout,
        )
        return result

    async def _run_failed_hook(self, exc):
        try:
            await resolve_hook(self.failed_spawn_request_hook, self, exc)
        except Exception:
            self.log.exception("failed_spawn_request_hook raised for %s", self._log_name)
