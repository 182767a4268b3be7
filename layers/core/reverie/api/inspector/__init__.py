"""The memory inspector: a page to see, explain and correct what Reverie remembers, served by the memory API at
`/ui` (and its files at `/ui/<name>`) with no authorizer on those routes, the same way on `make dev` and behind API
Gateway. It is static (HTML, CSS and JavaScript in `static/`, no build step, nothing fetched from elsewhere) and
calls the same public API as any client, with the API key the person pastes in, kept in the tab's sessionStorage
only. Serving it reads no engine, so it costs no project anything; its API calls count in the project's rate limits
like any other.

Every file is answered with strict headers: a Content-Security-Policy that allows only the page's own script, style
and API (no inline script or style, no other origin, no framing, no form posts) and requires Trusted Types, so no
string can ever reach an HTML sink (the script builds the page with DOM calls and textContent only); no sniffing,
no referrer, no opener. Each file has an ETag and is revalidated (304) rather than cached blindly.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from aws_lambda_powertools.event_handler import Response

from reverie.domain.errors import NotFound

STATIC = Path(__file__).with_name("static")
PAGE = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=(), clipboard-read=()",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: str
    content_type: str
    etag: str


@functools.cache
def assets() -> dict[str, Asset]:
    """The inspector's files by name, read once per process."""
    found = {}
    for path in sorted(STATIC.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_text(encoding="utf-8")
        digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:20]
        found[path.name] = Asset(body=body, content_type=content_type, etag=f'"{digest}"')
    return found


def asset(name: str, if_none_match: str | None = None) -> Response:
    """One of the inspector's files with the security headers; 304 when `if_none_match` names it unchanged."""
    found = assets().get(name)
    if found is None:
        raise NotFound("no such file of the memory inspector")
    headers = {**SECURITY_HEADERS, "ETag": found.etag}
    tags = {t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")}
    if found.etag in tags:
        return Response(304, None, None, headers=headers)
    return Response(200, found.content_type, found.body, headers=headers)
