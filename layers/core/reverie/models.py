"""The pydantic models that cross a boundary (jobs, turns, memories, API requests and answers, errors).

Defined once here and imported everywhere else.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

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


class Tier(StrEnum):
    EPISODIC = "episodic"
    SEMANTIC = "semantic"
    PROCEDURAL = "procedural"


TIERS: tuple[Tier, ...] = (Tier.EPISODIC, Tier.SEMANTIC, Tier.PROCEDURAL)


class EventKind(StrEnum):
    ADD = "ADD"
    UPDATE = "UPDATE"
    SUPERSEDE = "SUPERSEDE"
    DELETE = "DELETE"


class TierStatus(StrEnum):
    QUEUED = "queued"
    DONE = "done"
    EMPTY = "empty"  # processed, nothing extracted; `reason` says why
    FAILED = "failed"
    DEAD = "dead"  # in the DLQ


FINAL_TIER_STATUSES = frozenset({TierStatus.DONE, TierStatus.EMPTY, TierStatus.FAILED, TierStatus.DEAD})


class Strict(BaseModel):
    """Inputs refuse fields they do not know, so a typo is a 400 and not a silent default."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ProjectScoped(Strict):
    """A request body never names its project: the project comes from the API key (seed 000)."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_project(cls, data: Any) -> Any:
        if isinstance(data, dict) and ({"project", "project_id"} & data.keys()):
            raise ValueError("the project comes from the API key; remove 'project' from the body")
        return data


# ---------------------------------------------------------------- turns and jobs


class Turn(Strict):
    turn_id: SafeId = Field(default_factory=new_id)
    role: Literal["user", "assistant", "system"]
    content: MessageText
    created_at: datetime = Field(default_factory=utcnow)


class ReflectionJob(Strict):
    """One unit of slow work, self-contained: it carries its turns, never a pointer to cache keys (seed 002).

    project_id and user_id are required and validated both where a job is made and where it is read
    (seed 000).
    """

    schema_version: Literal[1] = 1
    job_id: SafeId = Field(default_factory=new_id)
    project_id: SafeId
    user_id: SafeId
    session_id: SafeId
    source: Literal["chat", "api"] = "chat"
    turns: list[Turn] = Field(min_length=1, max_length=200)
    metadata: Metadata = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def group_id(self) -> str:
        """The FIFO message group: one user of one project, so a user's jobs apply in order."""
        return f"{self.project_id}:{self.user_id}"


class NarrativeJob(Strict):
    schema_version: Literal[1] = 1
    job_id: SafeId = Field(default_factory=new_id)
    project_id: SafeId
    user_id: SafeId
    reason: Literal["stale", "missing", "requested"] = "stale"
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def group_id(self) -> str:
        return f"{self.project_id}:{self.user_id}"


# ---------------------------------------------------------------- memories


class Memory(BaseModel):
    id: str
    user_id: str
    tier: Tier
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    importance: float | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    created_at: datetime
    updated_at: datetime | None = None
    superseded_at: datetime | None = None
    superseded_by: str | None = None
    source_job_id: str | None = None
    session_id: str | None = None
    embedding_model: str | None = None


class ScoredMemory(Memory):
    score: float = 0.0


class MemoryEvent(BaseModel):
    id: int
    memory_id: str
    event: EventKind
    job_id: str | None = None
    old_text: str | None = None
    new_text: str | None = None
    created_at: datetime


# ---------------------------------------------------------------- API requests


class ChatRequest(ProjectScoped):
    user_id: SafeId
    session_id: SafeId
    message: MessageText
    metadata: Metadata = Field(default_factory=dict)


class InputMessage(Strict):
    role: Literal["user", "assistant", "system"] = "user"
    content: MessageText


class AddMemoriesRequest(ProjectScoped):
    user_id: SafeId
    session_id: SafeId = "api"
    messages: list[InputMessage] = Field(min_length=1, max_length=100)
    infer: bool = True
    tier: Tier = Tier.SEMANTIC  # where infer=false stores the messages as given
    metadata: Metadata = Field(default_factory=dict)


class ListMemoriesQuery(ProjectScoped):
    user_id: SafeId
    tier: Tier | None = None
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(None, max_length=512)


class SearchRequest(ProjectScoped):
    user_id: SafeId
    query: MessageText
    tiers: list[Tier] | None = None
    limit: int = Field(10, ge=1, le=MAX_PAGE_SIZE)
    filters: Metadata = Field(default_factory=dict)
    as_of: datetime | None = None


class AskRequest(ProjectScoped):
    user_id: SafeId
    question: MessageText


class DeepQueryRequest(ProjectScoped):
    user_id: SafeId
    query: MessageText


class ContextQuery(ProjectScoped):
    user_id: SafeId
    session_id: SafeId | None = None
    query: MessageText | None = None
    max_tokens: int = Field(1500, ge=50, le=32000)


# ---------------------------------------------------------------- API answers


class ContextMemory(BaseModel):
    id: str
    tier: Tier
    text: str
    score: float


class ChatContext(BaseModel):
    memories: list[ContextMemory] = Field(default_factory=list)
    rules: list[ContextMemory] = Field(default_factory=list)
    narrative: bool = False


class ChatResponse(BaseModel):
    reply: str
    session_id: str
    turn_id: str
    job_id: str
    memory_saved: bool
    context: ChatContext


class TierOutcome(BaseModel):
    status: TierStatus = TierStatus.QUEUED
    added: int = 0
    updated: int = 0
    superseded: int = 0
    reason: str | None = None
    error: str | None = None


class JobStatus(BaseModel):
    job_id: str
    status: TierStatus
    tiers: dict[Tier, TierOutcome]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
