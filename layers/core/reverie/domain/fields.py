"""The fields every boundary validates the same way: safe ids, bounded message text and metadata, and the
strict base models requests are built on."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime, timedelta
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


def storable_text(text: str) -> str:
    """Text that did not pass our validation (a model's reply, answer, narrative or extraction) as text that can be
    stored, queued and answered: lone surrogates become U+FFFD, and the characters no message may hold are dropped."""
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return FORBIDDEN.sub("", text)


def storable_value(value: Any) -> Any:
    """`storable_text` over every string of a JSON-like value (keys too): what a model put into metadata."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): storable_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_value(v) for v in value]
    return value


# A UUID as ids are given out: 8-4-4-4-12 hex digits. Python's uuid.UUID also takes "urn:uuid:...", braces and
# hyphens anywhere, some of which Postgres refuses, so an id in any other form is simply not found.
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def canonical_uuid(value: Any) -> str | None:
    """The id in its canonical (lower-case) form, or None when it is not a UUID written as ids are given out."""
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value.lower()
    return None


def as_utc(moment: datetime) -> datetime:
    """A moment in UTC. ISO 8601 (and Python) allow offsets up to +/-23:59, Postgres only up to +/-15:59, so a time
    is compared in UTC; one without an offset is taken as UTC. A moment that leaves the years 1-9999 on the way
    is clamped to the first or last one (nothing is recorded there, so an `as_of` means the same)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if moment.utcoffset() > timedelta(0) else datetime.max
        return edge.replace(tzinfo=UTC)


# A timestamp taken from input (search's `as_of`): any RFC 3339 date-time, compared in UTC.
Moment = Annotated[datetime, AfterValidator(as_utc)]


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
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be text (a lone surrogate is not)") from None
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
