"""Whether the web pages are on, and how they are reached: read once from :class:`Settings`.

The pages are off (every ``/ui/`` path is a 404) unless sign-in is configured: ``SLACK_CLIENT_ID``,
``SLACK_CLIENT_SECRET``, ``WEB_BASE_URL``, ``WEB_SESSION_SECRET`` and ``SLACK_TEAM_ID`` (the one
workspace whose people may read them). Set some but not all, or leave a ``.env.example`` placeholder,
and the server stops with one line naming the setting: a half-configured sign-in is a mistake, not a
wish to turn the pages off. ``WEB_AUTH=none`` opens the pages without sign-in, and is accepted only
when the server listens on a loopback address (a laptop, the demo).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from incident_bot.config import ConfigError, Settings

SIGN_IN_SETTINGS = ("slack_client_id", "slack_client_secret", "web_base_url", "web_session_secret",
                    "slack_team_id")
_PLACEHOLDERS = ("replace-me", "replace_me", "changeme", "change-me", "your-", "example-secret")
_PLACEHOLDER_WHOLE = re.compile(r"^(x+|\.+|\*+|secret|todo|tbd|none|null)$", re.IGNORECASE)
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class WebConfig:
    auth: str  # "slack" | "none"
    base_url: str  # no trailing slash; "" when auth is none and no base URL is set
    client_id: str
    client_secret: str
    team_id: str
    session_secret: str
    authorize_url: str
    api_url: str  # the Slack Web API base, with a trailing slash
    session_seconds: int

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies everywhere except plain http on a loopback address (a local run)."""
        return not (self.base_url.startswith("http://") and is_loopback(urlsplit(self.base_url).hostname))

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/ui/auth/callback"

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _placeholder(value: str) -> bool:
    low = value.lower()
    return any(p in low for p in _PLACEHOLDERS) or bool(_PLACEHOLDER_WHOLE.match(value))


def web_config(settings: Settings, *, listen_host: str | None) -> WebConfig | None:
    """The pages' configuration, None when they are off. Raises ConfigError for a half or bad set-up.

    ``listen_host`` is the address the server binds (``serve --host``); None when unknown, which
    ``WEB_AUTH=none`` treats as not loopback.
    """
    if settings.web_auth == "none":
        if not is_loopback(listen_host):
            raise ConfigError(f"WEB_AUTH=none opens the pages without sign-in and is only allowed when the "
                              f"server listens on loopback (serve --host 127.0.0.1), not {listen_host or '?'}")
        return WebConfig(auth="none", base_url=(settings.web_base_url or "").rstrip("/"), client_id="",
                         client_secret="", team_id=settings.slack_team_id or "",
                         session_secret=settings.web_session_secret or "", authorize_url="",
                         api_url=settings.slack_api_url, session_seconds=int(settings.web_session_hours * 3600))
    values = {name: (getattr(settings, name) or "").strip() for name in SIGN_IN_SETTINGS}
    if not any(values[n] for n in SIGN_IN_SETTINGS if n != "slack_team_id"):
        return None
    for name, value in values.items():
        if not value:
            raise ConfigError(f"{name.upper()} is required for the web pages (Sign in with Slack); "
                              "unset SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, WEB_BASE_URL and WEB_SESSION_SECRET "
                              "to turn them off")
        if _placeholder(value):
            raise ConfigError(f"{name.upper()} is still a placeholder ({value!r}); set the real value")
    if len(values["web_session_secret"]) < MIN_SECRET_LENGTH:
        raise ConfigError(f"WEB_SESSION_SECRET is too short: use at least {MIN_SECRET_LENGTH} random characters "
                          "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    base = values["web_base_url"].rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"WEB_BASE_URL is malformed: {base!r} (expected https://HOST[:PORT][/PATH])")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError("WEB_BASE_URL must be https:// (plain http only on a loopback address): "
                          "the session cookie is Secure")
    if not values["slack_team_id"].startswith(("T", "E")):
        raise ConfigError("SLACK_TEAM_ID is malformed: a workspace id starts with T (or E for an Enterprise Grid)")
    auth_url = settings.slack_oidc_authorize_url.strip()
    if urlsplit(auth_url).scheme not in ("http", "https"):
        raise ConfigError(f"SLACK_OIDC_AUTHORIZE_URL is malformed: {auth_url!r}")
    return WebConfig(auth="slack", base_url=base, client_id=values["slack_client_id"],
                     client_secret=values["slack_client_secret"], team_id=values["slack_team_id"],
                     session_secret=values["web_session_secret"], authorize_url=auth_url,
                     api_url=settings.slack_api_url, session_seconds=int(settings.web_session_hours * 3600))
