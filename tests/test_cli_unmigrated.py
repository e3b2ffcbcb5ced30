"""A newcomer who runs a command before `hoinghi migrate` is told to migrate, in one line,
not shown a traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.test_cli import environment, hoinghi


@pytest.mark.parametrize(
    "args",
    [
        ["demo"],
        ["user", "add", "someone", "--role", "chair", "--unit", "CM"],
        ["node", "list"],
    ],
    ids=" ".join,
)
async def test_a_command_on_an_unmigrated_database_says_run_migrate(
    tmp_path: Path, any_db_url: str, args: list[str]
) -> None:
    env = environment(tmp_path) | {"HOINGHI_DATABASE_URL": any_db_url}
    done = await asyncio.to_thread(hoinghi, tmp_path, *args, stdin="mat-khau-thu-nghiem\n", env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "hoinghi migrate" in done.stderr, done.stderr
