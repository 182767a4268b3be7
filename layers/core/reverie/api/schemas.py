"""What the memory API takes and answers: request models (strict: an unknown field is a 400) and answer
models, defined once for the routes, the MCP tools and the OpenAPI document."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from reverie.chat.answers import AskAnswer, DeepAnswer
from reverie.domain.errors import ValidationFailed, validation_details
from reverie.domain.fields import (
    MAX_PAGE_SIZE,
    SAFE_ID_PATTERN,
    MessageText,
    Metadata,
    Moment,
    ProjectScoped,
    SafeId,
    Strict,
)
from reverie.domain.memory import ContextMemory, Memory, MemoryEvent, PendingTurn, Turn
from reverie.domain.outcomes import UserJob
from reverie.domain.tiers import Tier
from reverie.jobs.message import ReflectionJob

__all__ = ["AskAnswer", "DeepAnswer"]

M = TypeVar("M", bound=BaseModel)
_SAFE_ID = re.compile(SAFE_ID_PATTERN)


# ---------------------------------------------------------------- requests


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
    include_superseded: bool = False
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(None, max_length=512)


class EditMemoryRequest(ProjectScoped):
    text: MessageText = Field(description="The memory's new words: stored in place of the old ones (which its UPDATE "
                                          "event keeps) and embedded again.")


class ListUsersQuery(ProjectScoped):
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(None, max_length=512)
    prefix: str | None = Field(None, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")


class SearchRequest(ProjectScoped):
    user_id: SafeId
    query: MessageText
    tiers: list[Tier] | None = None
    limit: int = Field(10, ge=1, le=MAX_PAGE_SIZE)
    filters: Metadata = Field(default_factory=dict)
    as_of: Moment | None = Field(None, description="See the memories as they were at this time (RFC 3339; without an "
                                                  "offset, UTC).")


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


# ---------------------------------------------------------------- answers


class JobAccepted(BaseModel):
    job_id: str


class JobsAccepted(JobAccepted):
    """Messages too large for one queue message are learned as several jobs, in order: `job_id` is the first."""

    job_ids: list[str]


class MemoryList(BaseModel):
    memories: list[Memory]


class MemoryPage(BaseModel):
    memories: list[Memory]
    next_cursor: str | None = None


class EventList(BaseModel):
    events: list[MemoryEvent]


class MemoryCounts(BaseModel):
    episodic: int = Field(description="Current episodic memories.")
    semantic: int = Field(description="Current semantic memories (facts).")
    procedural: int = Field(description="Current procedural memories (rules).")
    superseded: int = Field(description="Memories of any tier replaced by newer ones (kept as history).")


class UserSummary(BaseModel):
    user_id: str
    memories: MemoryCounts
    jobs: int = Field(description="Jobs some tier recorded an outcome of.")
    failed_jobs: int = Field(description="Of those, jobs failed or dead in some tier.")
    held_jobs: int = Field(description="Jobs held in reflection windows: said, not learned yet.")
    narrative_version: int | None = Field(None, description="The newest narrative's version (null: none yet).")
    last_activity: datetime | None = Field(None, description="The latest memory change, job outcome, held job or "
                                                             "narrative of the user.")


class UserPage(BaseModel):
    """The project's users in user_id order: a user is anyone with a memory, a job outcome or a held job (a user
    whose first turns are still on their way to the tiers shows up once a tier has them)."""

    users: list[UserSummary]
    next_cursor: str | None = Field(None, description="null on the last page")


class UserJobList(BaseModel):
    user_id: str
    jobs: list[UserJob] = Field(description="The latest to move first.")
    degraded: list[str] = Field(default_factory=list, description="engines that were unreachable, so jobs known only "
                                                                  "to them are missing")


class SearchHit(BaseModel):
    id: str
    tier: Tier
    text: str
    score: float
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    created_at: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResults(BaseModel):
    results: list[SearchHit]
    pending: list[PendingTurn] = Field(default_factory=list, description=(
        "What the user said lately that the tiers have not learned yet and that shares words with the query, best "
        "first (a search of the present only: without as_of, filters or tiers)."))


class ContextBlock(BaseModel):
    narrative: str | None = None
    narrative_version: int | None = None
    rules: list[ContextMemory]
    memories: list[ContextMemory]
    recent_turns: list[Turn]
    pending: list[PendingTurn] = Field(default_factory=list, description=(
        "What the user said in other sessions lately that the tiers have not learned yet (learned: false), best "
        "first; each leaves once learned, when it is among the memories instead."))
    tokens: int
    degraded: list[str] = Field(default_factory=list, description="engines that were unreachable, so parts are missing")


class NarrativeAnswer(BaseModel):
    narrative: str
    version: int
    generated_at: datetime
    citations: list[str]


class NarrativePending(BaseModel):
    status: Literal["generating"] = "generating"
    job_id: str | None = Field(None, description="The pending job: GET /v1/jobs/{job_id} follows it.")
    reason: str | None = Field(None, description="Why it waits, when an attempt failed (it is retried).")


class ExportedNarrative(BaseModel):
    version: int
    text: str
    citations: list[str]
    model: str | None = None
    generated_at: datetime


class ExportedJob(BaseModel):
    job_id: str
    tier: str
    status: str
    added: int
    updated: int
    superseded: int
    reason: str | None = None
    error: str | None = None
    processed_at: datetime


class ExportedUsage(BaseModel):
    job_id: str | None = None
    job_ids: list[str] = Field(default_factory=list)
    tier: str | None = None
    purpose: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    calls: int
    created_at: datetime


class ExportedSession(BaseModel):
    session_id: str
    turns: list[Turn]


class ExportedHeldJob(BaseModel):
    """A job a tier holds in the user's reflection window, not learned yet (it carries the user's words)."""

    tier: str
    held_at: datetime
    attempts: int
    last_error: str | None = None
    job: ReflectionJob


class UserExport(BaseModel):
    """One page of everything stored for the user. A Lambda answer is at most 6 MB, so a large export comes in
    pages: ask again with `cursor=next_cursor` until it is null; each page continues where the last stopped."""

    user_id: str
    exported_at: datetime
    memories: list[Memory] = Field(default_factory=list)
    events: list[MemoryEvent] = Field(default_factory=list)
    narratives: list[ExportedNarrative] = Field(default_factory=list)
    jobs: list[ExportedJob] = Field(default_factory=list)
    usage: list[ExportedUsage] = Field(default_factory=list)
    held_jobs: list[ExportedHeldJob] = Field(default_factory=list)
    working_memory: list[ExportedSession] = Field(default_factory=list)
    pending: list[PendingTurn] = Field(default_factory=list, description="What the user said that recall shows "
                                       "until the tiers have learned it (entries of learned jobs may remain here "
                                       "until the next recall removes them).")
    next_cursor: str | None = Field(None, description="null on the last page")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# ---------------------------------------------------------------- validation


def parse(model: type[M], data: Any) -> M:
    """Validate input into a request model; a failure is a 400 with the fields that were wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc)
        message = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details[:3]) or "invalid request"
        raise ValidationFailed(message, details=details) from exc


def check_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not _SAFE_ID.match(user_id):
        raise ValidationFailed("user_id: must be 1-128 characters of letters, digits and . _ : @ -")
    return user_id
