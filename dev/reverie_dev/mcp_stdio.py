"""`reverie mcp`: the memory tools over stdio for desktop clients, forwarding each call to the HTTP API (they
hold only an API key)."""

from __future__ import annotations

from typing import Any

from reverie.api.mcp.tools import (
    AddMemories,
    AddTurn,
    AskMemory,
    DeepMemoryQuery,
    DeleteMemories,
    GetContext,
    ListMemories,
    SearchMemory,
    build_mcp_server,
)
from reverie_client import ReverieAPIError, ReverieClient


class HttpTools:
    """The tools' backend over the HTTP API (see reverie.api.mcp.tools)."""

    def __init__(self, client: Any):
        self.client = client  # a reverie_client.ReverieClient

    def add_memories(self, user_id: str, args: AddMemories) -> dict:
        return self.client.add_memories(user_id, args.text, infer=args.infer, metadata=args.metadata)

    def search_memory(self, user_id: str, args: SearchMemory) -> dict:
        return self.client.search(user_id, args.query, tiers=args.tiers, limit=args.limit)

    def list_memories(self, user_id: str, args: ListMemories) -> dict:
        return self.client.list_memories(user_id, tier=args.tier, limit=args.limit, cursor=args.cursor)

    def delete_memories(self, user_id: str, args: DeleteMemories) -> dict:
        deleted: list[str] = []
        not_found: list[str] = []
        for memory_id in args.memory_ids:
            try:
                # DELETE takes no user: check ownership first so a tool bound to one user cannot
                # delete another user's memory by id.
                owner = self.client.get_memory(memory_id).get("user_id")
                if owner is not None and owner != user_id:
                    not_found.append(memory_id)
                    continue
                self.client.delete_memory(memory_id)
                deleted.append(memory_id)
            except ReverieAPIError as exc:
                if exc.status != 404:
                    raise
                not_found.append(memory_id)
        return {"deleted": deleted, "not_found": not_found}

    def ask_memory(self, user_id: str, args: AskMemory) -> dict:
        return self.client.ask(user_id, args.question)

    def deep_memory_query(self, user_id: str, args: DeepMemoryQuery) -> dict:
        return self.client.deep_query(user_id, args.query)

    def get_context(self, user_id: str, args: GetContext) -> dict:
        return self.client.context(user_id, session_id=args.session_id, query=args.query, max_tokens=args.max_tokens)

    def add_turn(self, user_id: str, args: AddTurn) -> dict:
        return self.client.record_turn(user_id, args.session_id, [m.model_dump() for m in args.messages],
                                       metadata=args.metadata)


def run_stdio(base_url: str, api_key: str, user_id: str) -> None:
    """Serve the memory tools over stdio, forwarding each call to the HTTP API."""
    with ReverieClient(base_url, api_key) as client:
        backend = HttpTools(client)
        server = build_mcp_server(lambda: (backend, user_id))
        server.run("stdio")
