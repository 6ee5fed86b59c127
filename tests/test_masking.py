"""Masking by structure, never by searching text: whatever a password holds, wherever a URL
or a libpq "key=value" string carries it, the masked text is the same text with exactly the
password replaced, and nothing else hidden (a one-letter password must not eat letters).

Pure string logic, no database; the end-to-end checks are in test_no_secrets.py.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from hypothesis import assume, example, given
from hypothesis import strategies as st
from psycopg2.extensions import parse_dsn

from neon_migrate.connection import url_scan, urls
from neon_migrate.errors import ConfigError

# Passwords with any characters: the URL's own delimiters, a bad percent-escape, quotes,
# spaces, backslashes, non-ASCII; also empty and one character long.
SPECIAL = st.sampled_from(
    [*"%@/?#:&=+'\" \\\t~é€漢", "%zz", "%4", "%41", "://", "password=", "@h/"]
)
PASSWORDS = st.one_of(
    st.text(max_size=1),
    st.lists(st.one_of(SPECIAL, st.text(max_size=3)), min_size=1, max_size=6).map("".join),
)
SCHEMES = st.sampled_from(["postgresql", "postgres", "postgresql+psycopg2"])
USERS = st.sampled_from(["alex", "u", "a", "neondb_owner"])
HOSTS = st.sampled_from(
    [
        "db.example.com",
        "127.0.0.1",
        "[::1]",
        "h",
        "ep-cool-darkness-a1b2c3d4.us-east-2.aws.neon.tech",
    ]
)
PORTS = st.sampled_from(["", ":5432", ":6543"])
DATABASES = st.sampled_from(["app", "neondb", "d"])
QUERIES = st.lists(
    st.sampled_from([
        "sslmode=require", "channel_binding=require", "application_name=me@example.com",
        "options=endpoint%3Dep-x", "connect_timeout=5",
    ]),
    max_size=3,
).map(lambda items: "?" + "&".join(items) if items else "")  # fmt: skip


def lands_in_a_known_value(raw_password: str) -> bool:
    """A raw password whose '?' starts a query holding `libpq_key=...`: the real '@' may
    then sit in that parameter's value, and `u:12?host=x@h/db` reads just as well as host
    u, port 12, parameter host='x@h/db'. No reading can tell; those are left out."""
    query = raw_password.partition("?")[2]
    return any(url_scan.is_libpq_keyword(piece.partition("=")[0]) for piece in query.split("&"))


# ---- the password in the userinfo ------------------------------------------------------------


@given(SCHEMES, USERS, PASSWORDS, HOSTS, PORTS, DATABASES, QUERIES)
@example("postgresql", "u", "a", "h", ":5432", "app", "?sslmode=require")
@example("postgresql", "u", "", "h", "", "app", "")
def test_encoded_password_in_userinfo_is_exactly_masked(
    scheme, user, password, host, port, db, query
):
    url = f"{scheme}://{user}:{quote(password, safe='')}@{host}{port}/{db}{query}"
    expected = f"{scheme}://{user}:***@{host}{port}/{db}{query}"
    assert urls.mask(url) == expected
    if password:
        assert password in urls.secrets_of(url)
    try:
        pair = urls.resolve(url, None)
    except ConfigError as err:  # a NUL in the password
        assert expected in str(err)
    else:
        assert pair is not None and urls.mask(pair.direct).startswith(expected)


@given(SCHEMES, USERS, PASSWORDS, HOSTS, PORTS, DATABASES, QUERIES)
@example("postgresql", "u", "pa/ss", "host", "", "db", "")
@example("postgresql", "u", "12/34", "host", "", "db", "")
@example(
    "postgresql", "u", "p@ss/w?rd=1", "host", ":5432", "db", "?application_name=me@example.com"
)
def test_unencoded_password_in_userinfo_is_hidden_whole(
    scheme, user, password, host, port, db, query
):
    """A password pasted without percent-encoding: whatever its '/', '?', '@' or '%' do to
    the URL's structure, all of it is hidden. Where the reading is a guess, more may be
    hidden (the host, say), never less: what is shown is the end of the true rest."""
    assume(not lands_in_a_known_value(password))
    url = f"{scheme}://{user}:{password}@{host}{port}/{db}{query}"
    prefix, rest = f"{scheme}://{user}:***", f"@{host}{port}/{db}{query}"
    masked = urls.mask(url)
    assert masked.startswith(prefix)
    assert rest.endswith(masked[len(prefix) :]), masked
    try:
        pair = urls.resolve(url, None)
    except ConfigError as err:
        assert "\n" not in str(err)
        assert urls.mask(url) in str(err) or "\\x" in str(err)  # control characters escaped
    else:
        assert pair is not None
        assert urls.mask(pair.direct).startswith(f"{scheme}://{user}:***@{host}{port}/{db}")


def test_a_one_letter_password_leaves_every_other_letter_alone():
    url = "postgresql://alex:a@db.example.com:5432/app?application_name=a@b&sslmode=require"
    assert urls.mask(url) == (
        "postgresql://alex:***@db.example.com:5432/app?application_name=a@b&sslmode=require"
    )


# ---- the password in a `password=` query parameter -------------------------------------------


@given(
    USERS,
    st.booleans(),
    PASSWORDS,
    st.booleans(),
    HOSTS,
    PORTS,
    st.sampled_from(["", "sslmode=require&"]),
    st.sampled_from(["", "&sslmode=require", "&application_name=me@example.com"]),
)
@example("u", False, "w0rd%zzSECRET", False, "h", "", "", "")
@example("u", False, "a", False, "h", ":5432", "", "&sslmode=require")
@example("u", False, "it's a b", False, "h", "", "", "")
def test_password_query_parameter_is_exactly_masked(
    user, with_userinfo, password, encoded, host, port, before, after
):
    """Well-formed (percent-encoded) or not: bad escapes, quotes, spaces, a raw '&'."""
    value = quote(password, safe="") if encoded else password
    assume(encoded or "\x00" not in password)
    rest_keys = re.findall(r"&([^&=]*)=", value)
    assume(not any(url_scan.is_libpq_keyword(key) for key in rest_keys))  # `&sslmode=` would end it
    userinfo = f"{user}:hunter2@" if with_userinfo else f"{user}@"
    url = f"postgresql://{userinfo}{host}{port}/app?{before}password={value}{after}"
    shown_userinfo = f"{user}:***@" if with_userinfo else userinfo
    expected = f"postgresql://{shown_userinfo}{host}{port}/app?{before}password=***{after}"
    assert urls.mask(url) == expected
    try:
        target = urls.to_target(url)
    except ConfigError as err:  # a raw '&' (its rest), or a NUL
        assert expected in str(err)
    else:
        # What libpq reads: the password as meant, never a bad escape it would quote.
        assert parse_dsn(target.dsn)["password"] == unquote(value)
        if password:
            assert set(target.secrets) >= {value, unquote(value)}


# ---- the password in a libpq "key=value" string ----------------------------------------------


def libpq_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@given(
    PASSWORDS,
    st.sampled_from(["password", "sslpassword", "PGPASSWORD"]),
    st.sampled_from(["=", " = "]),
    HOSTS,
)
@example("a b", "password", "=", "h")
@example("it's", "password", "=", "h")
@example("", "password", "=", "h")
def test_password_in_a_key_value_string_is_exactly_masked(password, key, equals, host):
    assume("\x00" not in password)
    conninfo = f"host={host} {key}{equals}{libpq_quoted(password)} dbname=x"
    if key != "PGPASSWORD":  # the generator writes what libpq reads
        assert parse_dsn(conninfo)[key] == password
    assert urls.mask(conninfo) == f"host={host} {key}{equals}*** dbname=x"
    plain = re.fullmatch(r"[^\s'\\]+", password)
    if plain:
        unquoted = f"user=a {key}{equals}{password} dbname=x"
        assert urls.mask(unquoted) == f"user=a {key}{equals}*** dbname=x"


# ---- messages: structure first, known passwords only where unambiguous ------------------------

MESSAGES = [
    'connection to server at "127.0.0.1", port 1 failed: Connection refused. Is the server '
    "running on that host and accepting TCP/IP connections?",
    'connection to server at "127.0.0.1", port 5432 failed: FATAL: password authentication '
    'failed for user "alex"',
    'could not translate host name "db.example.com" to address: Name or service not known',
    'root certificate file "/nope/ca.crt" does not exist. Either provide the file, use the '
    "system's trusted roots with sslrootcert=system, or change sslmode to disable server "
    "certificate verification",
    'invalid dsn: invalid URI query parameter: "foo"',
    "server closed the connection unexpectedly. This probably means the server terminated "
    "abnormally before or while processing the request",
    'relation "accounts" does not exist',
    "canceling statement due to lock timeout",
]


@given(st.sampled_from(MESSAGES), st.characters())
def test_a_one_letter_password_masks_nothing_else_in_a_message(message, letter):
    assume(f'"{letter}"' not in message and f"'{letter}'" not in message)
    assert urls.mask_text(message, [letter]) == message


@given(st.sampled_from(MESSAGES), PASSWORDS)
def test_a_password_absent_from_a_message_masks_nothing(message, password):
    forms = {password, quote(password, safe=""), quote(password), unquote(password)}
    for form in (f for f in forms if f):
        assume(f'"{form}"' not in message and f"'{form}'" not in message)
        assume(len(form) < urls.UNAMBIGUOUS_LENGTH or not re.search(re.escape(form), message))
    assert urls.mask_text(message, [password]) == message


@given(PASSWORDS)
@example("w0rd%zzSECRET")
@example("a")
def test_a_password_a_driver_quotes_whole_is_masked(password):
    assume(password and password != "***")
    message = f'invalid dsn: invalid percent-encoded token: "{password}"'
    assert urls.mask_text(message, [password]) == (
        'invalid dsn: invalid percent-encoded token: "***"'
    )


@given(PASSWORDS)
def test_a_long_password_is_masked_anywhere_as_a_whole_word(password):
    password = f"Zq9{password}Xw7"  # long enough, and word characters at both ends
    message = f"the login with {password} failed; {password}"
    assert urls.mask_text(message, [password]) == "the login with *** failed; ***"
    assert urls.mask_text("role Zq9Xw7ish is fine", ["Zq9Xw7"]) == "role Zq9Xw7ish is fine"


@given(USERS, PASSWORDS, HOSTS, PORTS, QUERIES, PASSWORDS)
@example("u", "a", "h", ":5432", "?sslmode=require", "b")
def test_urls_and_key_values_a_message_quotes_are_masked_by_structure(
    user, password, host, port, query, other
):
    """No known password needed: what parses as a URL or a key=value string is masked."""
    url = f"postgresql://{user}:{quote(password, safe='')}@{host}{port}/app{query}"
    message = (
        f'unexpected character in URI: "{url}"; also host={host} password={libpq_quoted(other)}'
        f" dbname=app, and postgresql://{user}@{host}/app?password={quote(other, safe='')}"
    )
    assert urls.mask_text(message) == (
        f'unexpected character in URI: "postgresql://{user}:***@{host}{port}/app{query}"; also '
        f"host={host} password=*** dbname=app, and postgresql://{user}@{host}/app?password=***"
    )
