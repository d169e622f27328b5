"""Keeping the credentials out of text: one redactor for every place that shows text.

The secrets are the bearer token and the ``session`` cookie (``userid`` is a small
public number: replacing it would garble ordinary text), plus key-like values the
server itself sends (``authkey``, ``passkey``, ``torrent_pass``, ...), replaced as
whole values. The session uses a ``Redactor`` for exception messages and body
excerpts, the command line for the raw answers ``call`` prints. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["REDACTED", "SECRET_KEYS", "Redactor", "redact_value"]

#: What a secret is replaced with.
REDACTED = "<redacted>"
#: Keys whose values are secrets in raw answers (``index`` sends both keys).
SECRET_KEYS = frozenset({"authkey", "passkey", "torrent_pass"})

#: The longest excerpt of a body an exception carries.
EXCERPT_LENGTH = 300
# Secrets at least this long cannot occur in ordinary text by chance.
_SHORT_SECRET = 8
# Redaction looks this far past the excerpt so that a secret straddling the cut
# is replaced whole before the text is cut (no secret is this long).
_EXCERPT_LOOKAHEAD = 1024
# Keys the HTML error pages and JSON answers carry (meta tags, RSS links, index):
# their values are secrets, replaced whole.
_SECRET_FIELDS = re.compile(
    r"(?i)(authkey|passkey|torrent_pass|auth|session|token)"
    r"(\s*=\s*[\"']?|[\"']?\s*(?:content=)[\"']?|\"\s*:\s*\")([A-Za-z0-9%._\-]+)"
)


def _keep_key(match: re.Match[str]) -> str:
    return match.group(1) + match.group(2) + REDACTED


class Redactor:
    """Replaces an account's credentials and key-like values in text, each whole.

    Args:
        secrets: The token and the session cookie; ``None`` and empty values are
            ignored.
    """

    __slots__ = ("_long", "_short")

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        ordered = sorted({s for s in secrets if s}, key=len)
        # Long secrets are replaced wherever they occur, the longest first (a
        # secret inside another goes with it); a (test-sized) short one only
        # where it stands alone, or it would garble ordinary text.
        self._long = [s for s in ordered[::-1] if len(s) >= _SHORT_SECRET]
        short = [re.escape(s) for s in ordered if len(s) < _SHORT_SECRET]
        self._short = (
            re.compile(rf"(?<![A-Za-z0-9])(?:{'|'.join(short)})(?![A-Za-z0-9])")
            if short
            else None
        )

    def __call__(self, text: str) -> str:
        """Return ``text`` with the credentials and key-like values replaced."""
        # Key-like values first: a known secret inside one must not split it
        # and leave its tail.
        text = _SECRET_FIELDS.sub(_keep_key, text)
        for secret in self._long:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if self._short is not None:
            text = self._short.sub(REDACTED, text)
        return text

    def excerpt(self, text: str, length: int = EXCERPT_LENGTH) -> str:
        """Return the redacted start of ``text``, at most ``length`` characters."""
        # Redacted before it is cut, so that no secret is cut in half.
        return self(text[: length + _EXCERPT_LOOKAHEAD])[:length]


def redact_value(value: Any, redact: Callable[[str], str]) -> Any:
    """Return decoded JSON with key-like values and credentials replaced.

    Values under ``SECRET_KEYS`` become ``REDACTED`` (when not empty); every other
    string goes through ``redact``. Dicts and lists are copied, never changed.
    """
    if isinstance(value, dict):
        return {
            k: REDACTED
            if str(k).lower() in SECRET_KEYS and value[k]
            else redact_value(value[k], redact)
            for k in value
        }
    if isinstance(value, list):
        return [redact_value(v, redact) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value
