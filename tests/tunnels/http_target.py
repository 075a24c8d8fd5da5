"""A tiny real HTTP server process used as a forward target.

GET /           -> "hello from <name>"
GET /split      -> "head-tail", written in two pieces
GET /bytes/<n>  -> n bytes
"""

import asyncio
import sys

from tornado import web


class Hello(web.RequestHandler):
    def get(self):
        self.write(f"hello from {self.application.settings['name']}")


class Split(web.RequestHandler):
    """A small answer written in two socket writes (what exposes Nagle/delayed-ACK stalls)."""

    async def get(self):
        self.write("head-")
        await self.flush()
        self.write("tail")


class Bytes(web.RequestHandler):
    async def get(self, n):
        n = int(n)
        chunk = b"x" * 65536
        while n > 0:
            self.write(chunk[: min(n, len(chunk))])
            n -= len(chunk)
            await self.flush()


async def main(port: int, name: str) -> None:
    app = web.Application([(r"/", Hello), (r"/split", Split), (r"/bytes/(\d+)", Bytes)], name=name)
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "target"))
