"""Whatever a user types as a URL or a setting: a result, or our one-line ConfigError.

Never another exception (which the CLI would show as a traceback), never a multi-line
message, and never the password in it.
"""

from __future__ import annotations

import os
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from neon_migrate.connection import urls
from neon_migrate.errors import ConfigError
from neon_migrate.settings import Settings, env_name, load_settings

SCHEMES = st.sampled_from(
    ["postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg", "mysql", "", "PG"]
)
HOSTS = st.one_of(
    st.sampled_from([
        "localhost", "127.0.0.1", "[::1]", "::1", "[fe80::1", "", "db.example.com",
        "ep-cool-darkness-a1b2c3d4-pooler.us-east-2.aws.neon.tech",
        "ep-cool-darkness-a1b2c3d4.us-east-2.aws.neon.tech", "h1,h2", "%2Ftmp",
    ]),
    st.text(max_size=12),
)  # fmt: skip
PORTS = st.one_of(
    st.just(""),
    st.integers(-5, 70000).map(lambda port: f":{port}"),
    st.text(max_size=5).map(lambda text: f":{text}"),
)
QUERIES = st.one_of(
    st.just(""),
    st.lists(
        st.sampled_from([
            "sslmode=require", "sslmode=disable", "channel_binding=require",
            "options=endpoint%3Dep-x", "host=%2Ftmp", "host=", "dbname=x", "password=oops",
            "application_name=a@b", "%00", "&&",
        ]),
        max_size=3,
    ).map(lambda items: "?" + "&".join(items)),
    st.text(max_size=10).map(lambda text: "?" + text),
)  # fmt: skip
# A recognisable password, so "not in the message" cannot pass or fail by coincidence.
PASSWORDS = st.text(min_size=0, max_size=10).map(lambda middle: f"Zq9{middle}Xw7")


@st.composite
def url_text(draw) -> tuple[str, str]:
    password = draw(PASSWORDS)
    encoded = draw(st.sampled_from([quote(password, safe=""), password]))
    url = (
        f"{draw(SCHEMES)}://{draw(st.text(max_size=6))}:{encoded}@{draw(HOSTS)}"
        f"{draw(PORTS)}/{draw(st.text(max_size=8))}{draw(QUERIES)}"
    )
    return url, password


def secret_forms(password: str) -> set[str]:
    return {password, quote(password, safe=""), quote(password)}


@given(url_text(), st.one_of(st.none(), url_text()))
def test_any_url_pair_resolves_or_is_one_config_error(first, second):
    url, password = first
    other = second[0] if second else None
    secrets = secret_forms(password) | (secret_forms(second[1]) if second else set())
    try:
        pair = urls.resolve(url, other)
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message
        assert not [s for s in secrets if s in message], message
        assert not [s for s in secrets if s in repr(err)]
    else:
        assert isinstance(pair, urls.EndpointPair)
        assert not [s for s in secrets if s in repr(pair)]
        urls.to_sqlalchemy(pair.direct)  # what resolve accepts, the engine accepts


@given(st.text(max_size=120))
def test_any_text_resolves_or_is_one_config_error(text):
    try:
        urls.resolve(text, None)
    except ConfigError as err:
        assert "\n" not in str(err)


@given(url_text())
def test_mask_never_raises_and_hides_the_password(case):
    url, password = case
    masked = urls.mask(url)
    assert not [s for s in secret_forms(password) if s in masked], masked


SETTING_VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "true", "false", "yes", "0", "-0", "1e400", "nan", "\x00", "5s"]),
)


@given(st.sampled_from(sorted(Settings.model_fields)), SETTING_VALUES)
def test_any_setting_value_loads_or_is_one_config_error(field, value):
    variable = env_name(field)
    saved = os.environ.get(variable)
    try:
        if "\x00" in value:  # the environment cannot hold NUL; .env or code could pass it
            settings = load_settings(**{variable: value})
        else:
            os.environ[variable] = value
            settings = load_settings()
    except ConfigError as err:
        assert "\n" not in str(err)
        assert str(err).startswith(f"{variable}=")
    else:
        assert isinstance(settings, Settings)
    finally:
        if saved is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = saved
