"""``/incident`` sub-commands. The spine has ``help``; the rest arrive with the Slack commands issue."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from incident_bot.runtime import Runtime

HELP = [
    ("declare [title]", "open an incident (no title: a form)"),
    ("status", "severity, status, roles, milestones, elapsed time"),
    ("help", "this list"),
]


def help_text(command: str) -> str:
    lines = [f"*{command}* commands:"] + [f"• `{command} {usage}` — {what}" for usage, what in HELP]
    return "\n".join(lines)


def register(app: AsyncApp, rt: Runtime) -> None:
    name = rt.settings.slack_command

    async def on_command(ack: Any, command: dict[str, Any]) -> None:
        text = (command.get("text") or "").strip()
        sub = text.split(maxsplit=1)[0].lower() if text else "help"
        if sub == "help":
            await ack(text=help_text(name))
            return
        await ack(text=f"Unknown command `{sub}`. " + help_text(name))

    app.command(name)(on_command)
