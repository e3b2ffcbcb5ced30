"""Settings: defaults < TOML file < HOINGHI_* environment < overrides; bad input refused."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.config import ConfigError, Settings, load_settings

PROJECT_DIR = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_without_file_or_environment_the_documented_defaults_apply() -> None:
    settings = load_settings(environ={})
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.timezone == "Asia/Ho_Chi_Minh"
    assert settings.login_max_failures_pair == 5
    assert settings.login_delay_after == 5
    assert settings.login_delay_max_seconds == 300
    assert settings.trust_forwarded is False
    assert settings.tls_enabled is False


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    config = write(
        tmp_path / "hoinghi.toml",
        """
[hoinghi]
host = "0.0.0.0"
port = 9001
session_hours = 4
log_level = "warning"
""",
    )
    environ = {"HOINGHI_PORT": "9002", "HOINGHI_SESSION_HOURS": "6", "UNRELATED": "x"}
    settings = load_settings(config, environ=environ, session_hours=8)

    assert settings.timezone == "Asia/Ho_Chi_Minh"  # default: set nowhere
    assert settings.host == "0.0.0.0"  # file beats default
    assert settings.log_level == "WARNING"  # file, normalised to upper case
    assert settings.port == 9002  # environment beats file
    assert settings.session_hours == 8  # override beats environment and file


def test_config_file_is_taken_from_hoinghi_config_variable(tmp_path: Path) -> None:
    config = write(tmp_path / "node.toml", '[hoinghi]\ntimezone = "Asia/Bangkok"\n')
    settings = load_settings(environ={"HOINGHI_CONFIG": str(config)})
    assert settings.timezone == "Asia/Bangkok"


def test_config_file_without_hoinghi_table_is_read_from_top_level(tmp_path: Path) -> None:
    config = write(tmp_path / "node.toml", "port = 8443\ntrust_forwarded = true\n")
    settings = load_settings(config, environ={})
    assert settings.port == 8443
    assert settings.trust_forwarded is True


def test_environment_strings_become_typed_values() -> None:
    settings = load_settings(
        environ={
            "HOINGHI_TRUST_FORWARDED": "true",
            "HOINGHI_LOGIN_MAX_FAILURES_PAIR": "3",
            "HOINGHI_DATA_DIR": "/srv/hoinghi",
        }
    )
    assert settings.trust_forwarded is True
    assert settings.login_max_failures_pair == 3
    assert settings.data_dir == Path("/srv/hoinghi")
    assert settings.effective_database_url == "sqlite+aiosqlite:////srv/hoinghi/hoinghi.sqlite3"


def test_missing_config_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_settings(missing, environ={})
    assert str(missing) in str(info.value)


def test_invalid_toml_is_refused_naming_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "broken.toml", "[hoinghi]\nport = = 8080\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_settings(config, environ={})
    assert str(config) in str(info.value)


def test_hoinghi_entry_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path / "odd.toml", "hoinghi = 5\n")
    with pytest.raises(ConfigError, match=r"\[hoinghi\] must be a table"):
        load_settings(config, environ={})


def test_unknown_key_in_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = write(tmp_path / "typo.toml", '[hoinghi]\nprot = 8080\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert "prot" in str(info.value)
    assert "host" not in str(info.value)


@pytest.mark.parametrize(
    ("key", "env_value"),
    [
        ("port", "70000"),
        ("port", "eighty"),
        ("timezone", "Asia/Saigon_City"),
        ("log_level", "LOUD"),
        ("log_format", "xml"),
        ("default_language", "fr"),
        ("session_hours", "0"),
        ("login_max_failures_pair", "0"),
        ("login_delay_max_seconds", "0"),
    ],
)
def test_bad_value_in_environment_is_refused_naming_the_key(key: str, env_value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={f"HOINGHI_{key.upper()}": env_value})
    assert f"{key}:" in str(info.value)


def test_bad_port_in_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = write(tmp_path / "port.toml", "[hoinghi]\nport = 70000\n")
    with pytest.raises(ConfigError, match="port") as info:
        load_settings(config, environ={})
    assert "65535" in str(info.value)


def test_unknown_timezone_message_quotes_the_zone() -> None:
    with pytest.raises(ConfigError, match="timezone") as info:
        load_settings(environ={}, timezone="Mars/Olympus")
    assert "Mars/Olympus" in str(info.value)


def test_log_level_is_case_insensitive() -> None:
    assert load_settings(environ={"HOINGHI_LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_tls_cert_without_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key must be set together"):
        load_settings(environ={"HOINGHI_TLS_CERT": str(tmp_path / "cert.pem")})
    with pytest.raises(ConfigError, match="tls_cert and tls_key must be set together"):
        load_settings(environ={}, tls_key=tmp_path / "key.pem")


def test_tls_cert_with_key_enables_https(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "HOINGHI_TLS_CERT": str(tmp_path / "cert.pem"),
            "HOINGHI_TLS_KEY": str(tmp_path / "key.pem"),
        }
    )
    assert settings.tls_enabled is True


def test_generated_secret_is_kept_owner_only_and_reused(tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=tmp_path / "var")
    first = settings.resolved_secret()
    path = tmp_path / "var" / "secret_key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(first) >= 32
    assert load_settings(environ={}, data_dir=tmp_path / "var").resolved_secret() == first


@pytest.mark.timeout(60)
def test_processes_starting_at_once_agree_on_one_generated_secret(tmp_path: Path) -> None:
    # A node and its CLI commands may all start on a fresh data directory together.
    data_dir = tmp_path / "var"
    code = (
        "import sys, time; from server.config import load_settings; "
        "settings = load_settings(environ={}, data_dir=sys.argv[1]); "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); "  # all at the same moment
        "print(settings.resolved_secret())"
    )
    start = time.time() + 5.0  # after every process has imported
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(data_dir), str(start)],
            cwd=PROJECT_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]
    results = [p.communicate(timeout=50) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode() for _, err in results]
    keys = {out.decode().strip() for out, _ in results}
    assert keys == {(data_dir / "secret_key").read_text().strip()}
    assert sorted(p.name for p in data_dir.iterdir()) == ["secret_key"]  # no temporary left
    assert (data_dir / "secret_key").stat().st_mode & 0o777 == 0o600


def test_readme_lists_every_setting_as_environment_variable() -> None:
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    missing = [
        f"HOINGHI_{key.upper()}"
        for key in Settings.model_fields
        if f"HOINGHI_{key.upper()}" not in readme
    ]
    assert missing == [], f"README.md does not document: {', '.join(missing)}"
