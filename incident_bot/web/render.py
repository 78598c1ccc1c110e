"""Pages as HTML responses: the shared Jinja2 environment, the security headers, the stylesheet.

Templates live in ``rca_templates/web/`` and load through :mod:`incident_bot.rendering`'s environment
(package loader, sandbox, autoescape for ``*.html.j2``), so the incident page can include the RCA
export's own ``rca_sections.html.j2`` and the digest page ``digest_sections.html.j2``.

Every page is sent with a Content-Security-Policy of ``default-src 'self'``: no inline script or style
runs, nothing loads from another origin, and the pages cannot be framed. Pages are per-user: ``no-store``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse, Response

from incident_bot.core.rca import format_duration
from incident_bot.rendering import default_environment
from incident_bot.web.charts import known_css

CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def headers(*, cache: str = "no-store") -> dict[str, str]:
    return {**SECURITY_HEADERS, "Cache-Control": cache}


@lru_cache(maxsize=1)
def stylesheet() -> tuple[str, str]:
    """``(css, version)``: the pages' CSS plus the charts' rules, and a hash for a cache-busting URL."""
    own = resources.files("rca_templates").joinpath("web/web.css").read_text(encoding="utf-8")
    css = own + "\n/* charts (pygal styles, moved out of the inline SVG) */\n" + known_css() + "\n"
    return css, hashlib.sha256(css.encode()).hexdigest()[:12]


def css_response() -> Response:
    css, version = stylesheet()
    return Response(css, media_type="text/css; charset=utf-8",
                    headers={**headers(cache="public, max-age=86400"), "ETag": f'"{version}"'})


def favicon_response() -> Response:
    svg = resources.files("rca_templates").joinpath("web/favicon.svg").read_bytes()
    return Response(svg, media_type="image/svg+xml", headers=headers(cache="public, max-age=86400"))


def qs(params: dict[str, Any]) -> str:
    """``?a=1&b=2`` without empty values ('' when nothing is left)."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else ""


class Clock:
    """Times shown in the team's zone (TIMEZONE), with the zone's name beside them."""

    def __init__(self, zone: Any, zone_name: str) -> None:
        self.zone, self.zone_name = zone, zone_name

    def __call__(self, ts: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return "—" if ts is None else ts.astimezone(self.zone).strftime(fmt)


def page(template: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    css_version = stylesheet()[1]
    base = {"css_url": f"/ui/static/web.css?v={css_version}", "qs": qs, "duration": format_duration}
    html = default_environment().get_template(f"web/{template}").render({**base, **context})
    return HTMLResponse(html, status_code=status, headers=headers())
