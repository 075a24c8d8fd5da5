"""Errors whose message is meant for the person on the other side (hub admin or user).

Handlers turn an ``OutpostError`` into ``{"error": message}`` with its status code;
any other exception is logged with its traceback and answered with a generic 500.
"""

REASONS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "refused",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    500: "spawner_error",
    503: "database_unavailable",
}


class OutpostError(Exception):
    """``reason`` is a short label for metrics (start failures by reason); it defaults to
    one per status code."""

    def __init__(self, status_code: int, message: str, reason: str = ""):
        self.status_code = status_code
        self.message = message
        self.reason = reason or REASONS.get(status_code, "error")
        super().__init__(message)


class StartupError(Exception):
    """A configuration problem the operator must fix; printed without a traceback."""
