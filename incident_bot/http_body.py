"""Reading a request body safely: bounded in size (413) and in time (408), for every inbound route."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

MAX_BODY = 256 * 1024  # PagerDuty guarantees ~55 KB and drops over 256 KB; Slack's are smaller


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


async def read_body(request: Request, timeout: float, limit: int = MAX_BODY) -> bytes:
    """:func:`read_limited` within ``timeout`` seconds: a client trickling its body (slowloris) is cut off
    with 408 instead of holding a connection and a task for minutes."""
    try:
        async with asyncio.timeout(timeout):  # no extra task, unlike wait_for (this runs per request)
            return await read_limited(request, limit)
    except TimeoutError:
        raise BodyTooSlow from None


async def read_limited(request: Request, limit: int = MAX_BODY) -> bytes:
    """Read the body, refusing more than ``limit`` bytes without buffering an attacker's gigabytes."""
    declared = request.headers.get("content-length")
    # isascii: "²".isdigit() is True and int("²") raises; len: int() of 4,300+ digits raises too.
    if declared and declared.isascii() and declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
