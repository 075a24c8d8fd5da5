"""Talk to a Jupyter kernel over its websocket, as JupyterLab does.

Used wherever a test or benchmark proves the data path to a single-user server: through the
hub's proxy and the tunnel (``tests/hub``, ``tests/e2e``) or directly (``bench``).
"""

from __future__ import annotations

import json
import time
import uuid

import websocket


def execute_request(code: str, username: str = "test") -> tuple[str, str]:
    """An ``execute_request`` on the shell channel: returns ``(msg_id, message as JSON)``."""
    msg_id = uuid.uuid4().hex
    message = {
        "header": {
            "msg_id": msg_id,
            "username": username,
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "buffers": [],
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    }
    return msg_id, json.dumps(message)


def run_code(channels_url: str, token: str, code: str, timeout: float = 60) -> str:
    """Run ``code`` in the kernel whose ``.../api/kernels/<id>/channels`` websocket is
    ``channels_url``; returns what it printed. A kernel error raises AssertionError, no
    answer within ``timeout`` seconds raises TimeoutError."""
    ws = websocket.create_connection(
        channels_url, header=[f"Authorization: token {token}"], timeout=timeout
    )
    try:
        msg_id, text = execute_request(code)
        ws.send(text)
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise AssertionError(f"kernel error: {msg['content']}")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
        raise TimeoutError(f"no answer from the kernel at {channels_url} within {timeout}s")
    finally:
        ws.close()


def run_code_through_proxy(hub, user: str, server: str, code: str, timeout: float = 60) -> str:
    """Start a kernel on ``user``'s server through ``hub``'s proxy (a HubProcess) and run
    ``code`` over its websocket, as JupyterLab does; returns stdout."""
    prefix = f"/user/{user}/{server}/" if server else f"/user/{user}/"
    status, kernel_model = hub.proxy_request("POST", f"{prefix}api/kernels", {"name": "python3"})
    assert status == 201, (status, kernel_model)
    url = f"ws://{hub.ip}:{hub.port}{prefix}api/kernels/{kernel_model['id']}/channels"
    try:
        return run_code(url, hub.admin_token, code, timeout)
    finally:
        hub.proxy_request("DELETE", f"{prefix}api/kernels/{kernel_model['id']}")
