"""The memory API's routes (everything but chat): each parses, calls its operation, answers. The error
mapping they share is the resolver's (reverie.api.resolver). The function serves them with `make_app()`, a
resolver of its own per function instance."""

from contextvars import ContextVar
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query

from reverie.api import inspector, jobs, memories, openapi, users
from reverie.api.resolver import JSON, make_resolver, project_id
from reverie.api.schemas import (
    AddMemoriesRequest,
    AskAnswer,
    AskRequest,
    ContextBlock,
    ContextQuery,
    DeepAnswer,
    DeepQueryRequest,
    EditMemoryRequest,
    ErrorBody,
    EventList,
    JobAccepted,
    JobsAccepted,
    ListMemoriesQuery,
    ListUsersQuery,
    MemoryList,
    MemoryPage,
    NarrativeAnswer,
    NarrativePending,
    SearchRequest,
    SearchResults,
    UserExport,
    UserJobList,
    UserPage,
    parse,
)
from reverie.domain.fields import MAX_PAGE_SIZE, MESSAGE_TEXT_PATTERN, SAFE_ID_PATTERN
from reverie.domain.memory import Memory
from reverie.domain.outcomes import JobStatus
from reverie.domain.tiers import Tier
from reverie.ops.status import ProjectStatus
from reverie.platform.clients import clients


class _Routes(Router):
    """Routes defined once, at import, and served by a resolver per function instance (`make_app`).

    A resolver keeps the request it serves (its current event) on itself, and Powertools' Router reads it from
    the last resolver that included it. These routes read it from the resolver serving the request in hand, so
    instances that share this module (the local runner serves several in one process) never read each other's.
    """

    def __init__(self) -> None:
        self._serving: ContextVar[APIGatewayHttpResolver | None] = ContextVar("memory_api_serving", default=None)
        super().__init__()
        self.use([self._serve])

    @property
    def api_resolver(self) -> APIGatewayHttpResolver | None:
        return self._serving.get()

    @api_resolver.setter
    def api_resolver(self, resolver: APIGatewayHttpResolver | None) -> None:
        pass  # include_router points a Router at one resolver; these follow the request instead (_serve)

    def _serve(self, resolver: APIGatewayHttpResolver, next_middleware):
        token = self._serving.set(resolver)
        try:
            return next_middleware(resolver)
        finally:
            self._serving.reset(token)


app = _Routes()


def make_app() -> APIGatewayHttpResolver:
    """The memory API's resolver with every route: one per function instance (its app.py calls this once)."""
    resolver = make_resolver()
    resolver.include_router(app)
    return resolver

# The largest valid body (100 messages of 32 KB and their metadata) with room to spare; bigger is a 413 at once.
MAX_BODY_BYTES = 4 * 1024 * 1024
# A query string travels in the URL, whose request line API Gateway caps (10 KB with the headers).
CONTEXT_QUERY_CHARS = 2000

UserPath = Annotated[str, Path(pattern=SAFE_ID_PATTERN, description="The user's id in your application.")]
UserQuery = Annotated[str, Query(pattern=SAFE_ID_PATTERN, description="The user's id in your application.")]
MemoryId = Annotated[str, Path(description="A memory id (a UUID); any other value is simply not found.")]
JobId = Annotated[str, Path(pattern=SAFE_ID_PATTERN, description="A job id from a 202 answer.")]


def _json(model, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"model": model}}}


# ---------------------------------------------------------------- memories


@app.post("/v1/memories", summary="Add memories", responses={
    201: _json(MemoryList, "infer=false: stored as given."),
    202: _json(JobsAccepted, "infer=true: reflection jobs were queued (one, or several in order when the messages do "
                             "not fit one queue message); poll GET /v1/jobs/{job_id} for each of job_ids."),
})


def add_memories(request: AddMemoriesRequest) -> Response[MemoryList | JobsAccepted]:
    return memories.add_memories(clients(), project_id(app), request).response()


@app.get("/v1/memories", summary="List a user's current memories, newest first")
def list_memories(
    user_id: UserQuery,
    tier: Annotated[Tier | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512, pattern=r"^[A-Za-z0-9_-]+$",
                                        description="next_cursor of the previous page; any other is a 400.")] = None,
    include_superseded: Annotated[bool, Query(description="Also the memories newer ones replaced (their "
                                                          "superseded_at is set).")] = False,
) -> MemoryPage:
    query = parse(ListMemoriesQuery, {"user_id": user_id, "tier": tier, "limit": limit, "cursor": cursor,
                                      "include_superseded": include_superseded})
    return memories.list_memories(clients(), project_id(app), query)


@app.get("/v1/memories/<memory_id>", summary="Get a memory (current or superseded)")
def get_memory(memory_id: MemoryId) -> Memory:
    return memories.get_memory(clients(), project_id(app), memory_id)


@app.get("/v1/memories/<memory_id>/history", summary="Every change of a memory")
def memory_history(memory_id: MemoryId) -> EventList:
    return memories.memory_history(clients(), project_id(app), memory_id)


@app.patch("/v1/memories/<memory_id>", summary="Correct a memory's text (re-embedded; an UPDATE event keeps the old)",
           responses={200: _json(Memory, "The memory with its new words (its history has the UPDATE)."),
                      409: _json(ErrorBody, "The memory was superseded (history is not rewritten), or another current "
                                            "memory of the user's tier already says this (`conflict`).")})
def edit_memory(memory_id: MemoryId, request: EditMemoryRequest) -> Memory:
    return memories.edit_memory(clients(), project_id(app), memory_id, request)


@app.delete("/v1/memories/<memory_id>", summary="Delete a memory", status_code=204,
            responses={204: {"description": "Deleted."}})


def delete_memory(memory_id: MemoryId):
    memories.delete_memory(clients(), project_id(app), memory_id)
    return Response(204)


@app.post("/v1/memories/search", summary="Hybrid search over a user's memories")
def search(request: SearchRequest) -> SearchResults:
    return memories.search(clients(), project_id(app), request)


@app.post("/v1/memories/ask", summary="Answer a question from memories, with citations")
def ask(request: AskRequest) -> AskAnswer:
    return memories.ask(clients(), project_id(app), request)


@app.post("/v1/memories/deep-query", summary="Answer across every tier and the timeline, with citations")
def deep_query(request: DeepQueryRequest) -> DeepAnswer:
    return memories.deep_query(clients(), project_id(app), request)


@app.get("/v1/context", summary="The start-of-conversation context block, within max_tokens")
def context(
    user_id: UserQuery,
    session_id: Annotated[str | None, Query(pattern=SAFE_ID_PATTERN)] = None,
    query: Annotated[str | None, Query(max_length=CONTEXT_QUERY_CHARS, pattern=MESSAGE_TEXT_PATTERN, description=(
        "The user's current message, to pick memories by (cut it to fit: a URL must stay within API Gateway's "
        "request-line limit)."))] = None,
    max_tokens: Annotated[int, Query(ge=50, le=32000)] = 1500,
) -> ContextBlock:
    parsed = parse(ContextQuery, {"user_id": user_id, "session_id": session_id, "query": query,
                                          "max_tokens": max_tokens})
    return memories.context(clients(), project_id(app), parsed)


# ---------------------------------------------------------------- users


@app.get("/v1/users", summary="The project's users with counts and last activity, a page at a time")
def list_users(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512, pattern=r"^[A-Za-z0-9_-]+$",
                                        description="next_cursor of the previous page; any other is a 400.")] = None,
    prefix: Annotated[str | None, Query(max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$",
                                        description="Only the users whose id starts with this.")] = None,
) -> UserPage:
    query = parse(ListUsersQuery, {"limit": limit, "cursor": cursor, "prefix": prefix})
    return users.list_users(clients(), project_id(app), query)


@app.get("/v1/users/<user_id>/jobs", summary="The user's recent jobs with each tier's outcome and reason")
def user_jobs(user_id: UserPath, limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20) -> UserJobList:
    return users.user_jobs(clients(), project_id(app), user_id, limit)


@app.get("/v1/users/<user_id>/narrative", summary="The user's narrative", responses={
    200: _json(NarrativeAnswer, "The newest version (a stale one too: its regeneration is queued by the chat)."),
    202: _json(NarrativePending, "None yet: a job to write one is pending (`reason` says why when an attempt failed); "
                                 "ask again later, or follow GET /v1/jobs/{job_id}."),
    404: _json(ErrorBody, "The user has no narrative and no memories to write one from (`not_found`)."),
    503: _json(ErrorBody, "The last job that was to write it failed for good (`narrative_failed`, with its error: "
                          "POST .../regenerate tries again), or an engine is unavailable (`unavailable`)."),
})


def get_narrative(user_id: UserPath) -> Response[NarrativeAnswer | NarrativePending]:
    return users.get_narrative(clients(), project_id(app), user_id).response()


@app.post("/v1/users/<user_id>/narrative/regenerate", summary="Queue a new narrative version", status_code=202)
def regenerate_narrative(user_id: UserPath) -> Response[JobAccepted]:
    return Response(202, JSON, users.regenerate_narrative(clients(), project_id(app), user_id))


@app.get("/v1/users/<user_id>/export", summary="Everything stored for the user, a page at a time")
def export_user(
    user_id: UserPath,
    cursor: Annotated[str | None, Query(max_length=1024, pattern=r"^[A-Za-z0-9_-]+$",
                                        description="next_cursor of the previous page; any other is a 400.")] = None,
) -> UserExport:
    return users.export_user(clients(), project_id(app), user_id, cursor)


@app.delete("/v1/users/<user_id>", summary="Forget the user everywhere", status_code=202)
def forget_user(user_id: UserPath) -> Response[JobAccepted]:
    return Response(202, JSON, users.forget_user(clients(), project_id(app), user_id))


# ---------------------------------------------------------------- jobs, status, OpenAPI, MCP


@app.get("/v1/jobs/<job_id>", summary="A job's outcome per tier (ETag; Retry-After while not final)",
         responses={200: _json(JobStatus, "The job's outcome per tier."),
                    304: {"description": "Unchanged since the ETag sent in If-None-Match."}})


def job(
    job_id: JobId, if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response[JobStatus | None]:
    return jobs.job(clients(), project_id(app), job_id, if_none_match).response()


@app.get("/v1/status", summary="The project's jobs: waiting in the outbox, held in windows, failed lately; its last "
                               "write per tier")
def status() -> ProjectStatus:
    return jobs.status(clients(), project_id(app))


@app.get("/ui", include_in_schema=False)
def inspector_page():
    return inspector.asset(inspector.PAGE, app.current_event.headers.get("if-none-match"))


@app.get("/ui/<name>", include_in_schema=False)
def inspector_asset(name: str):
    return inspector.asset(name, app.current_event.headers.get("if-none-match"))


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi_document() -> dict:
    return openapi.document(app.api_resolver)


@app.route("/mcp", method=["GET", "POST", "DELETE"], include_in_schema=False)
def mcp():
    from reverie.api.mcp import transport  # the MCP SDK (half a second to import) only where it is used

    answer = transport.serve_apigw(clients(), project_id(app), app.current_event.raw_event)
    headers = {k: v for k, v in answer.headers.items() if k != "content-length"}  # API Gateway sets its own
    return Response(answer.status, None, answer.body.decode("utf-8"), headers=headers)
