"""Errors whose message is meant for the person on the other side (hub admin or user).

Handlers turn an ``OutpostError`` into ``{"error": message}`` with its status code;
any other exception is logged with its traceback and answered with a generic 500.
"""


class OutpostError(Exception):
    def __init__(self, status_code: int, message: str):
        self.status_code = status_code
        self.message = message
        super().__init__(message)
