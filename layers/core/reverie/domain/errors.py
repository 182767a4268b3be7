"""Domain errors, each with the HTTP status and machine-readable code it is answered with."""

from __future__ import annotations

from typing import Any


class ReverieError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details

    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries besides the body (Retry-After for a rate limit)."""
        return {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class ValidationFailed(ReverieError):
    status = 400
    code = "validation_error"


class Unauthorized(ReverieError):
    status = 401
    code = "unauthorized"


class NotFound(ReverieError):
    status = 404
    code = "not_found"


class Conflict(ReverieError):
    status = 409
    code = "conflict"


class UserForgotten(Conflict):
    """The user was forgotten while the request was being answered: nothing of it was kept."""

    code = "user_forgotten"


class PayloadTooLarge(ReverieError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ReverieError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(ReverieError):
    """The project spent its budget of requests for the current window: answered 429 with Retry-After."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class ServiceUnavailable(ReverieError):
    status = 503
    code = "unavailable"


class NarrativeFailed(ReverieError):
    """The user has no narrative and the last job that was to write one failed for good (it is in the dead-letter
    queue): said so, rather than answering "generating" for ever."""

    status = 503
    code = "narrative_failed"


class SchemaBehind(ReverieError):
    """The database schema is older than the code: made loud at cold start, naming the fix."""

    status = 503
    code = "schema_behind"


class InvalidJob(ReverieError):
    """A job that does not carry its scope or does not match the schema: refused where made and read."""

    status = 400
    code = "invalid_job"


def validation_details(exc: Any) -> list[dict[str, Any]]:
    """Shape a pydantic ValidationError into short, JSON-safe details (no input echo beyond the field)."""
    out = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        out.append({"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"], "type": err["type"]})
    return out
