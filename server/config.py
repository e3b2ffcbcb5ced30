"""One settings object, built from a TOML file and then ``HOINGHI_*`` environment variables.

Precedence (highest first): environment variable, TOML file, default. Every key is listed
in README.md with its default; ``Settings.model_fields`` is the source of truth and a test
checks that README names each one.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from server.text import Line

ENV_PREFIX = "HOINGHI_"


class ConfigError(Exception):
    """A configuration file or variable is unusable; the message names the key."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Line = Field("127.0.0.1", description="Address the node listens on.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port the node listens on.")
    data_dir: Path = Field(Path("var"), description="Directory for the database, keys, TLS.")
    database_url: Line = Field(
        "",
        description="SQLAlchemy async URL; empty means SQLite at DATA_DIR/hoinghi.sqlite3.",
    )
    secret_key: Line = Field(
        "",
        description="Secret for signing; empty means generated once into DATA_DIR/secret_key.",
    )
    tls_cert: Path | None = Field(None, description="PEM certificate: serve HTTPS when set.")
    tls_key: Path | None = Field(None, description="PEM private key for tls_cert.")
    trust_forwarded: bool = Field(
        False,
        description="Honour X-Forwarded-Proto, -For and -Host from a reverse proxy.",
    )
    session_hours: float = Field(12.0, gt=0, description="Lifetime of a login session.")
    login_max_failures_pair: int = Field(
        5,
        ge=1,
        description="Failed logins for one account from one client address within the "
        "window; further logins of that account from that address wait for the window.",
    )
    login_delay_after: int = Field(
        5,
        ge=1,
        description="Failed logins of one account (from any address) within the window "
        "after which each further login waits 2^k s after the last failure (k = failures "
        "past this number).",
    )
    login_delay_max_seconds: int = Field(
        300, ge=1, description="The longest per-account delay between logins."
    )
    login_window_minutes: int = Field(
        15, ge=1, description="Window in which failed logins are counted."
    )
    parent_url: Line = Field(
        "", description="URL of the parent node; empty for the root (or the embedded node)."
    )
    parent_credential: SecretStr = Field(
        SecretStr(""), description="Credential the parent's `hoinghi node add` printed."
    )
    parent_ca_file: Path | None = Field(
        None,
        description="PEM file of the CA (or the parent's own certificate) to trust for an "
        "https parent_url; empty: the system's CAs.",
    )
    served_units: list[Line] = Field(
        default_factory=list,
        description="Codes of the units whose subtrees this node serves (comma-separated).",
    )
    media_addresses: list[Line] = Field(
        default_factory=list,
        description="Local IP addresses to offer media on (comma-separated); empty: all.",
    )
    public_url: Line = Field(
        "", description="This node's URL as users reach it (to send operators to it)."
    )
    node_code: Line = Field(
        "",
        max_length=64,
        description="This node's code in attendance records and on printed reports; empty: "
        "the code in parent_credential on a child node, `root` on the root.",
    )
    node_name: Line = Field(
        "",
        max_length=200,
        description="This node's name on printed reports; empty: the name of the unit it "
        "serves (the root unit on the root).",
    )
    timezone: Line = Field(
        "Asia/Ho_Chi_Minh", description="Time zone for showing and entering meeting times."
    )
    default_language: Literal["vi", "en"] = Field("vi", description="Language of pages.")
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    log_level: Line = Field("INFO", description="Logging level name.")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value

    # -- derived values -------------------------------------------------------------------

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("served_units", "media_addresses", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [code.strip() for code in value.split(",") if code.strip()]
        return value

    @field_validator("parent_url", "public_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @property
    def own_code(self) -> str:
        """This node's code: ``node_code``, else its credential's code, else ``root``."""
        if self.node_code:
            return self.node_code
        credential = self.parent_credential.get_secret_value()
        if self.parent_url and "." in credential:
            return credential.rsplit(".", 1)[0]
        return "root"

    @property
    def is_child(self) -> bool:
        return bool(self.parent_url)

    def check_child(self) -> None:
        """A child node needs its parent's credential and the units it serves."""
        if self.parent_url and not self.parent_credential.get_secret_value():
            raise ConfigError("invalid configuration: parent_url needs parent_credential")
        if self.parent_url and not self.served_units:
            raise ConfigError("invalid configuration: parent_url needs served_units")
        if self.parent_ca_file is not None and not self.parent_ca_file.is_file():
            raise ConfigError(
                f"invalid configuration: parent_ca_file {self.parent_ca_file} is not a file"
            )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'hoinghi.sqlite3').resolve()}"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    def resolved_secret(self) -> str:
        """The configured secret, or one generated once and kept in the data directory."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # Created with owner-only permissions, atomically: no reader sees a half-written key.
        # Several processes may start at once (a node and its CLI commands): each writes its
        # own temporary file and links it into place; the first link wins, and the others
        # read the winner's key, so every process of the node signs with the same one.
        tmp = path.with_name(f"secret_key.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(key)
            os.link(tmp, path)
        except FileExistsError:
            return path.read_text().strip()
        finally:
            tmp.unlink(missing_ok=True)
        return key


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in environ:
            values[name] = environ[key]
    return values


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings. ``path`` defaults to ``$HOINGHI_CONFIG`` when that is set."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get("HOINGHI_CONFIG"):
        path = Path(environ["HOINGHI_CONFIG"])
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        section = data.get("hoinghi", data)
        if not isinstance(section, dict):
            raise ConfigError(f"config file {path}: [hoinghi] must be a table")
        values.update(section)
    values.update(_env_values(environ))
    values.update(overrides)
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(root)"
            problems.append(f"{key}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from exc
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("invalid configuration: tls_cert and tls_key must be set together")
    settings.check_child()
    return settings
