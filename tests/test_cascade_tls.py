"""A child node links to an https parent over TLS, and only if it trusts the certificate."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import server.app
from server.app import create_app
from server.db import create_engine, migrate
from server.demo import DEMO_PASSWORD, seed_demo
from server.nodes import issue_credential
from server.parent_link import PARENT_LINK
from server.state import CTX
from server.tls import self_signed
from tests.conftest import FAST_HASHER, make_settings, start_node
from tests.live_helpers import ClientFactory, local_meeting_id, wait_for


@pytest.fixture
async def https_province(tmp_path: Path) -> AsyncIterator[tuple[web.Application, str, Path]]:
    """A province node serving HTTPS itself, with a self-signed certificate."""
    cert, key = self_signed(tmp_path / "tls", ["localhost", "127.0.0.1"])
    root = tmp_path / "CM"
    root.mkdir()
    settings = make_settings(
        root, f"sqlite+aiosqlite:///{root / 'p.sqlite3'}", tls_cert=cert, tls_key=key
    )
    engine = create_engine(settings.effective_database_url)
    await migrate(engine)
    await engine.dispose()
    app = create_app(settings)
    app[CTX].hasher = FAST_HASHER
    runner = web.AppRunner(app)
    await runner.setup()
    await seed_demo(app[CTX])
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server.app.ssl_context(settings))
    await site.start()
    yield app, f"https://127.0.0.1:{runner.addresses[0][1]}", cert
    await runner.cleanup()


async def _schedule_over_https(url: str, cert: Path, title: str) -> None:
    trust = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=trust), cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as client:
        async with client.get(f"{url}/api/csrf") as resp:
            csrf = (await resp.json())["csrf_token"]
        login = {"username": "chutri", "password": DEMO_PASSWORD}
        async with client.post(
            f"{url}/api/login", json=login, headers={"X-CSRF-Token": csrf}
        ) as resp:
            csrf = (await resp.json())["csrf_token"]
        meeting = {
            "title": title,
            "starts_at": "2030-01-01T08:00:00+07:00",
            "invited_subtrees": ["CM-NC"],
        }
        async with client.post(
            f"{url}/api/meetings", json=meeting, headers={"X-CSRF-Token": csrf}
        ) as resp:
            assert resp.status == 201, await resp.text()


@pytest.mark.timeout(90)
async def test_child_links_to_an_https_parent_it_trusts_and_not_to_one_it_does_not(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    https_province: tuple[web.Application, str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    province, url, cert = https_province
    credential = await issue_credential(province[CTX], "CM-NC", ["CM-NC"], "")

    # Trusting the parent's certificate: the link comes up over TLS and mirrors meetings.
    trusted_dir = tmp_path / "CM-NC"
    trusted_dir.mkdir()
    district = await start_node(
        aiohttp_client,
        trusted_dir,
        f"sqlite+aiosqlite:///{trusted_dir / 'node.sqlite3'}",
        parent_url=url,
        parent_credential=credential,
        served_units=["CM-NC"],
        parent_ca_file=cert,
    )
    link = district.app[PARENT_LINK]
    await asyncio.wait_for(link.connected.wait(), 20)
    assert link.state == "connected"
    title = "Hội nghị qua đường truyền mã hoá"
    await _schedule_over_https(url, cert, title)
    assert await local_meeting_id(district, "kt.cm-nc-hr", title) > 0
    await district.close()

    # Without it (the system's CAs do not know a self-signed certificate): no link at all.
    caplog.set_level(logging.INFO, logger="server.parent_link")
    wary_dir = tmp_path / "wary"
    wary_dir.mkdir()
    wary = await start_node(
        aiohttp_client,
        wary_dir,
        f"sqlite+aiosqlite:///{wary_dir / 'node.sqlite3'}",
        parent_url=url,
        parent_credential=credential,
        served_units=["CM-NC"],
    )
    wary_link = wary.app[PARENT_LINK]
    await wait_for(
        lambda: any("unreachable" in r.getMessage() for r in caplog.records), 20, "a failed try"
    )
    await asyncio.sleep(1.0)
    assert not wary_link.connected.is_set()
    assert wary_link.state == "unreachable"
    tries = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    # The log says why: the certificate, not a refusal by the parent.
    assert any("certificate" in t.lower() for t in tries), tries
    assert not any("refused" in r.getMessage() for r in caplog.records)
    assert all(credential.rsplit(".", 1)[1] not in r.getMessage() for r in caplog.records)
    await wary.close()
