"""The fields every boundary validates the same way: safe ids, bounded message text and metadata, and the
strict base models requests are built on."""

from __future__ import annotations

import json
import math
import re
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


# Characters a message may not hold: NUL (Postgres text cannot), the other C0 controls but tab, newline and
# carriage return, and U+FFFE/U+FFFF (SQS refuses a message with any of them, so a job carrying one could never
# be delivered). Lone surrogates are refused too: they are not text, and nothing downstream can store them.
FORBIDDEN_TEXT = "\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff"
FORBIDDEN = re.compile(f"[{FORBIDDEN_TEXT}]")


def _bounded_text(limit: int):
    def check(value: str) -> str:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("must be text (it holds a lone surrogate)") from None
        if size > limit:
            raise ValueError(f"must be at most {limit} bytes")
        if not value.strip():
            raise ValueError("must not be empty")
        found = FORBIDDEN.search(value)
        if found:
            raise ValueError(f"must not contain the control character U+{ord(found.group()):04X}")
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


# What the validator enforces, written down for OpenAPI: some non-blank text, none of the characters above,
# at most 32 KB.
MESSAGE_TEXT_PATTERN = f"^[^{FORBIDDEN_TEXT}]*[^\\s{FORBIDDEN_TEXT}][^{FORBIDDEN_TEXT}]*$"


MessageText = Annotated[
    str,
    _bounded_text(MAX_MESSAGE_BYTES),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE_BYTES, "pattern": MESSAGE_TEXT_PATTERN,
                    "description": f"Non-blank text of at most {MAX_MESSAGE_BYTES} bytes (UTF-8), without control "
                                   "characters (but tab, newline and carriage return) or U+FFFE/U+FFFF."}),
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
