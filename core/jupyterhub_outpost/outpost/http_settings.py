"""The REST API's HTTP options (``c.JupyterHubOutpost.*``: path prefix, limits and timeouts,
TLS, requests to hubs, the metrics token), a mixin of the application
(:class:`~.app.JupyterHubOutpost`)."""

import os

from traitlets import Float, HasTraits, Integer, Unicode, default


class HTTPSettings(HasTraits):
    """The application's HTTP options."""

    base_path = Unicode(
        help="""URL path prefix of the REST API, for an Outpost behind an ingress or reverse
        proxy that publishes it under a prefix (e.g. "/outpost": hubs then use
        https://host/outpost/services). The API answers with and without the prefix, so it
        works whether the proxy strips the prefix or not. Default: $OUTPOST_BASE_PATH (as
        the original Outpost reads it), else none.""",
    ).tag(config=True)

    @default("base_path")
    def _base_path_default(self):
        return os.environ.get("OUTPOST_BASE_PATH", "")

    max_body_size = Integer(
        1024 * 1024,
        help="Largest accepted request body in bytes; a larger one is answered 413.",
    ).tag(config=True)

    idle_connection_timeout = Float(
        60.0,
        help="""Seconds a client connection may stay open without sending a complete
        request head (idle keep-alive, or headers trickled in slowly); then it is closed.
        Bounds how long slow or stalled clients hold the Outpost's connections.""",
    ).tag(config=True)

    body_timeout = Float(
        60.0,
        help="""Seconds a client may take to send a request body once its head arrived;
        a slower body is dropped with the connection and nothing of it is stored.""",
    ).tag(config=True)

    certfile = Unicode(
        "",
        help="""TLS certificate (PEM) of the REST API. With keyfile, the API speaks
        HTTPS only.""",
    ).tag(config=True)

    keyfile = Unicode("", help="TLS private key (PEM) for certfile.").tag(config=True)

    hub_ca_file = Unicode(
        "",
        help="""CA bundle to verify the hubs' HTTPS URLs (events, flavor updates, tunnel
        re-creation). Default: the system's trust store. Verification is always on.""",
    ).tag(config=True)

    hub_request_timeout = Float(
        10.0, help="Timeout in seconds of each request the Outpost sends to a hub."
    ).tag(config=True)

    metrics_token = Unicode(
        help="""Token that protects GET /metrics (Prometheus format; send
        "Authorization: token <metrics_token>" or "Bearer <metrics_token>", as Prometheus
        does). Default: $OUTPOST_METRICS_TOKEN. Empty: /metrics answers 404.""",
    ).tag(config=True)

    @default("metrics_token")
    def _metrics_token_default(self):
        return os.environ.get("OUTPOST_METRICS_TOKEN", "")
