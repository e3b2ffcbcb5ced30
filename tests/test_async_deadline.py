"""A coroutine test that hangs is failed by its asyncio deadline (tests/conftest.py), even
when pytest-timeout's alarm would land inside an event-loop callback and be dropped."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_a_hanging_coroutine_test_fails_and_the_run_goes_on(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        (ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "test_hangs.py").write_text(
        textwrap.dedent(
            """
            import asyncio
            import time

            import pytest


            @pytest.mark.timeout(4)
            async def test_hangs():
                # Busy inside callbacks (where a SIGALRM exception is dropped), then waits forever.
                loop = asyncio.get_running_loop()
                def spin():
                    time.sleep(0.05)
                    loop.call_soon(spin)
                loop.call_soon(spin)
                await asyncio.Event().wait()


            async def test_after():
                assert True
            """
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    out = done.stdout + done.stderr
    assert "1 failed, 1 passed" in out, out
    assert "asyncio deadline" in out, out
    assert "in test_hangs" in out, out  # where it waited
