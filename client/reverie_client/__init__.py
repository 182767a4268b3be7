"""A small synchronous Python client for Reverie's HTTP API (one method per endpoint).

Usage::

    from reverie_client import ReverieClient

    with ReverieClient("https://api.example.com", api_key="rk_...") as rv:
        job = rv.add_memories("alice", "I moved to Lisbon and I'm vegetarian.")
        rv.wait_for_job(job["job_id"], timeout_s=60)
        print(rv.search("alice", "where does the user live?")["results"])

Every method returns the decoded JSON body; any 4xx/5xx raises `ReverieAPIError(status, code, message)`.
The API key is sent only in the Authorization header and is never logged or shown in `repr`.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

try:  # httpx is the named dependency; httpx2 (its successor, pulled in by mcp 2.x) has the same API.
    import httpx
except ImportError:  # pragma: no cover - depends on the environment
    import httpx2 as httpx  # type: ignore[no-redef]

__all__ = ["FINAL_TIER_STATES", "ReverieAPIError", "ReverieClient", "job_is_final", "parse_retry_after"]

FINAL_TIER_STATES = frozenset({"done", "empty", "failed", "dead"})
_RAW_TEXT_LIMIT = 500  # an error page can be large; its head is enough to tell what went wrong


class ReverieAPIError(Exception):
    """An error answer (4xx/5xx) from the Reverie API."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _quote(segment: str) -> str:
    # Ids and user ids go into the path: quote everything, '/' included, so they cannot change the route.
    return quote(str(segment), safe="")


def _every_page(fetch: Callable[[str | None], dict[str, Any]], key: str) -> Iterator[dict[str, Any]]:
    """The items under `key` of every page, following next_cursor until it is empty."""
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        page = fetch(cursor)
        yield from page.get(key) or []
        cursor = page.get("next_cursor")
        if not cursor:
            return
        if cursor in seen:  # a server bug must not turn into an endless loop
            raise ReverieAPIError(500, "cursor_cycle", f"next_cursor {cursor!r} was already returned")
        seen.add(cursor)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _tier_state(value: Any) -> str | None:
    # A tier is reported either as a bare state string or as an object carrying one.
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        state = value.get("status", value.get("state"))
        return state if isinstance(state, str) else None
    return None


def job_is_final(job: dict[str, Any]) -> bool:
    """True when every tier of the job is done / empty / failed / dead (or, with no tiers, the job is)."""
    tiers = job.get("tiers")
    if isinstance(tiers, dict) and tiers:
        return all(_tier_state(v) in FINAL_TIER_STATES for v in tiers.values())
    return _tier_state(job) in FINAL_TIER_STATES


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ReverieClient:
    """Client for one Reverie project (the project is the API key's; it is never sent in a body)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        session: httpx.Client | None = None,
        sleep: Callable[[float], None] | None = None,
    ):
        if not base_url:
            raise ValueError("base_url is required")
        if not api_key:
            raise ValueError("api_key is required")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._owns_session = session is None
        self._session = session if session is not None else httpx.Client(timeout=timeout_s)
        # Injectable so tests (and callers with their own scheduler) need not really wait between polls.
        self._sleep = sleep or time.sleep

    def __repr__(self) -> str:  # the key stays out of reprs, logs and tracebacks
        return f"ReverieClient(base_url={self.base_url!r})"

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> ReverieClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        request_headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "User-Agent": "reverie-client/0.1",
            **(headers or {}),
        }
        content = None
        if body is not None:
            content = json.dumps(body, default=str).encode()
            request_headers["Content-Type"] = "application/json"
        response = self._session.request(
            method,
            self.base_url + path,
            params=_drop_none(params or {}),
            content=content,
            headers=request_headers,
            timeout=self._timeout_s,
        )
        if response.status_code >= 400:
            raise self._error(response)
        return response

    @staticmethod
    def _error(response: httpx.Response) -> ReverieAPIError:
        status = response.status_code
        text = response.text
        try:
            error = json.loads(text).get("error")
        except (ValueError, AttributeError):
            error = None
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return ReverieAPIError(status, error["code"], str(error.get("message") or error["code"]))
        # Not our error shape (a proxy, API Gateway or a crash page): keep the raw text for the caller.
        message = text.strip()[:_RAW_TEXT_LIMIT] or response.reason_phrase or "HTTP error"
        return ReverieAPIError(status, f"http_{status}", message)

    @staticmethod
    def _decode(response: httpx.Response) -> dict[str, Any]:
        if response.status_code == 204 or not response.content:
            return {}
        return response.json()

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._decode(self._send(method, path, **kwargs))

    # --- endpoints -------------------------------------------------------------------------------

    def chat(
        self, user_id: str, session_id: str, message: str, *, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """POST /v1/chat: one chat turn with memory; returns reply, turn_id, job_id and the context used."""
        body = _drop_none(
            {"user_id": user_id, "session_id": session_id, "message": message, "metadata": metadata}
        )
        return self._request("POST", "/v1/chat", body=body)

    def record_turn(
        self,
        user_id: str,
        session_id: str,
        messages: list[dict[str, str]],
        *,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/turns: a turn your own model answered (`messages`, each {role, content}, as it happened),
        remembered like a chat turn; returns turn_id, job_id and memory_saved (202). With `idempotency_key`, a
        retry gets the first answer and records nothing more.

        With `context()` before your model's call, it is the pattern for streaming clients."""
        body = _drop_none({"user_id": user_id, "session_id": session_id, "messages": messages, "metadata": metadata})
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._request("POST", "/v1/turns", body=body, headers=headers)

    def add_memories(
        self,
        user_id: str,
        messages: str | list[dict[str, str]],
        *,
        infer: bool = True,
        metadata: dict[str, Any] | None = None,
        tier: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/memories: infer=True answers {job_id} (202); infer=False stores as is, in `tier` (semantic unless
        given), {memories} (201). `session_id` groups memories said together (search lifts a hit's neighbours).

        `messages` may be a plain string, taken as one user message.
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        body = _drop_none({"user_id": user_id, "messages": messages, "infer": infer, "metadata": metadata,
                           "tier": tier, "session_id": session_id})
        return self._request("POST", "/v1/memories", body=body)

    def list_memories(
        self,
        user_id: str,
        *,
        tier: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        include_superseded: bool | None = None,
    ) -> dict[str, Any]:
        """GET /v1/memories: one page, {memories, next_cursor}; with include_superseded=True, the replaced ones too."""
        params = {"user_id": user_id, "tier": tier, "limit": limit, "cursor": cursor,
                  "include_superseded": None if include_superseded is None else str(bool(include_superseded)).lower()}
        return self._request("GET", "/v1/memories", params=params)

    def iter_memories(
        self, user_id: str, *, tier: str | None = None, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every memory of the user, page after page, following next_cursor until it is empty."""
        return _every_page(lambda cursor: self.list_memories(user_id, tier=tier, limit=page_size, cursor=cursor),
                           "memories")

    def get_memory(self, memory_id: str) -> dict[str, Any]:
        """GET /v1/memories/{id}."""
        return self._request("GET", f"/v1/memories/{_quote(memory_id)}")

    def edit_memory(self, memory_id: str, text: str) -> dict[str, Any]:
        """PATCH /v1/memories/{id}: correct a current memory's text (embedded again; its history gets an UPDATE
        event with the old text); returns the memory. 409 for a superseded memory or a text another holds."""
        return self._request("PATCH", f"/v1/memories/{_quote(memory_id)}", body={"text": text})

    def memory_history(self, memory_id: str) -> dict[str, Any]:
        """GET /v1/memories/{id}/history: {events}."""
        return self._request("GET", f"/v1/memories/{_quote(memory_id)}/history")

    def delete_memory(self, memory_id: str) -> None:
        """DELETE /v1/memories/{id} (204)."""
        self._send("DELETE", f"/v1/memories/{_quote(memory_id)}")

    def search(
        self,
        user_id: str,
        query: str,
        *,
        tiers: list[str] | None = None,
        limit: int | None = None,
        filters: dict[str, Any] | None = None,
        as_of: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/memories/search: {results: [{id, tier, text, score, valid_from, valid_to, ...}]}."""
        body = _drop_none(
            {
                "user_id": user_id,
                "query": query,
                "tiers": tiers,
                "limit": limit,
                "filters": filters,
                "as_of": as_of,
            }
        )
        return self._request("POST", "/v1/memories/search", body=body)

    def ask(self, user_id: str, question: str) -> dict[str, Any]:
        """POST /v1/memories/ask: {answer, citations}."""
        return self._request("POST", "/v1/memories/ask", body={"user_id": user_id, "question": question})

    def deep_query(self, user_id: str, query: str) -> dict[str, Any]:
        """POST /v1/memories/deep-query: {answer, citations, tiers_used}."""
        return self._request("POST", "/v1/memories/deep-query", body={"user_id": user_id, "query": query})

    def context(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        query: str | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """GET /v1/context: {narrative?, rules, memories, recent_turns, tokens}."""
        params = {"user_id": user_id, "session_id": session_id, "query": query, "max_tokens": max_tokens}
        return self._request("GET", "/v1/context", params=params)

    def list_users(
        self, *, limit: int | None = None, cursor: str | None = None, prefix: str | None = None
    ) -> dict[str, Any]:
        """GET /v1/users: one page of the project's users in id order, each with its counts and last activity,
        {users, next_cursor}; `prefix` keeps the users whose id starts with it."""
        return self._request("GET", "/v1/users", params={"limit": limit, "cursor": cursor, "prefix": prefix})

    def iter_users(self, *, prefix: str | None = None, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every user of the project, page after page, following next_cursor until it is empty."""
        return _every_page(lambda cursor: self.list_users(limit=page_size, cursor=cursor, prefix=prefix), "users")

    def user_jobs(self, user_id: str, *, limit: int | None = None) -> dict[str, Any]:
        """GET /v1/users/{user_id}/jobs: the user's recent jobs, the latest to move first, each with its status and
        every tier's outcome and reason, {user_id, jobs, degraded}."""
        return self._request("GET", f"/v1/users/{_quote(user_id)}/jobs", params={"limit": limit})

    def narrative(self, user_id: str) -> dict[str, Any]:
        """GET /v1/users/{user_id}/narrative."""
        return self._request("GET", f"/v1/users/{_quote(user_id)}/narrative")

    def regenerate_narrative(self, user_id: str) -> dict[str, Any]:
        """POST /v1/users/{user_id}/narrative/regenerate (202)."""
        return self._request("POST", f"/v1/users/{_quote(user_id)}/narrative/regenerate")

    def export_user(self, user_id: str) -> dict[str, Any]:
        """GET /v1/users/{user_id}/export: everything stored about the user, every page followed and joined."""
        path = f"/v1/users/{_quote(user_id)}/export"
        export = self._request("GET", path)
        while export.get("next_cursor"):
            page = self._request("GET", path, params={"cursor": export["next_cursor"]})
            for name, value in page.items():
                if isinstance(value, list):
                    export.setdefault(name, []).extend(value)
            export["next_cursor"] = page.get("next_cursor")
        return export

    def forget_user(self, user_id: str) -> dict[str, Any]:
        """DELETE /v1/users/{user_id}: {job_id} (202)."""
        return self._request("DELETE", f"/v1/users/{_quote(user_id)}")

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{job_id}: {status, tiers}."""
        return self._request("GET", f"/v1/jobs/{_quote(job_id)}")

    def wait_for_job(self, job_id: str, timeout_s: float = 120.0, poll: float = 1.0) -> dict[str, Any]:
        """Poll a job until every tier is final (done / empty / failed / dead); return its last state.

        Waits as long as the server's Retry-After says (else `poll` seconds) between polls, sends the last
        ETag back as If-None-Match (a 304 means unchanged), and raises TimeoutError after `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        path = f"/v1/jobs/{_quote(job_id)}"
        etag: str | None = None
        job: dict[str, Any] = {}
        while True:
            response = self._send("GET", path, headers={"If-None-Match": etag} if etag else None)
            if response.status_code != 304:
                job = self._decode(response)
                etag = response.headers.get("etag") or etag
            if job and job_is_final(job):
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} not finished after {timeout_s:g}s (last state: {job!r})")
            wait = parse_retry_after(response.headers.get("retry-after"))
            self._sleep(min(poll if wait is None else wait, remaining))

    def status(self) -> dict[str, Any]:
        """GET /v1/status."""
        return self._request("GET", "/v1/status")
