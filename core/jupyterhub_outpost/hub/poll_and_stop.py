"""Poll and stop: ask the Outpost, and remove the server, its forward and its Service.

After a hub restart ``poll`` puts back a forward the tunnel daemon lost, and ends a start
that the restart interrupted (the state says it was sent, but it never finished) instead of
leaving that server orphaned. A stop the Outpost cannot be told about is retried in the
background (``stop_retry_timeout``).
"""

from __future__ import annotations

import asyncio

from jupyterhub.utils import exponential_backoff
from traitlets import Bool, Float, HasTraits

from .hooks import resolve_hook
from .outposts import Outpost, OutpostAPI, OutpostError


class PollAndStopMixin(HasTraits):
    """OutpostSpawner's poll, stop and clean-up."""

    request_failed_poll_keep_running = Bool(
        True,
        help="""When the Outpost does not answer a poll, report the server as running
        (it is most likely still there; the next poll asks again).""",
    ).tag(config=True)

    request_404_poll_keep_running = Bool(
        False,
        help="""When the Outpost answers a poll with 404 (it does not know the server),
        report the server as running instead of stopped.""",
    ).tag(config=True)

    stop_retry_timeout = Float(
        3600,
        help="""When the Outpost cannot be reached to stop a server, keep retrying in the
        background (exponential backoff) for this many seconds. 0: do not retry.""",
    ).tag(config=True)

    _retries: set = set()

    async def poll(self):
        if not self.start_id:
            return 0
        if self._spawn_pending or self._starting:
            return None
        outpost = self.get_outposts().get(self.outpost_name)
        if not self.target_url:
            return await self._end_interrupted_start(outpost)
        if outpost is None:
            self.log.error(
                "%s runs on Outpost %r, which is no longer configured",
                self._log_name,
                self.outpost_name,
            )
            return 0
        try:
            api = await self.get_api(outpost)
            status = await api.status(self.service_name, self.start_id)
        except OutpostError as e:
            if e.status == 404:
                if self.request_404_poll_keep_running:
                    return None
                self.log.info("Outpost %s does not know %s any more", outpost.name, self._log_name)
                await self._cleanup_local()
                return 0
            self.log.warning(
                "Polling %s on Outpost %s failed: %s", self._log_name, outpost.name, e.message
            )
            return None if self.request_failed_poll_keep_running else 0
        if status is not None:
            # it ended by itself (e.g. its batch job died): JupyterHub calls no stop() for
            # that, so remove its record at the Outpost here too
            await self._cleanup(api, outpost)
            return int(status) if isinstance(status, int) else 0
        if not outpost.direct and self.service_address is not None:
            try:
                await self.ensure_forward(outpost)
            except Exception as e:
                self.log.warning("Could not check the forward of %s: %s", self._log_name, e)
        return None

    async def get_url(self):
        return self.target_url or await super().get_url()

    async def stop(self, now=False):
        if self._setuptunnel is not None and not self._setuptunnel.done():
            self._setuptunnel.cancel()
        if not self.start_id:
            return
        outpost = self.get_outposts().get(self.outpost_name)
        api = await self.get_api(outpost) if outpost else None
        await self._cleanup(api, outpost)

    async def _cleanup(self, api: OutpostAPI | None, outpost: Outpost | None) -> None:
        """Remove the remote server, the forward and the Service; log what fails."""
        if api is not None and self.service_name and self.start_id:
            try:
                await api.stop(self.service_name, self.start_id)
            except OutpostError as e:
                if e.status == 404:  # nothing of it left there
                    self.log.info("%s was gone at Outpost %s", self._log_name, api.outpost.name)
                    return await self._cleanup_local()
                self.log.error(
                    "Stopping %s on Outpost %s failed: %s; retrying in the background for %ss",
                    self._log_name,
                    api.outpost.name,
                    e.message,
                    self.stop_retry_timeout,
                )
                self._retry_stop_later(api, self.service_name, self.start_id)
        await self._cleanup_local()

    def _retry_stop_later(self, api: OutpostAPI, name: str, start_id: str) -> None:
        """Keep asking the Outpost to stop a server it could not be told to stop, so that no
        server is orphaned by a short Outpost outage (lost with a hub restart; the flavor's
        runtime limit at the Outpost is the backstop)."""
        if self.stop_retry_timeout <= 0:
            return
        log = self.log

        async def attempt():
            try:
                await api.stop(name, start_id)
            except OutpostError as e:
                log.debug(
                    "Stop of %s on Outpost %s still failing: %s", name, api.outpost.name, e.message
                )
                return False
            log.info("Stopped %s on Outpost %s after retrying", name, api.outpost.name)
            return True

        async def retry():
            try:
                await exponential_backoff(
                    attempt,
                    f"stop of {name} on Outpost {api.outpost.name}",
                    start_wait=2,
                    max_wait=120,
                    timeout=self.stop_retry_timeout,
                )
            except TimeoutError:
                log.error(
                    "Gave up stopping %s on Outpost %s; its runtime limit will end it",
                    name,
                    api.outpost.name,
                )
            finally:
                PollAndStopMixin._retries.discard(task)

        task = asyncio.ensure_future(retry())
        PollAndStopMixin._retries.add(task)

    async def _cleanup_local(self) -> None:
        info = self.port_forward_info()
        if self.k8s_service:
            try:
                if self.k8s_service.get("custom"):
                    await resolve_hook(self.ssh_custom_svc_remove, self, info)
                else:
                    await self.get_service_backend().delete(service_name=self.service_name)
            except Exception as e:
                self.log.error("Removing the Service of %s failed: %s", self._log_name, e)
            self.k8s_service = None
        if self.forward:
            try:
                if self.forward.get("custom"):
                    await resolve_hook(self.ssh_custom_forward_remove, self, info)
                else:
                    await self.get_tunnel_client().delete_forward(self.forward["key"])
            except Exception as e:
                self.log.error("Removing the forward of %s failed: %s", self._log_name, e)
            self.forward = None
        elif self.service_name and self.outpost_name and self.ssh_custom_forward is None:
            outpost = self.get_outposts().get(self.outpost_name)
            if outpost is not None and not outpost.direct:
                # a forward may exist although we never learned its port (start cancelled)
                try:
                    await self.get_tunnel_client().delete_forward(self.forward_key)
                except Exception as e:
                    self.log.debug("No forward to remove for %s: %s", self._log_name, e)

    async def _end_interrupted_start(self, outpost: Outpost | None) -> int:
        """The state says a start was sent but never finished in this process: the hub was
        stopped or killed during it. Stop that server at the Outpost (retried in the background
        while the Outpost is unreachable) and report it not running."""
        self.log.warning(
            "The start of %s on Outpost %s was interrupted by a hub restart; stopping it there",
            self._log_name,
            self.outpost_name,
        )
        api = await self.get_api(outpost) if outpost is not None else None
        await self._cleanup(api, outpost)
        self._forget()
        return 1
