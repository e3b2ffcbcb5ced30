"""The ``hoinghi`` command as an administrator runs it: a real process, a real database."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509

from server.app import HEAD_REVISION, create_app, node_context
from server.cli import build_parser
from server.config import load_settings
from server.db import create_engine, migrate
from server.demo.tree import seed_demo
from tests.conftest import FAST_HASHER, Node

SCRIPT = Path(sys.executable).parent / "hoinghi"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "server.cli"]

GOOD_UNITS = """\
units:
  - code: HN
    name: Thành phố Hà Nội
    level: province
  - code: HN-BD
    name: Quận Ba Đình
    level: district
    parent: HN
  - code: HN-BD-PX
    name: Phường Phúc Xá
    level: commune
    parent: HN-BD
"""


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOINGHI_")}
    env["HOINGHI_DATA_DIR"] = str(tmp_path / "var")
    return env


def hoinghi(
    tmp_path: Path,
    *args: str,
    stdin: str = "",
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env or environment(tmp_path),
        timeout=timeout,
        check=False,
    )


def db_rows(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "var" / "hoinghi.sqlite3") as conn:
        return conn.execute(sql).fetchall()


def all_command_paths() -> list[list[str]]:
    """Every command and subcommand the parser knows, as argument lists."""
    paths: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        paths.append(prefix)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, [*prefix, name])

    walk(build_parser(), [])
    return paths


def prepare_database(tmp_path: Path, demo: bool) -> Path:
    """Migrate (and seed) the data directory in-process: quicker than two more interpreters.

    Runs in its own thread, so its event loop never meets the one of an async test.
    """

    async def work() -> None:
        settings = load_settings(environ={}, data_dir=tmp_path / "var")
        engine = create_engine(settings.effective_database_url)
        await migrate(engine)
        await engine.dispose()
        if demo:
            node = node_context(settings)
            node.hasher = FAST_HASHER
            try:
                assert await seed_demo(node)
            finally:
                await node.engine.dispose()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work()).result()
    return tmp_path


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    """An empty database at the current schema."""
    return prepare_database(tmp_path, demo=False)


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The demo tree and accounts (province unit CM)."""
    return prepare_database(tmp_path, demo=True)


# -- help ------------------------------------------------------------------------------------------


def test_help_of_every_command_and_subcommand_shows_usage(tmp_path: Path) -> None:
    paths = all_command_paths()
    names = {" ".join(p) for p in paths}
    expected = {
        "",
        "serve",
        "migrate",
        "units",
        "units load",
        "user",
        "user add",
        "demo",
        "tls",
        "tls self-signed",
    }
    assert expected <= names
    # Started together: ten interpreters one after another would take most of a minute.
    procs = {
        " ".join(p): subprocess.Popen(
            [*COMMAND, *p, "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=environment(tmp_path),
        )
        for p in paths
    }
    problems = []
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        usage = f"usage: hoinghi {name}".rstrip()
        if proc.returncode != 0 or not out.startswith(usage) or err:
            problems.append(f"`hoinghi {name} --help`: exit {proc.returncode}, {out[:80]!r} {err}")
    assert problems == []
    # Nothing was created by asking for help.
    assert not (tmp_path / "var").exists()


def test_no_command_shows_usage_and_fails(tmp_path: Path) -> None:
    result = hoinghi(tmp_path)
    assert result.returncode == 2
    assert "usage: hoinghi" in result.stderr


# -- migrate and demo ------------------------------------------------------------------------------


def test_migrate_then_demo_prints_logins_and_refuses_to_load_twice(tmp_path: Path) -> None:
    migrated = tmp_path
    result = hoinghi(migrated, "migrate")
    assert result.returncode == 0, result.stderr
    assert "database is up to date" in result.stdout
    assert db_rows(migrated, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]

    first = hoinghi(migrated, "demo")
    assert first.returncode == 0, first.stderr
    assert "demo data loaded" in first.stdout
    assert "password 'hoinghi-demo'" in first.stdout
    for login in ("quantri", "chutri", "thuky", "kt.cm-nc-hr"):
        assert f"  {login} " in first.stdout
    users = db_rows(migrated, "SELECT count(*) FROM users")[0][0]
    assert users > 3

    second = hoinghi(migrated, "demo")
    assert second.returncode == 0, second.stderr
    assert "demo data was not loaded again" in second.stdout
    assert "demo data loaded:" not in second.stdout
    assert db_rows(migrated, "SELECT count(*) FROM users")[0][0] == users


def test_migrate_on_current_database_is_harmless(migrated: Path) -> None:
    again = hoinghi(migrated, "migrate")
    assert again.returncode == 0, again.stderr
    assert db_rows(migrated, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


# -- units load ------------------------------------------------------------------------------------


def test_units_load_adds_units_and_reload_updates_names(migrated: Path) -> None:
    units = migrated / "units.yaml"
    units.write_text(GOOD_UNITS, encoding="utf-8")
    result = hoinghi(migrated, "units", "load", str(units))
    assert result.returncode == 0, result.stderr
    assert "units loaded: 3 added, 0 updated" in result.stdout
    rows = db_rows(
        migrated,
        "SELECT u.code, u.name, u.level, p.code FROM units u "
        "LEFT JOIN units p ON p.id = u.parent_id ORDER BY u.code",
    )
    assert rows == [
        ("HN", "Thành phố Hà Nội", "province", None),
        ("HN-BD", "Quận Ba Đình", "district", "HN"),
        ("HN-BD-PX", "Phường Phúc Xá", "commune", "HN-BD"),
    ]

    units.write_text(GOOD_UNITS.replace("Phường Phúc Xá", "Phường Phúc Xá (mới)"), "utf-8")
    result = hoinghi(migrated, "units", "load", str(units))
    assert result.returncode == 0, result.stderr
    assert "units loaded: 0 added, 1 updated" in result.stdout
    assert db_rows(migrated, "SELECT name FROM units WHERE code = 'HN-BD-PX'") == [
        ("Phường Phúc Xá (mới)",)
    ]


@pytest.mark.parametrize(
    ("bad_entry", "message"),
    [
        (
            "  - {code: HN-BD-XX, name: Phường Lạ, level: commune, parent: NOPE}\n",
            "entry 4 (code 'HN-BD-XX'): parent 'NOPE' is not a known unit",
        ),
        (
            "  - {code: 'bad code', name: Phường Lạ, level: commune, parent: HN-BD}\n",
            "entry 4 (code 'bad code'): code:",
        ),
        (
            "  - {code: HN-BD-YY, level: commune, parent: HN-BD}\n",
            "entry 4 (code 'HN-BD-YY'): name:",
        ),
        (
            "  - {code: HN-BD, name: Quận Ba Đình lần hai, level: district, parent: HN}\n",
            "entry 4 (code 'HN-BD'): duplicate code, first at entry 2",
        ),
    ],
    ids=["unknown-parent", "bad-code", "missing-name", "duplicate"],
)
def test_units_load_with_bad_entry_names_it_and_loads_nothing(
    migrated: Path, bad_entry: str, message: str
) -> None:
    units = migrated / "units.yaml"
    units.write_text(GOOD_UNITS + bad_entry, encoding="utf-8")
    result = hoinghi(migrated, "units", "load", str(units))
    assert result.returncode != 0
    assert "nothing was loaded" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert db_rows(migrated, "SELECT count(*) FROM units") == [(0,)]


def test_units_load_of_missing_file_says_so(migrated: Path) -> None:
    result = hoinghi(migrated, "units", "load", str(migrated / "nope.yaml"))
    assert result.returncode != 0
    assert "file not found" in result.stderr


# -- user add --------------------------------------------------------------------------------------


async def test_user_added_with_piped_password_can_log_in(
    demo: Path, aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]]
) -> None:
    migrated = demo
    result = hoinghi(
        migrated,
        "user",
        "add",
        "nguyen.van.an",
        "--role",
        "chair",
        "--unit",
        "CM",
        "--full-name",
        "Nguyễn Văn An",
        stdin="mat-khau-dai-du\nignored second line\n",
    )
    assert result.returncode == 0, result.stderr
    assert "user nguyen.van.an added (chair, CM)" in result.stdout
    assert "mat-khau-dai-du" not in result.stdout + result.stderr
    stored = db_rows(migrated, "SELECT password_hash FROM users WHERE username = 'nguyen.van.an'")
    assert stored[0][0].startswith("$argon2")

    # The node started on that data directory lets the new chair in.
    settings = load_settings(environ={}, data_dir=migrated / "var")
    app = create_app(settings)
    node = Node(app, await aiohttp_client(app))
    try:
        session = await node.anonymous()
        await session.login("nguyen.van.an", "mat-khau-dai-du")
        status, body = await session.call("GET", "/api/me")
        assert status == 200
        assert body["user"]["role"] == "chair"
        assert body["user"]["unit"] == "CM"
        assert body["user"]["full_name"] == "Nguyễn Văn An"
        other = await node.anonymous()
        await other.fetch_csrf()
        status, body = await other.call(
            "POST", "/api/login", {"username": "nguyen.van.an", "password": "ignored second line"}
        )
        assert status == 401
    finally:
        await node.close()


def test_user_add_refuses_too_short_password(demo: Path) -> None:
    migrated = demo
    result = hoinghi(
        migrated, "user", "add", "ngan", "--role", "operator", "--unit", "CM", stdin="1234567\n"
    )
    assert result.returncode != 0
    assert "password must be at least 8 characters" in result.stderr
    assert db_rows(migrated, "SELECT count(*) FROM users WHERE username = 'ngan'") == [(0,)]


def test_user_add_refuses_unknown_unit_and_taken_username(demo: Path) -> None:
    migrated = demo
    result = hoinghi(
        migrated, "user", "add", "moi", "--role", "chair", "--unit", "HN", stdin="du-tam-ky-tu\n"
    )
    assert result.returncode != 0
    assert "unknown unit 'HN'" in result.stderr
    result = hoinghi(
        migrated, "user", "add", "chutri", "--role", "chair", "--unit", "CM", stdin="du-tam-ky-tu\n"
    )
    assert result.returncode != 0
    assert "username 'chutri' is taken" in result.stderr


def test_user_add_refuses_username_that_could_never_log_in(demo: Path) -> None:
    # Logins are matched in lower case, so "NguyenVanAn" would be an account nobody can use.
    migrated = demo
    result = hoinghi(
        migrated,
        "user",
        "add",
        "NguyenVanAn",
        "--role",
        "chair",
        "--unit",
        "CM",
        stdin="du-tam-ky-tu\n",
    )
    assert result.returncode != 0
    assert "NguyenVanAn" in result.stderr
    assert "lower-case" in result.stderr
    assert db_rows(
        migrated, "SELECT count(*) FROM users WHERE lower(username) = 'nguyenvanan'"
    ) == [(0,)]


def test_user_add_refuses_unknown_role(tmp_path: Path) -> None:
    result = hoinghi(tmp_path, "user", "add", "ai", "--role", "boss", "--unit", "CM")
    assert result.returncode == 2
    assert "invalid choice: 'boss'" in result.stderr


# -- tls -------------------------------------------------------------------------------------------


def test_tls_self_signed_writes_certificate_and_private_key(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    result = hoinghi(
        tmp_path,
        "tls",
        "self-signed",
        "--out",
        str(out),
        "--name",
        "localhost",
        "--name",
        "10.0.0.5",
    )
    assert result.returncode == 0, result.stderr
    cert_path, key_path = out / "cert.pem", out / "key.pem"
    assert f"HOINGHI_TLS_CERT={cert_path} HOINGHI_TLS_KEY={key_path}" in result.stdout
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in key_path.read_bytes()
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]


# -- serve and configuration -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_on_unmigrated_database_tells_to_run_migrate(tmp_path: Path) -> None:
    result = hoinghi(tmp_path, "serve", "--port", str(free_port()), timeout=30)
    assert result.returncode != 0
    assert "run `hoinghi migrate`" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_setting_in_environment_is_named_and_nothing_runs(tmp_path: Path) -> None:
    env = environment(tmp_path) | {"HOINGHI_PORT": "70000"}
    result = hoinghi(tmp_path, "migrate", env=env)
    assert result.returncode == 2
    assert "hoinghi: invalid configuration: port:" in result.stderr
    assert not (tmp_path / "var").exists()


def test_config_file_given_with_option_is_used(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'[hoinghi]\ndata_dir = "{tmp_path / "elsewhere"}"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOINGHI_")}
    result = hoinghi(tmp_path, "--config", str(config), "migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "elsewhere" / "hoinghi.sqlite3").exists()
    assert not (tmp_path / "var").exists()
