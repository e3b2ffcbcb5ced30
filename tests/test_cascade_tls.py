"""A child node links to an https parent over TLS, and only if it trusts the certificate."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from server.cascade.nodes import issue_credential
from server.cascade.parent_link import PARENT_LINK
from server.state import CTX
from server.tls import self_signed
from tests.conftest import make_settings, serve_node, start_node
from tests.live_helpers import ClientFactory, local_meeting_id, wait_for
from tests.test_browser_live import schedule_meeting


@pytest.fixture
async def https_province(tmp_path: Path) -> AsyncIterator[tuple[web.Application, str, Path]]:
    """A province node serving HTTPS itself, with a self-signed certificate."""
    cert, key = self_signed(tmp_path / "tls", ["localhost", "127.0.0.1"])
    root = tmp_path / "CM"
    root.mkdir()
    settings = make_settings(
        root, f"sqlite+aiosqlite:///{root / 'p.sqlite3'}", tls_cert=cert, tls_key=key
    )
    app, runner, url = await serve_node(settings)
    yield app, url, cert
    await runner.cleanup()


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
    await schedule_meeting(url, title, ssl.create_default_context(cafile=str(cert)))
    assert await local_meeting_id(district, "kt.cm-nc-hr", title) > 0
    await district.close()

    # Without it (the system's CAs do not know a self-signed certificate): no link at all.
    caplog.set_level(logging.INFO, logger="server.cascade.parent_link")
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
