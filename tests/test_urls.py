"""URL parsing, Neon pooled/direct pairing, sslmode, masking: pure string logic, no database."""

from __future__ import annotations

import pytest

from neon_migrate.connection import urls
from neon_migrate.errors import ConfigError

POOLED_HOST = "ep-cool-darkness-a1b2c3d4-pooler.us-east-2.aws.neon.tech"
DIRECT_HOST = "ep-cool-darkness-a1b2c3d4.us-east-2.aws.neon.tech"
OTHER_DIRECT_HOST = "ep-quiet-river-e5f6a7b8.us-east-2.aws.neon.tech"
PASSWORD = "s3cr3t-P@ss%word"
ENCODED = "s3cr3t-P%40ss%25word"
QUERY = "sslmode=require&channel_binding=require"

NEON_POOLED = f"postgresql://alex:{ENCODED}@{POOLED_HOST}/neondb?{QUERY}"
NEON_DIRECT = f"postgresql://alex:{ENCODED}@{DIRECT_HOST}/neondb?{QUERY}"


def assert_hides_password(text: str) -> None:
    for secret in (PASSWORD, ENCODED, "hunter2"):
        assert secret not in text


# ---- Neon pairing ---------------------------------------------------------------------------


def test_pooled_only_derives_direct_by_removing_pooler():
    pair = urls.resolve(NEON_POOLED, None)
    assert pair == urls.EndpointPair(
        pooled=NEON_POOLED, direct=NEON_DIRECT, neon=True, derived="direct"
    )


def test_direct_in_database_url_derives_pooled_for_the_app():
    pair = urls.resolve(NEON_DIRECT, None)
    assert pair == urls.EndpointPair(
        pooled=NEON_POOLED, direct=NEON_DIRECT, neon=True, derived="pooled"
    )


def test_direct_only_derives_pooled_by_adding_pooler():
    pair = urls.resolve(None, NEON_DIRECT)
    assert pair == urls.EndpointPair(
        pooled=NEON_POOLED, direct=NEON_DIRECT, neon=True, derived="pooled"
    )


def test_both_given_are_used_as_given():
    direct = f"postgres://migrator:pw@{DIRECT_HOST}/neondb?sslmode=verify-full"
    pair = urls.resolve(NEON_POOLED, direct)
    assert pair == urls.EndpointPair(pooled=NEON_POOLED, direct=direct, neon=True, derived=None)


def test_both_from_different_endpoints_is_an_error_naming_both_hosts():
    other = f"postgresql://alex:{ENCODED}@{OTHER_DIRECT_HOST}/neondb?{QUERY}"
    with pytest.raises(ConfigError) as caught:
        urls.resolve(NEON_POOLED, other)
    message = str(caught.value)
    assert POOLED_HOST in message
    assert OTHER_DIRECT_HOST in message
    assert "DATABASE_URL_DIRECT" in message
    assert_hides_password(message)


def test_neon_app_with_non_neon_direct_is_an_error():
    with pytest.raises(ConfigError, match="not the same Neon endpoint"):
        urls.resolve(NEON_POOLED, "postgresql://u:pw@db.example.com/app")


def test_direct_variable_pointing_at_the_pooler_is_an_error():
    with pytest.raises(ConfigError) as caught:
        urls.resolve(None, NEON_POOLED)
    message = str(caught.value)
    assert "DATABASE_URL_DIRECT" in message
    assert "remove '-pooler'" in message
    assert "unset DATABASE_URL_DIRECT" in message
    assert_hides_password(message)


def test_direct_variable_at_the_pooler_is_refused_even_with_database_url():
    with pytest.raises(ConfigError, match="pooled endpoint"):
        urls.resolve(NEON_POOLED, NEON_POOLED)


def test_pooler_suffix_is_matched_case_insensitively():
    upper = f"postgresql://alex:pw@{POOLED_HOST.upper()}/neondb?sslmode=require"
    pair = urls.resolve(upper, None)
    assert pair is not None
    assert pair.direct == f"postgresql://alex:pw@{DIRECT_HOST.upper()}/neondb?sslmode=require"


def test_neon_host_in_host_query_parameter_is_rewritten_there():
    url = f"postgresql://alex:pw@/neondb?host={POOLED_HOST}&sslmode=require"
    pair = urls.resolve(url, None)
    assert pair is not None
    assert pair.direct == f"postgresql://alex:pw@/neondb?host={DIRECT_HOST}&sslmode=require"


def test_neither_given_means_local_server():
    assert urls.resolve(None, None) is None
    assert urls.resolve("  ", "") is None


# ---- non-Neon hosts -------------------------------------------------------------------------


def test_non_neon_host_serves_both_sides():
    url = "postgresql://app:pw@db.example.com:6543/app?sslmode=require"
    assert urls.resolve(url, None) == urls.EndpointPair(
        pooled=url, direct=url, neon=False, derived=None
    )
    assert urls.resolve(None, url) == urls.EndpointPair(
        pooled=url, direct=url, neon=False, derived=None
    )


def test_non_neon_both_given_are_used_as_given():
    app = "postgresql://app:pw@pgbouncer.internal:6432/app?sslmode=require"
    direct = "postgresql://owner:pw@db.internal:5432/app?sslmode=require"
    assert urls.resolve(app, direct) == urls.EndpointPair(
        pooled=app, direct=direct, neon=False, derived=None
    )


@pytest.mark.parametrize(
    "host",
    [
        "ep-cool-darkness-a1b2c3d4.neon.tech.example.com",  # not under neon.tech
        "db.us-east-2.aws.neon.tech",  # not an endpoint label
        "ep-x-pooler.example.com",
    ],
)
def test_lookalike_hosts_are_not_neon(host):
    url = f"postgresql://u:pw@{host}/db?sslmode=require"
    pair = urls.resolve(url, None)
    assert pair == urls.EndpointPair(pooled=url, direct=url, neon=False, derived=None)
    assert urls.is_pooled(url) is False


# ---- sslmode --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgresql://u:pw@db.example.com/app",
            "postgresql://u:pw@db.example.com/app?sslmode=require",
        ),
        (
            "postgresql://u:pw@db.example.com/app?application_name=web",
            "postgresql://u:pw@db.example.com/app?application_name=web&sslmode=require",
        ),
        (
            "postgresql://u:pw@db.example.com/app?",
            "postgresql://u:pw@db.example.com/app?sslmode=require",
        ),
    ],
)
def test_sslmode_require_added_for_remote_hosts(given, expected):
    pair = urls.resolve(given, None)
    assert pair is not None
    assert pair.pooled == pair.direct == expected


@pytest.mark.parametrize("mode", ["disable", "prefer", "require", "verify-full"])
def test_existing_sslmode_is_kept(mode):
    url = f"postgresql://u:pw@db.example.com/app?sslmode={mode}&connect_timeout=5"
    pair = urls.resolve(url, None)
    assert pair is not None
    assert pair.pooled == url


def test_derived_neon_url_without_sslmode_gets_it_on_both_sides():
    pair = urls.resolve(f"postgresql://alex:pw@{POOLED_HOST}/neondb", None)
    assert pair is not None
    assert pair.pooled == f"postgresql://alex:pw@{POOLED_HOST}/neondb?sslmode=require"
    assert pair.direct == f"postgresql://alex:pw@{DIRECT_HOST}/neondb?sslmode=require"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pw@localhost/app",
        "postgresql://u:pw@localhost:5433/app",
        "postgresql://u:pw@127.0.0.1/app",
        "postgresql://u:pw@127.1.2.3:5432/app",
        "postgresql://u:pw@[::1]/app",
        "postgresql://u:pw@[::1]:5432/app",
        "postgresql://u@/app?host=/var/run/postgresql",
        "postgresql://u@%2Fvar%2Frun%2Fpostgresql/app",
    ],
)
def test_sslmode_not_added_for_local_hosts(url):
    pair = urls.resolve(url, None)
    assert pair is not None
    assert pair.pooled == pair.direct == url


@pytest.mark.parametrize(
    ("host", "local"),
    [
        (None, True),
        ("", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("[::1]", True),
        ("/tmp/pg-socket", True),
        ("128.0.0.1", False),
        ("10.0.0.5", False),
        ("::2", False),
        ("localhost.example.com", False),
        (DIRECT_HOST, False),
    ],
)
def test_is_local_host(host, local):
    assert urls.is_local_host(host) is local


# ---- byte-for-byte preservation -------------------------------------------------------------


def test_percent_encoded_password_and_parameters_survive_exactly():
    query = "sslmode=require&channel_binding=require&options=endpoint%3Dep-cool-darkness-a1b2c3d4"
    url = f"postgresql+psycopg://alex:{ENCODED}@{POOLED_HOST}:5432/neon%2Ddb?{query}"
    pair = urls.resolve(url, None)
    assert pair is not None
    assert pair.pooled == url
    assert (
        pair.direct == f"postgresql+psycopg://alex:{ENCODED}@{DIRECT_HOST}:5432/neon%2Ddb?{query}"
    )


@pytest.mark.parametrize(
    "scheme", ["postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"]
)
def test_scheme_as_written_is_kept(scheme):
    pair = urls.resolve(None, f"{scheme}://u:pw@{DIRECT_HOST}/neondb?sslmode=require")
    assert pair is not None
    assert pair.pooled.startswith(f"{scheme}://u:pw@{POOLED_HOST}/")
    assert pair.direct.startswith(f"{scheme}://u:pw@{DIRECT_HOST}/")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("postgresql://u:pw@[::1]:5432/app", "::1"),
        ("postgresql://u:pw@[2001:db8::7]:6543/app", "2001:db8::7"),
        ("postgresql://u:pw@db.example.com:6543/app", "db.example.com"),
        (NEON_POOLED, POOLED_HOST),
        ("postgresql://u@/app?host=/var/run/postgresql", "/var/run/postgresql"),
        ("postgresql://u@%2Fvar%2Frun%2Fpostgresql/app", "/var/run/postgresql"),
        ("postgresql://u:pw@/app", None),
        ("not a url", None),
    ],
)
def test_host_of(url, host):
    assert urls.host_of(url) == host


def test_ipv6_remote_host_with_port_gets_sslmode():
    url = "postgresql://u:pw@[2001:db8::7]:6543/app"
    pair = urls.resolve(url, None)
    assert pair is not None
    assert pair.pooled == url + "?sslmode=require"


def test_is_pooled():
    assert urls.is_pooled(NEON_POOLED) is True
    assert urls.is_pooled(NEON_DIRECT) is False
    assert urls.is_pooled("postgresql://u:pw@pooler-pooler.example.com/app") is False
    assert urls.is_pooled("garbage") is False


# ---- to_sqlalchemy --------------------------------------------------------------------------


def test_to_sqlalchemy_forces_psycopg2_and_decodes_password():
    sa_url = urls.to_sqlalchemy(f"postgres://alex:{ENCODED}@{DIRECT_HOST}:5432/neondb?{QUERY}")
    assert sa_url.drivername == "postgresql+psycopg2"
    assert sa_url.username == "alex"
    assert sa_url.password == PASSWORD
    assert sa_url.host == DIRECT_HOST
    assert sa_url.port == 5432
    assert sa_url.database == "neondb"
    assert dict(sa_url.query) == {"sslmode": "require", "channel_binding": "require"}
    assert_hides_password(repr(sa_url))


def test_to_sqlalchemy_decodes_options_and_socket_host():
    sa_url = urls.to_sqlalchemy(
        "postgresql+psycopg://u@%2Fvar%2Frun%2Fpostgresql/app?options=endpoint%3Dep-a1"
    )
    assert sa_url.drivername == "postgresql+psycopg2"
    assert sa_url.host == "/var/run/postgresql"
    assert sa_url.password is None
    assert sa_url.query["options"] == "endpoint=ep-a1"


def test_to_sqlalchemy_rejects_invalid_url_without_leaking_password():
    with pytest.raises(ConfigError) as caught:
        urls.to_sqlalchemy("mysql://u:hunter2@db.example.com/app")
    assert_hides_password(str(caught.value))


# ---- mask -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (NEON_POOLED, f"postgresql://alex:***@{POOLED_HOST}/neondb?{QUERY}"),
        ("postgresql://alex@db.example.com/app", "postgresql://alex@db.example.com/app"),
        ("postgresql://db.example.com:5432/app", "postgresql://db.example.com:5432/app"),
        ("postgresql://:hunter2@h/app", "postgresql://:***@h/app"),
        ("postgresql://u:hunter2@[::1]:5432/app", "postgresql://u:***@[::1]:5432/app"),
        (
            "postgresql://u@h/app?password=hunter2&connect_timeout=5",
            "postgresql://u@h/app?password=***&connect_timeout=5",
        ),
        ("postgresql://u@h/app?password=w0rd%zzSECRET", "postgresql://u@h/app?password=***"),
        (
            "postgresql://u@h/app?sslpassword=k3y&password='a b'&sslmode=require",
            "postgresql://u@h/app?sslpassword=***&password=***&sslmode=require",
        ),
        # an '@' in a parameter's value is not the end of a userinfo
        (
            "postgresql://u:hunter2@h/app?application_name=a@b",
            "postgresql://u:***@h/app?application_name=a@b",
        ),
        (
            "postgresql://h:5432/app?application_name=a@b",
            "postgresql://h:5432/app?application_name=a@b",
        ),
        # libpq "key=value" strings: quoted, escaped, spaced, and a URL as dbname
        ("host=h password='a b' dbname=x", "host=h password=*** dbname=x"),
        ("host=h password=a\\ b dbname=x", "host=h password=*** dbname=x"),
        ("host=h password = 'it\\'s' dbname=x", "host=h password = *** dbname=x"),
        (
            "dbname=postgresql://u:hunter2@h/x sslpassword=k3y",
            "dbname=postgresql://u:***@h/x sslpassword=***",
        ),
        # malformed input
        ("postgresql://u:hunter2", "postgresql://u:***"),
        ("postgresql://u:hunt/er2@h/app", "postgresql://u:***@h/app"),
        ("postgresql://u:hunt?er2@h/app", "postgresql://u:***@h/app"),
        ("postgresql://u:hunt?er=2@h/app", "postgresql://u:***@h/app"),
        (
            "postgresql://u:p@ss/wo@rd@h/app?sslmode=require",
            "postgresql://u:***@h/app?sslmode=require",
        ),
        ("postgresql://u:12/er2@h/app", "postgresql://u:***@h/app"),
        # a raw '&' in a query password: the pieces libpq cannot explain are its rest
        (
            "postgresql://u@h/app?password=hun&ter2&sslmode=require",
            "postgresql://u@h/app?password=***&sslmode=require",
        ),
        ("postgresql://u:hunter2@h:notaport/app", "postgresql://u:***@h:notaport/app"),
        ("u:hunter2@h/app", "u:***@h/app"),
        ("host=h password=hunter2", "host=h password=***"),
        ("not a url", "not a url"),
        ("", ""),
    ],
)
def test_mask(url, masked):
    assert urls.mask(url) == masked


def test_mask_never_raises_on_non_strings():
    assert urls.mask(None) == "***"  # type: ignore[arg-type]


# ---- invalid URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"mysql://alex:{ENCODED}@db.example.com/app", "scheme 'mysql'"),
        (f"https://alex:{ENCODED}@db.example.com/app", "scheme 'https'"),
        (f"postgresql://alex:{ENCODED}@/app", "no host"),
        (f"postgresql://alex:{ENCODED}@db.example.com:54x2/app", "port"),
        (f"postgresql://alex:{ENCODED}@db.example.com:70000/app", "port"),
        (f"postgresql://alex:{ENCODED}@db.example.com:/app", "port"),
        (f"postgresql://alex:{ENCODED}@db.example.com/", "no database"),
        (f"postgresql://alex:{ENCODED}@db.example.com", "no database"),
        (f"postgresql://alex:{ENCODED}@::1/app", "IPv6"),
        (f"postgresql://alex:{ENCODED}@[::1/app", "IPv6"),
        (f"postgresql://alex:{ENCODED}@h1:5432,h2:5432/app", "several hosts"),
        ("postgresql://alex:hunter2", "port"),
        ("alex:hunter2@db.example.com/app", "not a URL"),
        ("host=db.example.com password=hunter2", "not a URL"),
        ("garbage", "not a URL"),
    ],
)
@pytest.mark.parametrize("as_direct", [False, True])
def test_invalid_url_is_a_config_error_without_password(url, problem, as_direct):
    var = "DATABASE_URL_DIRECT" if as_direct else "DATABASE_URL"
    with pytest.raises(ConfigError) as caught:
        urls.resolve(None, url) if as_direct else urls.resolve(url, None)
    message = str(caught.value)
    assert message.startswith(f"{var} ")
    assert problem in message
    assert "Fix: set " + var + " to a URL like postgresql://USER:PASSWORD@HOST/DBNAME" in message
    assert_hides_password(message)


def test_repr_of_a_pair_never_shows_the_password():
    pair = urls.resolve("postgresql://u:s3cr3t%25x@ep-a-b-pooler.us-east-2.aws.neon.tech/db", None)
    assert "s3cr3t" not in repr(pair)
    assert "***" in repr(pair)


def test_nul_character_is_a_configuration_error():
    with pytest.raises(ConfigError, match="NUL character"):
        urls.resolve("postgresql://u:pw%00x@h/db", None)


def test_mask_hides_a_password_with_an_unencoded_slash_and_no_user():
    """Found by hypothesis: the netloc seemed to end at the '/' inside the password."""
    assert urls.mask("postgresql://@:Zq9/Xw7@localhost/") == "postgresql://@:***@localhost/"


def test_port_parameter_must_be_a_port():
    with pytest.raises(ConfigError, match="port parameter that is not a number"):
        urls.resolve("postgresql://u:pw@127.0.0.1/db?port=abc", None)


@pytest.mark.parametrize(
    ("url", "libpq_host"),
    [
        ("postgresql://tricky:s3cr3t-P@ss@127.0.0.1:5432/t1", "ss@127.0.0.1"),
        (
            "postgresql://me@example.com:s3cr3t@db.example.com/app",
            "example.com",
        ),
    ],
)
def test_an_unencoded_at_sign_before_the_host_is_refused(url, libpq_host):
    """libpq reads the host from after the first '@'; we would read it from after the last.
    A URL its two readers read differently is refused, and the message shows no password."""
    from psycopg2.extensions import parse_dsn

    assert parse_dsn(url)["host"] == libpq_host  # the trap: libpq alone says nothing
    with pytest.raises(ConfigError) as caught:
        urls.to_target(url)
    message = str(caught.value)
    assert "more than one '@' before its host" in message
    assert "Fix: percent-encode the password in the database URL" in message
    assert "'@' as %40" in message
    assert "\n" not in message
    assert "s3cr3t" not in message
    assert urls.host_of(url) is None


def test_libpq_errors_that_quote_the_whole_url_are_masked():
    """libpq quotes the URL, password and all, in some of its errors: ours never does."""
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import parse_dsn

    url = "postgresql://u:Zq9secretXw7@[]/app"
    with pytest.raises(ProgrammingError, match="Zq9secretXw7"):
        parse_dsn(url)  # the trap
    with pytest.raises(ConfigError) as caught:
        urls.resolve(url, None)
    message = str(caught.value)
    assert message.startswith("DATABASE_URL is not a URL libpq can read: IPv6 host address may")
    assert "Zq9secretXw7" not in message and "secret" not in message
    assert "postgresql://u:***@[]/app" in message
    assert "Fix: set DATABASE_URL to a URL like postgresql://USER:PASSWORD@HOST/DBNAME" in message


@pytest.mark.parametrize("query", ["foo=bar", "sslmode=require&Sslmode=require", "ssl=1"])
def test_a_parameter_libpq_does_not_know_is_one_line_naming_it(query):
    with pytest.raises(ConfigError) as caught:
        urls.resolve(f"postgresql://u:hunter2@db.example.com/app?{query}", None)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        'DATABASE_URL has an invalid connection option: invalid URI query parameter: "'
    )
    assert "libpq-connect.html#LIBPQ-PARAMKEYWORDS" in message
    assert_hides_password(message)


def test_libpq_decides_the_values():
    """What libpq reads is what we read: `ssl=true` is its sslmode=require (no second one
    added), a `host=` parameter is the host the engine gets, '+' stays '+'."""
    url = "postgresql://u:pw@/app?host=db.example.com&ssl=true&application_name=a+b"
    pair = urls.resolve(url, None)
    assert pair is not None and pair.direct == url
    assert urls.query_value(url, "sslmode") == "require"
    sa_url = urls.to_sqlalchemy(url)
    assert (sa_url.host, sa_url.database) == ("db.example.com", "app")
    assert dict(sa_url.query) == {"sslmode": "require", "application_name": "a+b"}


def test_libpq_keywords_come_from_libpq():
    from neon_migrate.connection.url_scan import is_libpq_keyword

    assert is_libpq_keyword("sslmode") and is_libpq_keyword("target_session_attrs")
    assert not is_libpq_keyword("foo") and not is_libpq_keyword("")


# ---- passwords that libpq would misread, or quote in its errors ------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alex:pa/ss@db.example.com/app",
        "postgresql://alex:pa/ss@db.example.com:5432/app?sslmode=require",
        "postgresql://alex:12/34@db.example.com/app",  # would read as host alex, port 12
        "postgresql://alex:pa?ss@db.example.com/app",
        "postgresql://alex:pa?s=s@db.example.com/app",
        "postgresql://alex:p@ss/word@db.example.com/app",
    ],
)
def test_unencoded_slash_or_question_mark_in_the_password_says_so(url):
    """Not "a port that is not a number": the password needs percent-encoding."""
    with pytest.raises(ConfigError) as caught:
        urls.resolve(url, None)
    message = str(caught.value)
    assert message.startswith("DATABASE_URL has an '@' after its host")
    assert "unencoded '/' or '?'" in message
    assert "Fix: percent-encode the password in DATABASE_URL: '/' as %2F" in message
    assert "port" not in message
    assert "postgresql://alex:***@db.example.com" in message
    for fragment in ("pa/ss", "12/34", "pa?s", "p@ss", "ss/word"):
        assert fragment not in message


def test_an_at_sign_in_the_database_name_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="an '@' in the database name as %40"):
        urls.resolve("postgresql://alex:pw@db.example.com/my@db", None)


def test_an_at_sign_in_a_parameter_value_is_fine():
    url = "postgresql://alex:pw@db.example.com/app?application_name=me@example.com"
    pair = urls.resolve(url, None)
    assert pair is not None and pair.direct.startswith(url)


def test_badly_escaped_query_password_reaches_libpq_encoded():
    """libpq quotes a value it cannot decode: re-encoded, it never has to."""
    from psycopg2.extensions import parse_dsn

    target = urls.to_target("postgresql://u@h/db?password=w0rd%zzSECRET&sslmode=require")
    assert target.dsn == "postgresql://u@h/db?password=w0rd%25zzSECRET&sslmode=require"
    assert parse_dsn(target.dsn)["password"] == "w0rd%zzSECRET"
    assert "w0rd%zzSECRET" in target.secrets
    assert "SECRET" not in repr(target)


@pytest.mark.parametrize(
    ("query", "password"),
    [
        ("password=it's%20a+b", "it's a+b"),  # libpq keeps '+'; a form decoder would not
        ("password=a=b", "a=b"),  # libpq alone: "extra key/value separator"
        ("password=%E2%82%AC", "€"),
    ],
)
def test_query_password_is_decoded_as_libpq_does(query, password):
    from psycopg2.extensions import parse_dsn

    url = f"postgresql://u@h/db?{query}"
    assert parse_dsn(urls.to_target(url).dsn)["password"] == password
    sa_url = urls.to_sqlalchemy(url)
    assert sa_url.password == password
    assert "password" not in sa_url.query  # so SQLAlchemy's repr hides it
    assert password not in repr(sa_url)


def test_query_password_wins_over_the_userinfo_as_in_libpq():
    assert urls.to_sqlalchemy("postgresql://u:one@h/db?password=two").password == "two"


@pytest.mark.parametrize(
    "query", ["password=hun&ter2", "password=hun&ter2&sslmode=require", "password=x&foo=bar"]
)
def test_a_raw_ampersand_in_a_query_password_is_refused_without_the_rest(query):
    with pytest.raises(ConfigError) as caught:
        urls.resolve(f"postgresql://u@db.example.com/app?{query}", None)
    message = str(caught.value)
    assert "right after its password that libpq does not know" in message
    assert "Fix: percent-encode the password= value in DATABASE_URL ('&' as %26" in message
    assert "?password=***" in message
    assert "ter2" not in message and "hun" not in message and "foo" not in message


def test_secrets_of_a_url():
    assert urls.secrets_of("postgresql://u:p%40ss@h/db?password=a%zz&sslpassword=k") == (
        "p%40ss",
        "p@ss",
        "a%zz",
        "k",
    )
    assert urls.secrets_of("postgresql://u@h/db") == ()
    assert urls.secrets_of("host=h password='a b'") == ("'a b'", "a b")


@pytest.mark.parametrize(
    "url", ["postgresql://u:hunter2@h/d%zzb", "postgresql://u:hunter2@h/db?options=%zz"]
)
def test_a_bad_percent_escape_libpq_refuses_says_so_when_the_url_is_read(url):
    with pytest.raises(ConfigError) as caught:
        urls.resolve(url, None)
    message = str(caught.value)
    assert message.startswith("DATABASE_URL has a bad percent-escape: invalid percent-encoded")
    assert "Fix: write each literal '%' in DATABASE_URL as %25" in message
    assert_hides_password(message)
