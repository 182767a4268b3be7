"""The memory API: memories, search, ask, context, users, jobs, status, OpenAPI and MCP."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query

from reverie import memory_service as service
from reverie import openapi
from reverie.http import JSON, error_response, make_resolver, oversized_body, project_id
from reverie.memory_service import (
    AskAnswer,
    ContextBlock,
    DeepAnswer,
    EventList,
    JobAccepted,
    MemoryList,
    MemoryPage,
    NarrativeAnswer,
    NarrativePending,
    Reply,
    SearchResults,
    UserExport,
)
from reverie.models import (
    MAX_PAGE_SIZE,
    MESSAGE_TEXT_PATTERN,
    SAFE_ID_PATTERN,
    AddMemoriesRequest,
    AskRequest,
    ContextQuery,
    DeepQueryRequest,
    JobStatus,
    ListMemoriesQuery,
    Memory,
    SearchRequest,
    Tier,
)
from reverie.observability import logger, metrics, tracer
from reverie.runtime import clients

app = make_resolver()

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


def _answer(reply: Reply) -> Response:
    return Response(reply.status, JSON if reply.body is not None else None, reply.body, headers=reply.headers)


# ---------------------------------------------------------------- memories


@app.post("/v1/memories", summary="Add memories", responses={
    201: _json(MemoryList, "infer=false: stored as given."),
    202: _json(JobAccepted, "infer=true: a reflection job was queued; poll GET /v1/jobs/{job_id}."),
})
def add_memories(request: AddMemoriesRequest) -> Response[MemoryList | JobAccepted]:
    return _answer(service.add_memories(clients(), project_id(app), request))


@app.get("/v1/memories", summary="List a user's current memories, newest first")
def list_memories(
    user_id: UserQuery,
    tier: Annotated[Tier | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512, pattern=r"^[A-Za-z0-9_-]+$",
                                        description="next_cursor of the previous page; any other is a 400.")] = None,
) -> MemoryPage:
    query = service.parse(ListMemoriesQuery, {"user_id": user_id, "tier": tier, "limit": limit, "cursor": cursor})
    return service.list_memories(clients(), project_id(app), query)


@app.get("/v1/memories/<memory_id>", summary="Get a memory (current or superseded)")
def get_memory(memory_id: MemoryId) -> Memory:
    return service.get_memory(clients(), project_id(app), memory_id)


@app.get("/v1/memories/<memory_id>/history", summary="Every change of a memory")
def memory_history(memory_id: MemoryId) -> EventList:
    return service.memory_history(clients(), project_id(app), memory_id)


@app.delete("/v1/memories/<memory_id>", summary="Delete a memory", status_code=204,
            responses={204: {"description": "Deleted."}})
def delete_memory(memory_id: MemoryId):
    service.delete_memory(clients(), project_id(app), memory_id)
    return Response(204)


@app.post("/v1/memories/search", summary="Hybrid search over a user's memories")
def search(request: SearchRequest) -> SearchResults:
    return service.search(clients(), project_id(app), request)


@app.post("/v1/memories/ask", summary="Answer a question from memories, with citations")
def ask(request: AskRequest) -> AskAnswer:
    return service.ask(clients(), project_id(app), request)


@app.post("/v1/memories/deep-query", summary="Answer across every tier and the timeline, with citations")
def deep_query(request: DeepQueryRequest) -> DeepAnswer:
    return service.deep_query(clients(), project_id(app), request)


@app.get("/v1/context", summary="The start-of-conversation context block, within max_tokens")
def context(
    user_id: UserQuery,
    session_id: Annotated[str | None, Query(pattern=SAFE_ID_PATTERN)] = None,
    query: Annotated[str | None, Query(max_length=CONTEXT_QUERY_CHARS, pattern=MESSAGE_TEXT_PATTERN, description=(
        "The user's current message, to pick memories by (cut it to fit: a URL must stay within API Gateway's "
        "request-line limit)."))] = None,
    max_tokens: Annotated[int, Query(ge=50, le=32000)] = 1500,
) -> ContextBlock:
    parsed = service.parse(ContextQuery, {"user_id": user_id, "session_id": session_id, "query": query,
                                          "max_tokens": max_tokens})
    return service.context(clients(), project_id(app), parsed)


# ---------------------------------------------------------------- users


@app.get("/v1/users/<user_id>/narrative", summary="The user's narrative", responses={
    200: _json(NarrativeAnswer, "The newest version."),
    202: _json(NarrativePending, "None yet: a job was queued; ask again later."),
})
def get_narrative(user_id: UserPath) -> Response[NarrativeAnswer | NarrativePending]:
    return _answer(service.get_narrative(clients(), project_id(app), user_id))


@app.post("/v1/users/<user_id>/narrative/regenerate", summary="Queue a new narrative version", status_code=202)
def regenerate_narrative(user_id: UserPath) -> Response[JobAccepted]:
    return Response(202, JSON, service.regenerate_narrative(clients(), project_id(app), user_id))


@app.get("/v1/users/<user_id>/export", summary="Everything stored for the user")
def export_user(user_id: UserPath) -> UserExport:
    return service.export_user(clients(), project_id(app), user_id)


@app.delete("/v1/users/<user_id>", summary="Forget the user everywhere", status_code=202)
def forget_user(user_id: UserPath) -> Response[JobAccepted]:
    return Response(202, JSON, service.forget_user(clients(), project_id(app), user_id))


# ---------------------------------------------------------------- jobs, status, OpenAPI, MCP


@app.get("/v1/jobs/<job_id>", summary="A job's outcome per tier (ETag; Retry-After while not final)",
         responses={200: _json(JobStatus, "The job's outcome per tier."),
                    304: {"description": "Unchanged since the ETag sent in If-None-Match."}})
def job(
    job_id: JobId, if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response[JobStatus | None]:
    return _answer(service.job(clients(), project_id(app), job_id, if_none_match))


@app.get("/v1/status", summary="Queue depths, DLQs, the outbox and the last write per tier")
def status() -> dict:
    return service.status(clients(), project_id(app))


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi_document() -> dict:
    return openapi.document(app)


@app.route("/mcp", method=["GET", "POST", "DELETE"], include_in_schema=False)
def mcp():
    answer = service.serve_mcp(clients(), project_id(app), app.current_event.raw_event)
    headers = {k: v for k, v in answer.headers.items() if k != "content-length"}  # API Gateway sets its own
    return Response(answer.status, None, answer.body.decode("utf-8"), headers=headers)


def _no_project_in_query(app, next_middleware):
    # The project is the API key's (seed 000): a query naming one is refused, not silently ignored.
    if {"project", "project_id"} & set(app.current_event.query_string_parameters or {}):
        return error_response(400, "validation_error", "the project comes from the API key; remove it from the query")
    return next_middleware(app)


app.use([_no_project_in_query])


@app.exception_handler(RequestUnsupportedContentType)
def _not_json(exc: Exception) -> Response:
    return error_response(415, "unsupported_media_type", "send the body as application/json")


@app.exception_handler(ValueError)
def _unreadable(exc: ValueError) -> Response:
    # The framework reads form bodies too, and a malformed one (multipart without a boundary) raises here.
    content_type = app.current_event.headers.get("content-type") or ""
    if content_type and not content_type.lower().startswith("application/json"):
        return _not_json(exc)
    return _crash(exc)


@app.exception_handler(UnicodeDecodeError)
def _not_utf8(exc: UnicodeDecodeError) -> Response:
    return error_response(400, "validation_error", "the request body is not UTF-8 JSON")


@app.exception_handler(RecursionError)
def _too_deep(exc: RecursionError) -> Response:
    return error_response(400, "validation_error", "the request body is nested too deeply")


@app.exception_handler(Exception)
def _crash(exc: Exception) -> Response:
    logger.exception("request failed")
    return error_response(500, "internal_error", "the request failed; it is safe to retry")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return oversized_body(event, MAX_BODY_BYTES) or app.resolve(event, context)
