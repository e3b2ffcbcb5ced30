"""Where the router hooks into aiortc's private internals, and the start-up check for them.

aiortc is pinned exactly (pyproject.toml). These names are private to aiortc, so the node
checks them before it serves and refuses to start, naming the version found, if one is gone.
"""

from __future__ import annotations

import inspect
from typing import Any

import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.vpx import Vp8Encoder

from rooms.router import Consumer, Packer, Producer

EXPECTED_AIORTC = "1.16.0"
VIDEO_MIME = "video/VP8"
AUDIO_MIME = "audio/opus"


class AiortcHooksMissing(RuntimeError):
    """The installed aiortc lacks an internal the router relies on."""


def check_aiortc_hooks() -> None:
    """Raise ``AiortcHooksMissing`` naming what is missing and the version found."""
    found = getattr(aiortc, "__version__", "unknown")
    problems: list[str] = []
    receiver_init = inspect.getsource(RTCRtpReceiver.__init__)
    handle_rtp = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    if "self.__jitter_buffer = JitterBuffer" not in receiver_init:
        problems.append("RTCRtpReceiver.__jitter_buffer")
    if "self.__jitter_buffer.add(packet)" not in handle_rtp:
        problems.append("RTCRtpReceiver._handle_rtp_packet feeding the jitter buffer")
    if not hasattr(RTCRtpReceiver, "_send_rtcp_pli"):
        problems.append("RTCRtpReceiver._send_rtcp_pli")
    sender_src = inspect.getsource(RTCRtpSender)
    if "self.__encoder.pack(data)" not in sender_src or "self.__encoder is None" not in sender_src:
        problems.append("RTCRtpSender encoder.pack path")
    if "self._send_keyframe()" not in inspect.getsource(RTCRtpSender._handle_rtcp_packet):
        problems.append("RTCRtpSender._send_keyframe on PLI/FIR")
    if not callable(getattr(Vp8Encoder, "_packetize", None)):
        problems.append("Vp8Encoder._packetize")
    if not hasattr(RTCRtpTransceiver, "_codecs") and "_codecs" not in inspect.getsource(
        RTCRtpTransceiver.__init__
    ):
        problems.append("RTCRtpTransceiver._codecs")
    if problems:
        raise AiortcHooksMissing(
            f"aiortc {found} lacks internals the media router needs ({', '.join(problems)}); "
            f"this node is built for aiortc {EXPECTED_AIORTC}"
        )


def attach_producer(receiver: RTCRtpReceiver, producer: Producer) -> None:
    """Route a receiver's packets into ``producer`` instead of its decoder.

    Called from the peer connection's ``track`` event, which fires inside
    ``setRemoteDescription`` before ``receive()`` starts the receiver.
    """
    receiver._RTCRtpReceiver__jitter_buffer = producer.assembler  # type: ignore[attr-defined]


def attach_consumer(sender: RTCRtpSender, consumer: Consumer) -> None:
    """Make ``sender`` send ``consumer``'s frames as they are, and pass its PLIs upstream."""
    sender._RTCRtpSender__encoder = Packer(consumer)  # type: ignore[attr-defined]
    sender._send_keyframe = consumer.request_keyframe  # type: ignore[method-assign]
    sender.replaceTrack(consumer.track)


def restrict_codecs(transceiver: RTCRtpTransceiver) -> bool:
    """Keep one codec per kind (VP8 or Opus, plus VP8's RTX) so packets pass unchanged.

    ``setCodecPreferences`` has no effect on transceivers created from a remote offer, so
    this filters the negotiated list after ``setRemoteDescription``. False if none is left.
    """
    codecs: list[Any] = transceiver._codecs
    wanted = VIDEO_MIME if transceiver.kind == "video" else AUDIO_MIME
    main = [c for c in codecs if c.mimeType.lower() == wanted.lower()]
    if not main:
        return False
    keep = [main[0]]
    keep += [
        c
        for c in codecs
        if c.mimeType.lower() == "video/rtx" and c.parameters.get("apt") == main[0].payloadType
    ]
    transceiver._codecs = keep
    return True


def encoder_of(sender: RTCRtpSender) -> Any:
    return getattr(sender, "_RTCRtpSender__encoder", None)
