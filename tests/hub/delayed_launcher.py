"""Runs jupyterhub-singleuser; with OUTPOST_TEST_DELAYED=1 it first reports its own address
to the hub's setuptunnel URL, as a batch job that learns its node only when it runs does
(delayed tunneling: the Outpost answered the start with "")."""

import json
import os
import sys
import urllib.request
from urllib.parse import urlparse


def report_address() -> None:
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    request = urllib.request.Request(
        os.environ["JUPYTERHUB_SETUPTUNNEL_URL"],
        data=json.dumps({"service": f"{url.hostname}:{url.port}"}).encode(),
        method="POST",
        headers={
            "Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - test helper
        response.read()


if __name__ == "__main__":
    if os.environ.get("OUTPOST_TEST_DELAYED") == "1":
        report_address()
    from jupyterhub.singleuser import main

    sys.exit(main())
