"""The memory API's handler called as API Gateway calls it, as one project's key would."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

from reverie.cache import keys


def event(method: str, path: str, *, project=None, query=None, body=None, headers=None, raw_body=None) -> dict:
    """An API Gateway HTTP API (payload 2.0) event as the authorizer leaves it: the project in its context."""
    query = {k: v for k, v in (query or {}).items() if v is not None}
    request_context = {
        "accountId": "123456789012", "apiId": "local", "domainName": "localhost", "stage": "$default",
        "requestId": str(uuid.uuid4()), "routeKey": "$default", "time": "21/Nov/2026:12:00:00 +0000",
        "timeEpoch": 1795176000000,
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"},
    }
    if project is not None:
        request_context["authorizer"] = {"lambda": {"project_id": project.project_id}}
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path,
        "rawQueryString": urlencode(query, errors="surrogatepass"),  # a lone surrogate too, as bad input
        "queryStringParameters": {k: str(v) for k, v in query.items()} or None,
        "headers": {"content-type": "application/json", "host": "localhost",
                    **({"authorization": f"Bearer {project.key}"} if project is not None else {}), **(headers or {})},
        "requestContext": request_context,
        "body": raw_body if raw_body is not None else (json.dumps(body) if body is not None else None),
        "isBase64Encoded": False,
    }


class Api:
    """Calls the handler as one project's API key would."""

    def __init__(self, handler, context, project):
        self.handler, self.context, self.project = handler, context, project

    def __call__(self, method, path, **kwargs):
        answer = self.handler(event(method, path, project=self.project, **kwargs), self.context)
        body = json.loads(answer["body"]) if answer.get("body") else None
        return answer["statusCode"], body, {k.lower(): v for k, v in (answer.get("headers") or {}).items()}


def stored_for(api: Api, clients, user_id: str) -> dict:
    """What is kept of one user of the api's project, everywhere a request could have left something: the export
    (memories, events, job outcomes, the ledger, held jobs, tier 1), the user's Valkey keys and the user's jobs on
    the tier queues (taken off them; the project's other jobs too). Empty lists everywhere when nothing was
    stored."""
    from tests.support.chat import published, valkey_keys_of

    status, export, _ = api("GET", f"/v1/users/{user_id}/export")
    assert status == 200, export
    kept = {part: export[part] for part in ("memories", "events", "narratives", "jobs", "usage", "held_jobs",
                                            "working_memory", "pending")}
    tag = keys.user_tag(api.project.project_id, user_id)
    kept["valkey"] = [k for k in valkey_keys_of(clients, api.project.project_id) if tag in k]
    kept["published"] = [job.job_id for job in published(clients, api.project.project_id) if job.user_id == user_id]
    return kept


def nothing_stored(api: Api, clients, user_id: str) -> bool:
    return not any(stored_for(api, clients, user_id).values())
