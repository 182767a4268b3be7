"""The eight MCP memory tools, each defined once by its arguments model, and the server that offers them.

A backend implements one method per tool, `name(user_id, args) -> dict`, where `args` is the tool's model,
already validated: `StoreTools` here (the memory API's operations, bound to the API key's project) and, for
the stdio server of the development package, one over the HTTP API. Names and required parameters follow
OpenMemory's, so its users can switch without changing clients; `add_turn` (POST /v1/turns) has no counterpart there.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from reverie.api import limits, memories
from reverie.api.schemas import (
    AddMemoriesRequest,
    AskRequest,
    ContextQuery,
    DeepQueryRequest,
    ListMemoriesQuery,
    SearchRequest,
    check_user_id,
    parse,
)
from reverie.chat.schemas import RecordTurnRequest
from reverie.chat.turn import record_turn
from reverie.domain.fields import MAX_PAGE_SIZE, canonical_uuid, storable_text
from reverie.jobs import narratives as narrative_jobs
from reverie.store import memories as memory_rows

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

logger = logging.getLogger(__name__)

MISSING_USER_MESSAGE = (
    "No user given: add the header X-Reverie-User: <user id> or the query parameter ?user_id=<user id> "
    "to the MCP server URL in your client's configuration."
)
_INSTRUCTIONS = (
    "Long-term memory about the user. Search it before answering anything that may depend on earlier "
    "conversations; add to it when the user shares lasting facts, preferences or asks you to remember."
)

TierName = Literal["episodic", "semantic", "procedural"]


# ---------------------------------------------------------------- the tools' arguments


class AddMemories(BaseModel):
    text: Annotated[str, Field(min_length=1, description="What to remember, in natural language.")]
    infer: Annotated[bool, Field(description="Extract facts from the text (true) or store it verbatim (false).")] = (
        True)
    metadata: Annotated[dict[str, Any] | None, Field(
        description="Optional JSON metadata to keep with the memory.")] = None


class SearchMemory(BaseModel):
    query: Annotated[str, Field(min_length=1, description="What to look for, in natural language.")]
    limit: Annotated[int, Field(ge=1, le=100, description="Most results to return.")] = 10
    tiers: Annotated[list[TierName] | None, Field(description="Only these memory tiers (default: all).")] = None


class ListMemories(BaseModel):
    tier: Annotated[TierName | None, Field(description="Only this memory tier (default: all).")] = None
    limit: Annotated[int, Field(ge=1, le=200, description="Page size.")] = 50
    cursor: Annotated[str | None, Field(description="next_cursor from the previous page, to get the next one.")] = None


class DeleteMemories(BaseModel):
    memory_ids: Annotated[list[str], Field(min_length=1, max_length=100, description="Ids of the memories to delete.")]


class AskMemory(BaseModel):
    question: Annotated[str, Field(min_length=1, description="A question about the user.")]


class DeepMemoryQuery(BaseModel):
    query: Annotated[str, Field(min_length=1, description="A question needing reasoning across memories.")]


class GetContext(BaseModel):
    session_id: Annotated[str | None, Field(description="Current conversation id, for its recent turns.")] = None
    query: Annotated[str | None, Field(description="The user's current message, to pick memories.")] = None
    max_tokens: Annotated[int | None, Field(ge=1, description="Token budget for the whole block.")] = None


class SaidMessage(BaseModel):
    role: Annotated[Literal["user", "assistant", "system"], Field(description="Who said it.")]
    content: Annotated[str, Field(min_length=1, description="What was said.")]


class AddTurn(BaseModel):
    messages: Annotated[list[SaidMessage], Field(
        min_length=1, description="The exchange as it happened, in order: the user's message and your reply.")]
    session_id: Annotated[str, Field(
        min_length=1, description="The conversation's id: the turn joins its recent turns.")] = "mcp"
    metadata: Annotated[dict[str, Any] | None, Field(
        description="Optional JSON metadata to keep with the turn.")] = None


@dataclass(frozen=True)
class Tool:
    name: str
    args: type[BaseModel]
    description: str
    annotations: ToolAnnotations


_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)

TOOLS: tuple[Tool, ...] = (
    Tool("add_memories", AddMemories,
         "Store something worth remembering about the user: call it whenever they share facts about themselves, "
         "their preferences or plans, or ask you to remember something.",
         ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)),
    Tool("search_memory", SearchMemory,
         "Search the user's memories by meaning; call it before answering anything that may depend on what they "
         "said in earlier conversations.", _READ_ONLY),
    Tool("list_memories", ListMemories,
         "List the user's stored memories a page at a time (pass next_cursor back as cursor).", _READ_ONLY),
    Tool("delete_memories", DeleteMemories,
         "Delete the user's memories with these ids (ids come from search_memory or list_memories); use when they "
         "ask you to forget something.",
         ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)),
    Tool("ask_memory", AskMemory,
         "Answer a question about the user from their memories, citing the ids of the memories used.", _READ_ONLY),
    Tool("deep_memory_query", DeepMemoryQuery,
         "Answer a complex question (multi-step, over time, or across topics) by reasoning over all memory tiers; "
         "slower than ask_memory.", _READ_ONLY),
    Tool("get_context", GetContext,
         "Get a ready-made context block for this user (profile narrative, rules, relevant memories, recent turns, "
         "and what they said lately that is not learned yet) within a token budget; call it at the start of a "
         "conversation.", _READ_ONLY),
    Tool("add_turn", AddTurn,
         "Record a conversation turn as it happened (the user's message and your reply), so it joins the recent turns "
         "at once and is learned like a chat turn; call it after each reply.",
         ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)),
)
TOOL_NAMES = tuple(t.name for t in TOOLS)


# ---------------------------------------------------------------- the server

# What a tool call acts on: the backend and the user (None when the client's configuration names none).
ToolsForRequest = Callable[[], tuple[Any, str | None]]


def build_mcp_server(tools_for_request: ToolsForRequest) -> MCPServer:
    """The SDK server with the eight tools; `tools_for_request` says whom each call acts on."""
    # The MCP server stack is imported on the first /mcp request, not in every cold start of the memory API.
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("reverie", title="Reverie memory", instructions=_INSTRUCTIONS, version="0.1.0",
                       log_level="WARNING")
    for tool in TOOLS:
        # Plain functions: the SDK runs them on a worker thread, so a blocking backend is fine.
        server.add_tool(_entry(tool, tools_for_request), name=tool.name, description=tool.description,
                        annotations=tool.annotations)
    return server


def _entry(tool: Tool, tools_for_request: ToolsForRequest) -> Callable[..., CallToolResult]:
    """The function the SDK calls: its signature is the tool's model, so the SDK's schema and validation are
    the model's."""

    def call(**kwargs: Any) -> CallToolResult:
        return _invoke(tools_for_request, tool.name, tool.args(**kwargs))

    call.__name__ = tool.name
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
            field.annotation, *field.metadata, Field(description=field.description)],
            default=inspect.Parameter.empty if field.is_required() else field.default)
         for name, field in tool.args.model_fields.items()],
        return_annotation=CallToolResult,
    )
    return call


def _invoke(tools_for_request: ToolsForRequest, name: str, args: BaseModel) -> CallToolResult:
    """Run one backend call; every outcome becomes a tool result, failures never a protocol error."""
    try:
        tools, user_id = tools_for_request()
        if not user_id:
            return _error("missing_user", MISSING_USER_MESSAGE)
        return _result(getattr(tools, name)(user_id, args))
    except Exception as exc:
        status, code = getattr(exc, "status", None), getattr(exc, "code", None)
        if isinstance(status, int) and isinstance(code, str) and code:
            # Our API errors are written for callers (validation, not found...): the model can act on them.
            message = getattr(exc, "message", None) or str(exc) or code
            logger.info("MCP tool %s answered %s %s", name, status, code)
            return _error(code, str(message))
        # Anything else is a crash: its text and traceback stay in our logs, not in the model's context.
        logger.exception("MCP tool %s failed", name)
        return _error("internal_error", "The memory service failed while running this tool; try again later.")


def _result(payload: Any, *, is_error: bool = False) -> CallToolResult:
    text = json.dumps(payload, default=str, ensure_ascii=False)
    decoded = json.loads(text)  # what the client will see, so structured content matches the text exactly
    structured = decoded if isinstance(decoded, dict) else {"result": decoded}
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured,
                          is_error=is_error)


def _error(code: str, message: str) -> CallToolResult:
    return _result({"error": {"code": code, "message": message}}, is_error=True)


# ---------------------------------------------------------------- the backend over the stores


class StoreTools:
    """The tools over the memory API's operations, bound to one project (the API key's)."""

    def __init__(self, clients, project_id: str):
        self.clients = clients
        self.project_id = project_id

    def _spends_model(self) -> None:
        """A tool call that spends model calls counts in the project's model budget, as its route would (the
        POST /mcp request itself counted in the request budget): over it, the tool answers `rate_limited`."""
        limits.charge(self.clients, self.project_id, requests=False, model=True)

    def add_memories(self, user_id: str, args: AddMemories) -> dict:
        request = parse(AddMemoriesRequest, {
            "user_id": user_id, "messages": [{"role": "user", "content": args.text}], "infer": args.infer,
            "metadata": args.metadata or {},
        })
        if request.infer:
            self._spends_model()
        return memories.add_memories(self.clients, self.project_id, request).body.model_dump(mode="json")

    def search_memory(self, user_id: str, args: SearchMemory) -> dict:
        request = parse(SearchRequest, {"user_id": user_id, "query": args.query, "limit": args.limit,
                                        "tiers": args.tiers})
        return memories.search(self.clients, self.project_id, request).model_dump(mode="json")

    def list_memories(self, user_id: str, args: ListMemories) -> dict:
        query = parse(ListMemoriesQuery, {"user_id": user_id, "tier": args.tier,
                                          "limit": min(args.limit, MAX_PAGE_SIZE), "cursor": args.cursor})
        return memories.list_memories(self.clients, self.project_id, query).model_dump(mode="json")

    def delete_memories(self, user_id: str, args: DeleteMemories) -> dict:
        check_user_id(user_id)
        deleted, not_found = [], []
        for memory_id in args.memory_ids:
            # DELETE by id is project-wide: a tool acting for one user may only delete that user's memories. An
            # id in another form than ids are given out in (urn:uuid:..., braces) is not found.
            canonical = canonical_uuid(memory_id)
            memory = canonical and memory_rows.get(self.clients.db, self.project_id, canonical)
            if memory and memory.user_id == user_id:  # its narratives go too: their hot copy first (as DELETE does)
                narrative_jobs.drop(self.clients, self.project_id, user_id, began_at=time.time())
            if not memory or memory.user_id != user_id or not memory_rows.delete(
                self.clients.db, self.project_id, canonical
            ):
                not_found.append(storable_text(memory_id))  # echoed: no NUL or lone surrogate goes back
            else:
                deleted.append(memory_id)
        return {"deleted": deleted, "not_found": not_found}

    def ask_memory(self, user_id: str, args: AskMemory) -> dict:
        request = parse(AskRequest, {"user_id": user_id, "question": args.question})
        self._spends_model()
        return memories.ask(self.clients, self.project_id, request).model_dump(mode="json")

    def deep_memory_query(self, user_id: str, args: DeepMemoryQuery) -> dict:
        request = parse(DeepQueryRequest, {"user_id": user_id, "query": args.query})
        self._spends_model()
        return memories.deep_query(self.clients, self.project_id, request).model_dump(mode="json")

    def get_context(self, user_id: str, args: GetContext) -> dict:
        data: dict[str, Any] = {"user_id": user_id, "session_id": args.session_id, "query": args.query}
        if args.max_tokens is not None:
            data["max_tokens"] = args.max_tokens
        return memories.context(self.clients, self.project_id, parse(ContextQuery, data)).model_dump(mode="json")

    def add_turn(self, user_id: str, args: AddTurn) -> dict:
        # No model call: the POST /mcp request counted in the request budget, as POST /v1/turns does.
        request = parse(RecordTurnRequest, {
            "user_id": user_id, "session_id": args.session_id, "messages": [m.model_dump() for m in args.messages],
            "metadata": args.metadata or {},
        })
        return record_turn(self.clients, self.project_id, request).model_dump(mode="json")
