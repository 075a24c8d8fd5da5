"""Stand-in for the hub's setuptunnel endpoint: prints every accepted address report."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import jupyterhub

TOKEN = os.environ["FAKE_HUB_TOKEN"]
PREFIX = "/hub/api/outpost/setuptunnel/"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        # what jupyterhub-singleuser checks at start: the hub API answers, with its version
        if self.path.rstrip("/") != "/hub/api":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"version": jupyterhub.__version__}).encode()
        self.send_response(200)
        self.send_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Authorization") != f"token {TOKEN}":
            self.send_response(403)
        elif not self.path.startswith(PREFIX):
            self.send_response(404)
        else:
            service = json.loads(body)["service"]
            print(f"setuptunnel {self.path[len(PREFIX) :]} service={service}", flush=True)
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


server = HTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
print(f"fake hub listening on {sys.argv[1]}:{sys.argv[2]}", flush=True)
server.serve_forever()
