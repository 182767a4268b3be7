"""The fields every boundary validates the same way: safe ids, bounded message text and metadata, and the
strict base models requests are built on."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, WithJsonSchema, model_validator

MAX_MESSAGE_BYTES = 32 * 1024


MAX_METADATA_BYTES = 4 * 1024


MAX_PAGE_SIZE = 100


# Ids travel in keys, queue group ids and log lines: a safe charset and a bounded length.
SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"


SafeId = Annotated[str, StringConstraints(pattern=SAFE_ID_PATTERN)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def _bounded_text(limit: int):
    def check(value: str) -> str:
        if len(value.encode("utf-8")) > limit:
            raise ValueError(f"must be at most {limit} bytes")
        if not value.strip():
            raise ValueError("must not be empty")
        if "\x00" in value:  # Postgres text cannot hold NUL: refuse it here rather than fail on write
            raise ValueError("must not contain NUL characters")
        return value

    return AfterValidator(check)


def _jsonb_safe(value: Any) -> None:
    """Postgres jsonb refuses NUL, lone surrogates and NaN/Infinity: refuse them as input, not as a 500."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        value.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            _jsonb_safe(key)
            _jsonb_safe(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _jsonb_safe(item)


def _bounded_metadata(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, separators=(",", ":"), default=str).encode("utf-8")) > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
    _jsonb_safe(value)
    return value


# What the validator enforces, written down for OpenAPI: some non-blank text, no NUL, at most 32 KB.
MESSAGE_TEXT_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"


MessageText = Annotated[
    str,
    _bounded_text(MAX_MESSAGE_BYTES),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE_BYTES, "pattern": MESSAGE_TEXT_PATTERN,
                    "description": f"Non-blank text of at most {MAX_MESSAGE_BYTES} bytes (UTF-8), without NUL."}),
]


Metadata = Annotated[dict[str, Any], AfterValidator(_bounded_metadata)]


class Strict(BaseModel):
    """Inputs refuse fields they do not know, so a typo is a 400 and not a silent default."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ProjectScoped(Strict):
    """A request body never names its project: the project comes from the API key, so nothing is ever stored
    under a project the caller did not prove."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_project(cls, data: Any) -> Any:
        if isinstance(data, dict) and ({"project", "project_id"} & data.keys()):
            raise ValueError("the project comes from the API key; remove 'project' from the body")
        return data
