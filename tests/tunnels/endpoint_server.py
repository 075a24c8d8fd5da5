"""Run an SSHEndpoint as its own process (tests and bench/tunnel_compare.py).

    python endpoint_server.py --host-key FILE --port N --authorized-keys FILE.json \
        --allow 127.0.0.1:1-65535 [--allow ...]

``--authorized-keys`` is a JSON file ``{hub: [public key lines]}``, re-read at every login;
forwards are allowed by ``allowed_forward_targets``-style entries.
"""

import argparse
import asyncio
import json
import logging
import signal

from jupyterhub_outpost.outpost.forward_targets import is_allowed, parse_targets
from jupyterhub_outpost.outpost.ssh_endpoint import SSHEndpoint


async def run(args) -> None:
    targets = parse_targets(args.allow)

    def authorized_keys():
        with open(args.authorized_keys) as f:
            return json.load(f)

    async def authorize_forward(hub, host, port):
        return is_allowed(targets, host, port)

    endpoint = SSHEndpoint(
        host_key_path=args.host_key,
        listen_host=args.ip,
        listen_port=args.port,
        authorized_keys=authorized_keys,
        authorize_forward=authorize_forward,
        log=logging.getLogger("ssh-endpoint"),
    )
    await endpoint.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await endpoint.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host-key", required=True)
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--authorized-keys", required=True)
    parser.add_argument("--allow", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
