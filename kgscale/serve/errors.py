"""Errors a client caused, in the OpenAI error format.

Every refusal is a 4xx with ``{"error": {"message", "type", "param", "code"}}``
so that the ``openai`` client raises its usual exception types and a person
reading the body learns what to change.
"""
from __future__ import annotations

# status -> the OpenAI error type clients switch on
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          413: "invalid_request_error", 503: "overloaded_error"}


class ApiError(Exception):
    """A request the server refuses; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict:
        return error_body(self.status, self.message, param=self.param, code=self.code)

    def __reduce__(self):  # crosses process boundaries (replica -> ingress) intact
        return (_rebuild, (self.status, self.message, self.param, self.code))


def _rebuild(status, message, param, code) -> ApiError:
    return ApiError(status, message, param=param, code=code)


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error" if status >= 500 else
                                                              "invalid_request_error"),
                      "param": param, "code": code}}


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)
