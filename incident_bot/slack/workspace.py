"""Which workspace a request comes from, and whether it is ours.

A signed request proves it comes from Slack, not that it is for this installation: an app shared with
another workspace (or an Enterprise Grid org) gets their requests too. Only the configured workspace
(``SLACK_TEAM_ID``, or the one ``auth.test`` names at start-up) is served; the rest is answered 200 and
ignored, so Slack does not count it as a failed delivery.
"""

from __future__ import annotations

from typing import Any


def request_team(body: dict[str, Any]) -> str | None:
    """The workspace id of an event, a slash command or an interaction payload."""
    team = body.get("team_id")
    if isinstance(team, str) and team:
        return team
    nested = body.get("team")
    if isinstance(nested, dict) and isinstance(nested.get("id"), str):
        return nested["id"]
    user = body.get("user")
    if isinstance(user, dict) and isinstance(user.get("team_id"), str):
        return user["team_id"]
    return None


def workspace_refusal(body: dict[str, Any], our_team: str | None) -> str | None:
    """Why this request is not for us, or None. Unknown (not yet learned) means no refusal."""
    if not our_team:
        return None
    team = request_team(body)
    if team is not None and team != our_team:
        return f"team {team}"
    for auth in body.get("authorizations") or []:
        if isinstance(auth, dict) and auth.get("team_id") not in (None, our_team):
            return f"authorization for team {auth.get('team_id')}"
    return None
