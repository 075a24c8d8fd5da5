"""The site's egress: the HTTP proxy lets requests through only to allowed targets."""

import asyncio
import urllib.error
import urllib.request

import pytest
from outpost_scenarios.egress_proxy import EgressProxy, parse_relay
from tornado import web


class Hello(web.RequestHandler):
    def post(self):
        self.finish({"got": self.request.body.decode(), "path": self.request.path})


def through_proxy(proxy_port, url):
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy_port}"})
    )
    try:
        with opener.open(urllib.request.Request(url, data=b"hi", method="POST"), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_proxy_forwards_to_allowed_target_and_refuses_others():
    target = web.Application([(r"/.*", Hello)]).listen(0, address="127.0.0.1")
    target_port = next(iter(target._sockets.values())).getsockname()[1]
    proxy = EgressProxy([f"127.0.0.1:{target_port}"])
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy_port = server.sockets[0].getsockname()[1]
    try:
        status, body = await asyncio.to_thread(
            through_proxy, proxy_port, f"http://127.0.0.1:{target_port}/hub/api/x?y=1"
        )
        assert status == 200 and '"got": "hi"' in body and "/hub/api/x" in body
        status, body = await asyncio.to_thread(through_proxy, proxy_port, "http://127.0.0.1:9/")
        assert status == 403 and "not an allowed destination" in body
    finally:
        server.close()
        target.stop()


def test_relay_spec_is_port_equals_host_colon_port():
    assert parse_relay("8081=10.231.1.2:8000") == (8081, "10.231.1.2", 8000)
    with pytest.raises(Exception, match="PORT=HOST:PORT"):
        parse_relay("8081")
