"""Masking passwords by structure, never by searching text for them.

What is masked: a URL's userinfo and its secret query parameters (`password=`,
`sslpassword=`, …), and the values of secret keys in libpq "key=value" strings. The one
exception, `mask_text`, also replaces a known password in a driver's message, but only where
that cannot hide other words: a whole quoted token, or a password long enough to be
unambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, unquote_plus

from neon_migrate.connection.url_scan import (
    SCHEME_IN_TEXT,
    SCHEME_PREFIX,
    SECRET_KEY_TEXT,
    is_port,
    netloc_end,
    query_roles,
    userinfo_at,
)

# `key = value` where the key is a secret one, in a "key=value" string or any text.
_SECRET_ASSIGNMENT = re.compile(rf"(?<![\w.-])(?:{SECRET_KEY_TEXT})\s*=\s*", re.IGNORECASE)
_CONNINFO_START = re.compile(r"\s*[A-Za-z_][\w.-]*\s*=")
_MASKED_VALUE = re.compile(r"\*\*\*(?=[&\s]|$)")
# A known password is replaced anywhere in a message only from this length on; a shorter
# one only where a whole quoted token is exactly the password.
UNAMBIGUOUS_LENGTH = 6


def mask(url: str) -> str:
    """`url` with its password replaced by `***`; safe on malformed input, never raises.

    Takes one URL (also without its scheme, `user:pw@host/db`) or a libpq "key=value"
    string. Masks by structure: the userinfo's password, secret query parameters
    (`password=`, `sslpassword=`, … and, with a raw '&' in such a value, the pieces that
    follow it) and secret keys' values; never a substring found elsewhere. When the
    structure is unclear (an '@' after the host) it hides more rather than less.
    """
    if not isinstance(url, str):
        return "***"
    prefix = SCHEME_PREFIX.match(url)
    if prefix:
        return _mask_assignments(_mask_url(url, prefix.end()))
    if _CONNINFO_START.match(url):  # its dbname may hold a URL: libpq expands it
        return mask_text(url)
    return _mask_assignments(_mask_url(url, 0))


def mask_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Any message with the passwords in it masked: for what a driver or a library says.

    The known `secrets` (a password, raw and decoded): where a whole quoted token is
    exactly one of them, and anywhere as a whole word once it is long enough
    (UNAMBIGUOUS_LENGTH) that it cannot stand for other words: a one-letter password must
    not turn "port" into "***ort". Then by structure: every URL in the text (see `mask`)
    and every secret `key=value`, whoever's password they hold.
    """
    if not isinstance(text, str):
        return "***"
    text = _mask_known(text, secrets)  # first: structural masking would cut a password up
    secret_values = [
        (m.end(), _conninfo_value_end(text, m.end())) for m in _SECRET_ASSIGNMENT.finditer(text)
    ]
    starts = [  # a "scheme://" inside a secret value is part of the secret, masked below
        m.start()
        for m in SCHEME_IN_TEXT.finditer(text)
        if not any(a <= m.start() < b for a, b in secret_values)
    ]
    pieces, last = [], 0
    for start, end in zip(starts, [*starts[1:], len(text)], strict=False):
        pieces.append(text[last:start])
        quote_char = text[start - 1] if start and text[start - 1] in "\"'" else ""
        close = _closing_quote(text, quote_char, start, end) if quote_char else -1
        stop = close if close > start else end  # a quoted URL ends at its closing quote
        segment = text[start:stop]
        pieces.append(_mask_url(segment, segment.index("://") + 3))
        last = stop
    pieces.append(text[last:])
    return _mask_assignments("".join(pieces))


def secrets_of(url: str) -> tuple[str, ...]:
    """Every password `url` holds, as written and decoded: its userinfo's and its secret
    query parameters'. What a message must never show, for `mask_text`."""
    if not isinstance(url, str):
        return ()
    found: list[str] = []
    prefix = SCHEME_PREFIX.match(url)
    if not prefix and _CONNINFO_START.match(url):
        for match in _SECRET_ASSIGNMENT.finditer(url):
            value = url[match.end() : _conninfo_value_end(url, match.end())]
            found += [value, re.sub(r"\\(.)", r"\1", value.strip("'"))]
        return tuple(dict.fromkeys(form for form in found if form))
    start = prefix.end() if prefix else 0
    end = netloc_end(url, start)
    at, _ = userinfo_at(url, start, end)
    if at >= 0:
        _, colon, password = url[start:at].partition(":")
        if colon:
            found += [password, unquote(password)]
    elif _mask_non_numeric_port(url[:end], start) != url[:end]:  # a password with no host
        password = url[start:end].rpartition(":")[2]
        found += [password, unquote(password)]
    for piece, role in query_roles(url[max(at, end) :].partition("?")[2]):
        if role != "other":
            value = piece.partition("=")[2] if role == "secret" else piece
            found += [value, unquote(value), unquote_plus(value)]
    return tuple(dict.fromkeys(form for form in found if form))


def _mask_url(url: str, start: int) -> str:
    """The URL whose netloc begins at `start`, its password and secret parameters masked."""
    end = netloc_end(url, start)
    at, _ = userinfo_at(url, start, end)
    if at >= 0:
        colon = url.find(":", start, at)
        head = url[:at] if colon < 0 else url[: colon + 1] + "***"
        rest = url[at:]
    else:
        head, rest = _mask_non_numeric_port(url[:end], start), url[end:]
    path, sep, query = rest.partition("?")
    pieces = [
        piece.partition("=")[0] + "=***" if role == "secret" else piece
        for piece, role in query_roles(query)
        if role != "rest"
    ]
    return head + path + sep + "&".join(pieces)


def _mask_non_numeric_port(netloc_text: str, start: int) -> str:
    """With no '@', a non-numeric "port" is most likely a password whose host is missing."""
    netloc = netloc_text[start:]
    host_end = netloc.find("]") + 1 if netloc.startswith("[") else 0
    colon = netloc.find(":", host_end)
    if colon < 0 or is_port(netloc[colon + 1 :]):
        return netloc_text
    return netloc_text[: start + colon + 1] + "***"


def _mask_assignments(text: str) -> str:
    """Each secret key's value in `key=value` text masked, read as libpq reads a value:
    quoted ('…', with backslash escapes) to its closing quote, else to the next space."""
    pieces, last = [], 0
    while match := _SECRET_ASSIGNMENT.search(text, last):
        value_at = match.end()
        if _MASKED_VALUE.match(text, value_at):  # a URL's parameter, masked already
            pieces.append(text[last : value_at + 3])
            last = value_at + 3
            continue
        pieces.append(text[last:value_at] + "***")
        last = _conninfo_value_end(text, value_at)
    return "".join(pieces) + text[last:]


def _conninfo_value_end(text: str, at: int) -> int:
    quoted = text.startswith("'", at)
    i = at + 1 if quoted else at
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
        elif quoted and char == "'":
            return i + 1
        elif not quoted and char.isspace():
            return i
        else:
            i += 1
    return len(text)


def _closing_quote(text: str, quote_char: str, start: int, end: int) -> int:
    """The quote closing a quoted URL: the first one that ends a token (followed by the end,
    a space or punctuation), so a quote inside a raw password does not cut it short."""
    for match in re.finditer(re.escape(quote_char) + r"(?=$|[\s;,)]|[.:](?:$|\s))", text):
        if start < match.start() < end:
            return match.start()
    return -1


def _mask_known(text: str, secrets: Iterable[str | None]) -> str:
    """Known passwords masked only where that cannot hide other words (see mask_text)."""
    forms: set[str] = set()
    for secret in secrets:
        if isinstance(secret, str) and secret:
            encoded = (
                quote(secret, safe="", errors="surrogatepass"),
                quote(secret, errors="surrogatepass"),
            )
            forms |= {secret, unquote(secret), *encoded}
    for form in sorted((f for f in forms if f and f != "***"), key=len, reverse=True):
        for quote_char in "\"'":
            text = text.replace(f"{quote_char}{form}{quote_char}", f"{quote_char}***{quote_char}")
        if len(form) >= UNAMBIGUOUS_LENGTH:
            left = r"(?<!\w)" if re.match(r"\w", form[0]) else ""
            right = r"(?!\w)" if re.match(r"\w", form[-1]) else ""
            text = re.sub(left + re.escape(form) + right, "***", text)
    return text
