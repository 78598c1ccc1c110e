"""PagerDuty webhook v3 signatures: ``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]``.

The ``pagerduty`` client has no helper for this. HMAC-SHA256 of the raw body with each configured
secret; any ``v1`` value may match, which is how secret rotation works (two secrets for a while).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def sign(body: bytes, secret: str) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    if not header:
        return False
    offered = [part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=")]
    if not offered:
        return False
    ok = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        for candidate in offered:
            # compare_digest on every pair, no early exit: timing does not tell which secret matched.
            # Bytes, not str: compare_digest raises TypeError on a non-ASCII str, and a header may carry
            # any Latin-1 text (that was a 500 where a 401 is due).
            ok |= hmac.compare_digest(expected.encode(), candidate.encode("utf-8", "surrogateescape"))
    return ok
