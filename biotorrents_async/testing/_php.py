"""What PHP and BioGazelle do to values on the way out (escaping, numbers, dates)."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from html.entities import codepoint2name
from typing import Any

__all__ = [
    "display_str",
    "error_page",
    "json_body",
    "number_format",
    "php_date",
    "ratio_user",
    "render",
]

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}


def display_str(value: str | None) -> str:
    """Escape like ``display_str``: HTML specials and every non-ASCII character.

    ``NULL`` becomes ``""``; non-ASCII becomes a named entity where one exists
    (``é`` → ``&eacute;``), otherwise a numeric one (``日`` → ``&#26085;``).
    """
    if value is None:
        return ""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) > 127:
            name = codepoint2name.get(ord(ch))
            out.append(f"&{name};" if name else f"&#{ord(ch)};")
        else:
            out.append(ch)
    return "".join(out)


def json_body(value: Any) -> bytes:
    """Encode like PHP ``json_encode`` with default flags (escaped slashes, ASCII)."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode("ascii")


def number_format(value: float, decimals: int = 0) -> str:
    """PHP ``number_format``: thousands separated by commas (``"1,204"``)."""
    return f"{value:,.{decimals}f}"


def php_float(text: str) -> float | int:
    """PHP's ``(float)`` of a ``number_format`` string: stops at the first comma.

    A ratio of 5000 (``"5,000.00000"``) becomes ``5``. Integral floats print
    without ``.0`` in JSON, so they come back as ints.
    """
    match = re.match(r"-?\d+(?:\.\d+)?", text)
    number = float(match.group(0)) if match else 0.0
    return int(number) if number.is_integer() else number


def ratio_user(uploaded: int, downloaded: int) -> float | int:
    """``user`` ratio: 5 decimals through ``number_format``; 0 for 0/0 and ∞."""
    if downloaded == 0:
        return 0
    return php_float(number_format(uploaded / downloaded, 5))


def ratio_index(uploaded: int, downloaded: int) -> float | int:
    """``index`` ratio: ``-1`` for ∞, 0 for 0/0, 2 decimals rounded down."""
    if downloaded == 0:
        return -1 if uploaded else 0
    floored = int(uploaded / downloaded * 100) / 100
    return php_float(number_format(floored, 2))


def php_date(value: dt.datetime | None) -> str:
    """MySQL DATETIME as PHP prints it; NULL → ``""``."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def render(source: str) -> str:
    """Render BBCode/Markdown source to HTML, roughly like the site's parsers."""
    text = html.escape(source, quote=False)
    text = re.sub(r"\[b\](.*?)\[/b\]", r"<strong>\1</strong>", text)
    text = re.sub(r"\[url=([^\]]+)\](.*?)\[/url\]", r'<a href="\1">\2</a>', text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"\*(.+?)\*", r"<em>\1</em>", text)
    return f"<p>{text}</p>"


def error_page(status: int, title: str, *, authkey: str | None = None) -> str:
    """The site's ``error()`` page: full HTML, with the viewer's authkey in a meta."""
    meta = f'<meta name="authkey" content="{authkey}">' if authkey else ""
    return (
        "<!doctype html>\n<html>\n<head>\n"
        f"  <title>{status} {title} &acirc;&cedil;&not; BioTorrents.de</title>\n"
        f'  {meta}\n</head>\n<body>\n<h2 class="header">{status} {title}</h2>\n'
        '<div class="box pad"><p>Please include the server response below, '
        "as in a Staff PM, to help with debugging.</p></div>\n</body>\n</html>\n"
    )
