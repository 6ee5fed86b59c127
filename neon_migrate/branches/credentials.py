"""The Neon API's URL, key and project ID, checked before any request is made.

A malformed value stops the check with a fix, never echoing what may be a secret: a key
with characters no key has is not shown, not even in part, nor a URL that carries
credentials; plain http to a remote host is refused (the key would cross the network in
clear text), and so is a redirect later (api.py does not follow them).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from neon_migrate.branches.answers import KEY_VARIABLE, PROJECT_VARIABLE
from neon_migrate.connection.urls import is_local_host
from neon_migrate.errors import ConfigError

NEON_API_URL = "https://console.neon.tech/api/v2"
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: fits in a header


def checked_key(api_key: str | Any) -> str:
    """The API key (a str, or pydantic's SecretStr as settings keep it), stripped."""
    if hasattr(api_key, "get_secret_value"):
        api_key = api_key.get_secret_value()
    key = (api_key or "").strip()
    if not key:
        raise ConfigError(
            f"{KEY_VARIABLE} is not set",
            "create an API key in the Neon "
            f"console (Account settings → API keys) and set {KEY_VARIABLE}",
        )
    if not _KEY_CHARS.fullmatch(key):  # never echo it, not even in part
        raise ConfigError(
            f"{KEY_VARIABLE} has characters an API key cannot have",
            f"paste the key again into {KEY_VARIABLE}",
        )
    return key


def checked_project(project_id: str) -> str:
    project_id = (project_id or "").strip()
    if not project_id or "/" in project_id:
        raise ConfigError(
            f"{PROJECT_VARIABLE} is not set"
            if not project_id
            else f"{PROJECT_VARIABLE}={project_id!r} is not a project ID",
            f"set {PROJECT_VARIABLE} to the ID in the Neon console's "
            "project settings (e.g. aged-wildflower-123456)",
        )
    return project_id


def checked_base_url(base_url: str) -> str:
    url = (base_url or NEON_API_URL).strip().rstrip("/")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # e.g. a bad port or IPv6 literal
        parts, hostname = None, None
    if parts is None or "@" in url or parts.query or parts.fragment:  # never echoed: a secret?
        raise ConfigError(
            "the Neon API URL is malformed or carries credentials or a query",
            f"leave it unset for {NEON_API_URL}",
        )
    if parts.scheme not in ("http", "https") or not hostname:
        raise ConfigError(
            f"the Neon API URL {url!r} is not an http(s) URL", f"leave it unset for {NEON_API_URL}"
        )
    if parts.scheme == "http" and not is_local_host(hostname):
        raise ConfigError(  # the key would cross the network in clear text
            f"the Neon API URL {url!r} is plain http to a remote host",
            "use https (the default is " + NEON_API_URL + ")",
        )
    return url
