"""TLS as Neon requires it: require, verify-full with the right CA, clear failures otherwise.

Both doors are tested: PgBouncer always speaks TLS; the server itself does when its build
has SSL (the bundled 17 and Debian's 15 both do; a LOCAL_PG_BIN_DIR build may not).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from helpers import cli, verify_line

from neon_migrate.connection.engines import reset_engines
from neon_migrate.connection.health import check_connection
from neon_migrate.twin.tls import make_ca


@pytest.fixture(params=["pooled", "direct"])
def door(request, pg_server, postgresql) -> dict:
    """host, port and database of one door of the twin, with TLS."""
    if request.param == "pooled":
        port = request.getfixturevalue("pooled_url") and pg_server.pooler_port
    else:
        if not pg_server.tls:
            pytest.skip("this PostgreSQL build (LOCAL_PG_BIN_DIR) has no SSL support")
        port = pg_server.port
    secret = quote(pg_server.password, safe="")
    return {
        "base": f"postgresql://{pg_server.user}:{secret}@127.0.0.1:{port}/{postgresql.info.dbname}",
        "ca": str(pg_server.ca_file),
        "port": port,
    }


def health_of(url: str, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", url)
    reset_engines()
    return check_connection("pooled")


def test_sslmode_require(harness_env, door, monkeypatch):
    assert health_of(door["base"] + "?sslmode=require", monkeypatch).ssl_in_use is True


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_verify_full_with_the_generated_ca(harness_env, door, monkeypatch, host):
    url = door["base"].replace("@127.0.0.1:", f"@{host}:")
    url += f"?sslmode=verify-full&sslrootcert={quote(door['ca'])}"
    assert health_of(url, monkeypatch).ssl_in_use is True


def test_verify_full_against_a_wrong_ca_fails_in_one_line(harness_env, door, tmp_path):
    make_ca(tmp_path / "other", common_name="some other CA")
    url = door["base"] + f"?sslmode=verify-full&sslrootcert={quote(str(tmp_path / 'other/ca.crt'))}"
    result = cli("verify", env=dict(harness_env, DATABASE_URL=url))
    assert result.returncode == 2, result.stdout
    line = verify_line(result.stdout, "pooled")
    assert f"FAIL  TLS to 127.0.0.1:{door['port']} failed:" in line
    assert "certificate verify failed" in line
    assert "Fix: check sslmode/sslrootcert in DATABASE_URL" in line


def test_verify_full_against_a_wrong_host_name_fails_in_one_line(harness_env, door):
    url = door["base"].replace("@127.0.0.1:", "@wrong.example.test:")
    url += f"?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={quote(door['ca'])}"
    result = cli("verify", env=dict(harness_env, DATABASE_URL=url))
    assert result.returncode == 2, result.stdout
    line = verify_line(result.stdout, "pooled")
    assert 'does not match host name "wrong.example.test"' in line
    assert "Traceback" not in result.stdout


def test_remote_looking_host_without_sslmode_gets_tls(harness_env, door, monkeypatch):
    """No sslmode on a non-local host: require is added, so TLS is really used."""
    url = door["base"].replace("@127.0.0.1:", "@db.example.test:") + "?hostaddr=127.0.0.1"
    health = health_of(url, monkeypatch)
    assert health.local is False
    assert health.ssl_in_use is True
