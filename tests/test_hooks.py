"""The node checks aiortc's internals at start-up and refuses to start without them."""

from __future__ import annotations

import pytest
from aiortc import RTCRtpReceiver

import rooms.hooks
from rooms.hooks import AiortcHooksMissing, check_aiortc_hooks
from server.app import create_app
from server.config import load_settings


def test_pinned_aiortc_has_every_internal_the_router_hooks() -> None:
    check_aiortc_hooks()


def test_node_refuses_to_start_naming_the_aiortc_version_when_an_internal_is_gone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_send_rtcp_pli")
    monkeypatch.setattr(rooms.hooks.aiortc, "__version__", "9.9.9")
    with pytest.raises(AiortcHooksMissing) as caught:
        check_aiortc_hooks()
    assert "aiortc 9.9.9" in str(caught.value)
    assert "_send_rtcp_pli" in str(caught.value)
    with pytest.raises(AiortcHooksMissing):
        create_app(load_settings(environ={}, data_dir=str(tmp_path)))
