"""A tiny real single-user server for tests (the idea of jupyterhub's mocksu.py).

Listens where ``JUPYTERHUB_SERVICE_URL`` says (as jupyterhub-singleuser does) and answers
every GET with JSON: its user, server name, service prefix, whether it got an API token,
and its pid. Exits cleanly on SIGINT/SIGTERM. Standard library only: starts in ~50 ms.

Use as ``c.SimpleLocalProcessSpawner.cmd = [sys.executable, "-m", "tests.outpost.mini_singleuser"]``
(or the file path) with ``cwd`` containing ``tests``.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(
            {
                "user": os.environ.get("JUPYTERHUB_USER"),
                "server_name": os.environ.get("JUPYTERHUB_SERVER_NAME"),
                "prefix": os.environ.get("JUPYTERHUB_SERVICE_PREFIX"),
                "has_token": bool(os.environ.get("JUPYTERHUB_API_TOKEN")),
                "extra": os.environ.get("OUTPOST_TEST_EXTRA", ""),
                "pid": os.getpid(),
                "path": self.path,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main() -> None:
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    server = ThreadingHTTPServer((url.hostname or "127.0.0.1", url.port), Handler)

    def _exit(signum, frame):
        sys.exit(0)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    server.serve_forever()


if __name__ == "__main__":
    main()
