"""The last check before anything leaves the process: no account ids, no keys in a prompt.

Contexts have no account or key fields, but free text (calendar notes, signal reasons, risk
events) could still smuggle one in. ``find_sensitive`` names what matched (the kind, never the
value) so the caller can refuse to send and log why; ``redact`` masks the same patterns in text
we produce ourselves (fallback texts, log details).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# IB account ids: individual / paper (U, DU), advisor master (F, DF), 5+ digits.
ACCOUNT_ID = re.compile(r"\b(DU|DF|U|F)\d{5,}\b")
# OpenAI-style secret keys (sk-..., sk-proj-...), and bearer tokens.
API_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
BEARER = re.compile(r"\bBearer\s+\S{8,}")

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("account id", ACCOUNT_ID),
    ("api key", API_KEY),
    ("bearer token", BEARER),
)

REDACTED = "[redacted]"


def find_sensitive(texts: Iterable[str], secrets: Iterable[str] = ()) -> list[str]:
    """Kinds of sensitive data found in ``texts`` (empty if clean). ``secrets`` are literal
    values (the configured key) that must never appear either."""
    literal = [s for s in secrets if s]
    found: list[str] = []
    for text in texts:
        for kind, pattern in PATTERNS:
            if kind not in found and pattern.search(text):
                found.append(kind)
        if "configured secret" not in found and any(s in text for s in literal):
            found.append("configured secret")
    return found


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every sensitive match (and every literal secret) replaced by [redacted]."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for _, pattern in PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text
