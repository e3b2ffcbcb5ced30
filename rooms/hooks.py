"""Where the router hooks into aiortc's private internals, and the start-up check for them.

aiortc is pinned exactly (pyproject.toml). These names are private to aiortc, so the node
checks them before it serves and refuses to start, naming the version found, if one is gone.
"""

from __future__ import annotations

import asyncio
import copy
import errno
import inspect
import re
import socket
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from struct import pack
from typing import Any

import aioice
import aioice.ice
import aiortc
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import (
    RTP_HISTORY_SIZE,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpRrPacket,
    RtcpSrPacket,
    RtpPacket,
)
from aiortc.utils import random32

from rooms.retransmit import guard
from rooms.roundtrip import RoundTrips, record_reports
from rooms.router import Consumer, Packer, Producer

EXPECTED_AIORTC = "1.16.0"
VIDEO_MIME = "video/VP8"
AUDIO_MIME = "audio/opus"
OPUS_MAX_BITRATE = 24000
OPUS_PARAMETERS = {
    "minptime": 10,
    "useinbandfec": 1,
    "usedtx": 1,
    "maxaveragebitrate": OPUS_MAX_BITRATE,
}


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
    if "self.__remote_bitrate_estimator is not None" not in handle_rtp:
        problems.append("RTCRtpReceiver.__remote_bitrate_estimator")
    if "self.__jitter_buffer.add(packet)" not in handle_rtp:
        problems.append("RTCRtpReceiver._handle_rtp_packet feeding the jitter buffer")
    if not hasattr(RTCRtpReceiver, "_send_rtcp_pli"):
        problems.append("RTCRtpReceiver._send_rtcp_pli")
    sender_src = inspect.getsource(RTCRtpSender)
    if "self.__encoder.pack(data)" not in sender_src or "self.__encoder is None" not in sender_src:
        problems.append("RTCRtpSender encoder.pack path")
    # The forwarding sender (_ForwardingSender) keeps these private sender fields.
    for name in _SENDER_FIELDS:
        if not re.search(rf"self\.__{name}(: [^=\n]+)? = ", sender_src):
            problems.append(f"RTCRtpSender.__{name}")
    send_src = inspect.getsource(RTCRtpSender.send)
    if "asyncio.ensure_future(self._run_rtp(parameters.codecs[0]))" not in send_src:
        problems.append("RTCRtpSender.send starting self._run_rtp")
    if "packet = self.__rtp_history.get(" not in inspect.getsource(RTCRtpSender._retransmit):
        problems.append("RTCRtpSender._retransmit reading __rtp_history")
    if not callable(getattr(RTCRtpSender, "_next_encoded_frame", None)):
        problems.append("RTCRtpSender._next_encoded_frame")
    problems += _send_path_problems()
    rtcp_src = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    # rooms/roundtrip.py: sender reports leave through _send_rtcp; LSR and its time as kept
    rtcp_loop = inspect.getsource(RTCRtpSender._run_rtcp)
    if "await self._send_rtcp(packets)" not in rtcp_loop or "self.__lsr_time = " not in rtcp_loop:
        problems.append("RTCRtpSender._run_rtcp sending reports through _send_rtcp")
    if "await self._retransmit(" not in rtcp_src:
        problems.append("RTCRtpSender._handle_rtcp_packet answering NACKs with _retransmit")
    if "self._send_keyframe()" not in rtcp_src:
        problems.append("RTCRtpSender._send_keyframe on PLI/FIR")
    # rooms/linkrate.py: a receiver's round trip and REMB, as the sender keeps them
    if "self.__rtt = " not in rtcp_src:
        problems.append("RTCRtpSender.__rtt")
    if "self.__encoder.target_bitrate = bitrate" not in rtcp_src:
        problems.append("RTCRtpSender REMB to encoder.target_bitrate")
    if not callable(getattr(Vp8Encoder, "_packetize", None)):
        problems.append("Vp8Encoder._packetize")
    if not hasattr(RTCRtpTransceiver, "_codecs") and "_codecs" not in inspect.getsource(
        RTCRtpTransceiver.__init__
    ):
        problems.append("RTCRtpTransceiver._codecs")
    # rooms/liveness.py reads the DTLS transport's receive counter.
    if "self.__rx_packets += 1" not in inspect.getsource(RTCDtlsTransport._recv_next):
        problems.append("RTCDtlsTransport.__rx_packets")
    if problems:
        raise AiortcHooksMissing(
            f"aiortc {found} lacks internals the media router needs ({', '.join(problems)}); "
            f"this node is built for aiortc {EXPECTED_AIORTC}"
        )


def _awaits(func: Any) -> list[str] | None:
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return None  # no source to check: counted as missing
    return [a.strip() for a in re.findall(r"\bawait\s+([^\n]+)", source)]


def _send_path_problems() -> list[str]:
    """The forwarding sender drives ``RTCDtlsTransport._send_rtp`` without a task, so that
    chain must never suspend: SRTP, then the ICE connection's send, then ``sendto``."""
    ice_src = inspect.getsource(RTCIceTransport.__init__)
    expected = [
        (RTCDtlsTransport._send_rtp, ["self.transport._send(data)"]),
        (aioice.Connection.send, ["self.sendto(data, 1)"]),
        (
            aioice.Connection.sendto,
            ["active_pair.protocol.send_data(data, active_pair.remote_addr)"],
        ),
        (aioice.ice.StunProtocol.send_data, []),
    ]
    problems = [
        f"{func.__module__}.{func.__qualname__} awaiting only {awaits or 'nothing'}"
        for func, awaits in expected
        if _awaits(func) != awaits
    ]
    if "self._send = self._connection.send" not in ice_src:
        problems.append("RTCIceTransport._send bound to the aioice connection's send")
    if "self.transport.sendto(data, addr)" not in inspect.getsource(
        aioice.ice.StunProtocol.send_data
    ):
        problems.append("aioice StunProtocol.send_data calling transport.sendto")
    # _Wire: the same chain for a whole frame
    send_rtp = inspect.getsource(RTCDtlsTransport._send_rtp)
    if "self._tx_srtp.protect(data)" not in send_rtp or "self.__tx_packets += 1" not in send_rtp:
        problems.append("RTCDtlsTransport._send_rtp protecting with _tx_srtp and counting")
    if "self._state != State.CONNECTED" not in send_rtp:
        problems.append("RTCDtlsTransport._state")
    if "self._nominated.get(component)" not in inspect.getsource(aioice.Connection.sendto):
        problems.append("aioice Connection._nominated")
    return problems


def attach_producer(receiver: RTCRtpReceiver, producer: Producer) -> None:
    """Route a receiver's packets into ``producer`` instead of its decoder.

    Called from the peer connection's ``track`` event, which fires inside
    ``setRemoteDescription`` before ``receive()`` starts the receiver.
    """
    receiver._RTCRtpReceiver__jitter_buffer = producer.assembler  # type: ignore[attr-defined]


def quiet_remb(receiver: RTCRtpReceiver) -> None:
    """Send a publishing browser no REMB. aiortc's receive-side estimator lets the estimate
    grow only with what arrives (at most 1.5 times it), and a camera that sends little
    (a still picture, a slow start) is then held there: measured, a chair's browser stayed
    at 40-140 kbit/s for both tiers. Without REMB (and without transport-cc, which aiortc
    lacks) the browser's own loss-based control sets its rate, up to each tier's
    ``maxBitrate``. A forwarding node has nothing to gain from throttling a publisher:
    each receiver's link is served by the tiers instead."""
    receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]


def attach_consumer(sender: RTCRtpSender, consumer: Consumer) -> None:
    """Make ``sender`` send ``consumer``'s frames as they are, and pass its PLIs upstream."""
    sender._RTCRtpSender__encoder = Packer(consumer)  # type: ignore[attr-defined]
    sender._send_keyframe = consumer.request_keyframe  # type: ignore[method-assign]
    if not hasattr(sender, "repairs"):  # NACKs answered within a budget (rooms/retransmit.py)
        sender._retransmit = guard(  # type: ignore[method-assign,assignment]
            sender,
            sender._retransmit,
            lambda: consumer.bytes_sent,
            lambda: (_ntp_now() >> 14) & 0x00FFFFFF,
        )
    consumer.sender = sender
    _keep_receiver_reports(sender, consumer)
    if not getattr(sender, "_RTCRtpSender__started", True):
        # send() has not started the RTP task yet: it will start the forwarding loop instead.
        track = consumer.track
        if not isinstance(track.queue, _DirectQueue):
            queue = _DirectQueue(track.queue.maxsize)
            while not track.queue.empty():
                queue.put_nowait(track.queue.get_nowait())
            track.queue = queue
        forwarding = _ForwardingSender(sender)
        sender._run_rtp = forwarding.run  # type: ignore[method-assign]
    sender.replaceTrack(consumer.track)


def _keep_receiver_reports(sender: RTCRtpSender, consumer: Consumer) -> None:
    """Let the consumer read its receiver's reports (rooms/linkrate.py): aiortc handles them
    (the round trip, stats), then the figures are kept on ``consumer.feedback``."""
    handle = sender._handle_rtcp_packet
    if getattr(handle, "keeps_reports", False):
        return

    trips = RoundTrips()
    record_reports(sender, trips)

    async def handle_and_keep(packet: Any) -> None:
        await handle(packet)
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            ssrc = sender._ssrc
            for report in packet.reports:
                if report.ssrc == ssrc:
                    rtt = getattr(sender, "_RTCRtpSender__rtt", None)
                    raw = trips.answered(report.lsr, report.dlsr, time.time())
                    behind, trips.probe_answer = trips.probe_answer, None
                    consumer.feedback.report(
                        report.fraction_lost,
                        report.jitter,
                        rtt,
                        time.monotonic(),
                        report.packets_lost,
                        report.highest_sequence,
                        raw,
                        behind,
                    )

    handle_and_keep.keeps_reports = True  # type: ignore[attr-defined]
    sender._handle_rtcp_packet = handle_and_keep  # type: ignore[method-assign]


# -- the forwarding send path ------------------------------------------------------------------
#
# aiortc's RTCRtpSender._run_rtp is a task per sender: it wakes for every frame (a queue hop
# from the producer), builds an RtpPacket per payload, reads the wall clock through datetime
# twice per packet (clock.current_ntp_time) and serializes the header extensions per packet.
# For a forwarding sender that is most of the per-subscriber cost apart from SRTP and the
# send system call. _ForwardingSender does the same work with that overhead cut down:
#
# * once its task runs, the consumer's queue hands each frame straight to the sender
#   (``_DirectQueue.put_nowait``), which packs and sends it at once, inside the producer's
#   delivery, instead of waking a task per frame per subscriber;
# * the RTP header is packed directly and the extension block is built once, with only the
#   abs-send-time spliced in per packet;
# * each packet still goes through aiortc's own ``RTCDtlsTransport._send_rtp`` (SRTP, ICE,
#   transport counters), driven to completion synchronously: in aiortc 1.16.0 and aioice that
#   coroutine chain never suspends (``check_aiortc_hooks`` verifies this at start-up).
#
# The packets on the wire are the same bytes as aiortc's: same header fields, the same
# extensions in the same order, an abs-send-time taken per packet, the same sequence numbers
# and timestamps; the NACK history is kept for aiortc's own _retransmit, the counters for
# sender reports and stats are kept, and the loop exits as aiortc's does (stopping the track
# and setting __rtp_exited, which stop() waits for).

_SENDER_FIELDS = (
    "track",
    "encoder",
    "mid",
    "rtp_exited",
    "rtp_header_extensions_map",
    "rtp_started",
    "rtp_history",
    "ntp_timestamp",
    "rtp_timestamp",
    "octet_count",
    "packet_count",
)
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def _ntp_now() -> int:
    """aiortc's clock.current_ntp_time() (microsecond wall clock in NTP format), without the
    two datetime objects it builds."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    return ((seconds + _NTP_EPOCH_OFFSET) << 32) | ((micros << 32) // 1_000_000)


def _drive(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends to its end, here and now."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("the RTP send path suspended; the forwarding sender needs it not to")


class _DirectQueue(asyncio.Queue[Any]):
    """A consumer track's queue that, while ``sink`` is set, sends each item at once.

    Items queue as usual until the forwarding sender runs (before the link is up), and
    whenever ``sink`` is cleared; the sender only takes over once the queue is empty, so
    frames keep their order.
    """

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.sink: Callable[[Any], None] | None = None

    def put_nowait(self, item: Any) -> None:
        sink = self.sink
        if sink is None:
            super().put_nowait(item)
        else:
            sink(item)


class _SentPacket(RtpPacket):
    """A sent packet as the NACK history keeps it: the fields, not a serialized header.

    aiortc's ``_retransmit`` reads it like an ``RtpPacket`` (``wrap_rtx`` then ``serialize``);
    the header extensions object is only built when a retransmission asks for it.
    """

    def __init__(
        self,
        payload_type: int,
        marker: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        abs_send_time: int | None,
        mid: str | None,
    ) -> None:
        # RtpPacket.__init__ is skipped on purpose: it builds objects this never needs.
        self.version = 2
        self.marker = marker
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrc = []
        self.payload = payload
        self.padding_size = 0
        self._abs_send_time = abs_send_time
        self._mid = mid

    @property
    def extensions(self) -> HeaderExtensions:
        return HeaderExtensions(abs_send_time=self._abs_send_time, mid=self._mid)

    @extensions.setter
    def extensions(self, value: HeaderExtensions) -> None:
        self._abs_send_time = value.abs_send_time
        self._mid = value.mid


def _extension_block(ext_map: HeaderExtensionsMap, values: HeaderExtensions) -> bytes:
    """What ``RtpPacket.serialize`` puts between the fixed header and the payload."""
    profile, value = ext_map.set(values)
    return pack("!HH", profile, len(value) >> 2) + value if value else b""


# Linux UDP generic segmentation offload (linux/udp.h): one sendmsg() carries a frame's
# packets, the kernel cuts them into datagrams of the given size (the last may be shorter).
UDP_SEGMENT = 103
GSO_MAX_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS (at least 64 on every version with GSO)
GSO_MAX_BYTES = 60_000  # under the 64 KiB an IP packet can hold before segmentation
_gso = {"usable": sys.platform == "linux"}  # cleared for the process on the first refusal


class _Wire:
    """Where a forwarding sender's packets go once the link is up: the SRTP session of the
    DTLS transport and the UDP socket of the nominated ICE pair.

    This is what ``RTCDtlsTransport._send_rtp`` and aioice's send chain do for one packet
    (protect, then ``transport.sendto`` to the pair's remote address), for a whole frame at
    once: one ``sendmsg`` with UDP segmentation when the packets allow it, and the transport's
    byte and packet counters kept as aiortc keeps them. ``resolve`` answers None whenever the
    path is anything else (not connected yet, no nominated pair, a TURN relay, data waiting
    in the transport's buffer); the sender then uses aiortc's chain, packet by packet.
    """

    __slots__ = ("addr", "dtls", "sock", "srtp", "transport")

    def __init__(self, dtls: Any, srtp: Any, transport: Any, sock: Any, addr: Any) -> None:
        self.dtls, self.srtp, self.transport, self.sock, self.addr = (
            dtls,
            srtp,
            transport,
            sock,
            addr,
        )

    @staticmethod
    def resolve(dtls: Any) -> _Wire | None:
        try:
            if dtls._state is not DtlsState.CONNECTED:
                return None
            pair = dtls.transport._connection._nominated.get(1)
            if pair is None or type(pair.protocol) is not aioice.ice.StunProtocol:
                return None
            transport: Any = pair.protocol.transport
            if transport is None or transport.is_closing() or transport.get_write_buffer_size():
                return None
            return _Wire(dtls, dtls._tx_srtp, transport, transport._sock, pair.remote_addr)
        except AttributeError:
            return None

    def send(self, packets: list[bytes]) -> None:
        protect = self.srtp.protect
        wire = [protect(p) for p in packets]
        size = len(wire[0])
        octets = sum(len(w) for w in wire)
        sent = False
        if (
            len(wire) > 1
            and _gso["usable"]
            and all(len(w) == size for w in wire[:-1])
            and len(wire[-1]) <= size
        ):
            sent = self._send_segmented(wire, size)
        if not sent:
            sendto = self.transport.sendto
            for w in wire:
                sendto(w, self.addr)
        self.dtls._RTCDtlsTransport__tx_bytes += octets
        self.dtls._RTCDtlsTransport__tx_packets += len(wire)

    def _send_segmented(self, wire: list[bytes], size: int) -> bool:
        """One ``sendmsg`` per run of up to GSO_MAX_SEGMENTS packets; False (nothing sent)
        when the kernel refuses, so the caller sends them one by one."""
        per_call = max(1, min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // size))
        option = [(socket.SOL_UDP, UDP_SEGMENT, pack("=H", size))]
        for first in range(0, len(wire), per_call):
            chunk = wire[first : first + per_call]
            try:
                if len(chunk) == 1:
                    self.sock.sendto(chunk[0], self.addr)
                else:
                    self.sock.sendmsg([b"".join(chunk)], option, 0, self.addr)
            except BlockingIOError:
                # The socket is full: the rest goes through the transport, which buffers.
                for w in wire[first:]:
                    self.transport.sendto(w, self.addr)
                return True
            except OSError as exc:
                if first == 0 and exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT):
                    _gso["usable"] = False  # no segmentation on this machine or route
                    return False
                raise
        return True


class _ForwardingSender:
    """``RTCRtpSender._run_rtp`` (aiortc 1.16.0) for a sender whose encoder only packs."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self.sender = sender
        self.s: Any = sender  # for the name-mangled private fields
        self.codec: RTCRtpCodecParameters | None = None
        self.payload_type = 0
        self.sequence_number = 0
        self.timestamp_origin = 0
        self.mid: str | None = None
        self.ext_map = HeaderExtensionsMap()
        self.history: dict[int, RtpPacket] = {}
        # the extension block with the abs-send-time cut out (constant: not negotiated)
        self.ext_prefix = self.ext_suffix = b""
        self.ext_constant: bytes | None = None
        self.ended: asyncio.Future[Exception | None] | None = None

    def _prepare_extensions(self) -> None:
        low = _extension_block(self.ext_map, HeaderExtensions(abs_send_time=0, mid=self.mid))
        high = _extension_block(
            self.ext_map, HeaderExtensions(abs_send_time=0xFFFFFF, mid=self.mid)
        )
        if low == high:
            self.ext_constant = low  # abs-send-time not negotiated
            return
        diff = [i for i, (a, b) in enumerate(zip(low, high, strict=False)) if a != b]
        if len(low) != len(high) or diff != [diff[0], diff[0] + 1, diff[0] + 2]:
            raise RuntimeError("abs-send-time is not three bytes of the extension block")
        self.ext_prefix, self.ext_suffix = low[: diff[0]], low[diff[0] + 3 :]

    def send_frame(
        self,
        payloads: list[bytes],
        timestamp: int,
        audio_level: int | None,
        payload_type: int | None = None,
    ) -> None:
        """Send one frame's payloads, as the body of aiortc's RTP loop does (in
        ``payload_type`` when given: RED audio, rooms/router.py ``Packer.pack_forwarded``)."""
        timestamp = (self.timestamp_origin + timestamp) & 0xFFFFFFFF
        ssrc = self.sender._ssrc
        send_rtp = self.sender.transport._send_rtp
        payload_type = self.payload_type if payload_type is None else payload_type
        history = self.history
        mid = self.mid
        last = len(payloads) - 1
        sent = 0
        packets: list[bytes] = []
        # abs-send-time once per frame: its packets leave together, within microseconds
        # (the field counts 3.8 µs steps), where aiortc reads the clock for each.
        ast = (_ntp_now() >> 14) & 0x00FFFFFF
        try:
            for i, payload in enumerate(payloads):
                seq = self.sequence_number
                marker = 1 if i == last else 0
                if audio_level is not None:
                    values = HeaderExtensions(
                        abs_send_time=ast, mid=mid, audio_level=(False, -audio_level)
                    )
                    block = _extension_block(self.ext_map, values)
                elif self.ext_constant is not None:
                    block = self.ext_constant
                else:
                    block = self.ext_prefix + ast.to_bytes(3, "big") + self.ext_suffix
                history[seq % RTP_HISTORY_SIZE] = _SentPacket(
                    payload_type, marker, seq, timestamp, ssrc, payload, ast, mid
                )
                first = 0x90 if block else 0x80  # version 2, extension bit
                header = pack("!BBHLL", first, (marker << 7) | payload_type, seq, timestamp, ssrc)
                packets.append(header + block + payload)
                self.sequence_number = (seq + 1) & 0xFFFF
            wire = _Wire.resolve(self.sender.transport)
            if wire is not None:
                wire.send(packets)
                sent = len(packets)
            else:
                for packet in packets:
                    _drive(send_rtp(packet))
                    sent += 1
        finally:
            # aiortc updates these after every packet; nothing can read them between the
            # packets of one frame (no other task runs meanwhile), so once per frame is the same.
            if sent:
                s = self.s
                s._RTCRtpSender__ntp_timestamp = _ntp_now()
                s._RTCRtpSender__rtp_timestamp = timestamp
                s._RTCRtpSender__octet_count += sum(len(p) for p in payloads[:sent])
                s._RTCRtpSender__packet_count += sent

    def _sink(self, track: MediaStreamTrack, queue: _DirectQueue) -> Callable[[Any], None]:
        """What ``queue.put_nowait`` calls while the sender sends directly: the work of
        ``_next_encoded_frame`` (with ``ForwardedTrack.recv``) and of one loop turn."""
        s = self.s

        def stop(outcome: Exception | None, requeue: Any = None) -> None:
            queue.sink = None
            if requeue is not None:
                queue.put_nowait(requeue)
            if self.ended is not None and not self.ended.done():
                self.ended.set_result(outcome)

        def sink(item: Any) -> None:
            try:
                encoder = s._RTCRtpSender__encoder
                if s._RTCRtpSender__track is not track or not isinstance(encoder, Packer):
                    stop(None, item)  # the sender changed: let the task loop handle it
                    return
                if item is None or track.readyState != "live":
                    raise MediaStreamError
                if not self.sender._enabled:
                    return
                payloads, timestamp, payload_type = encoder.pack_forwarded(item)
                if payloads:
                    self.send_frame(payloads, timestamp, None, payload_type)
            except Exception as exc:
                # This sender's task ends on it, as in aiortc; the producer's other
                # consumers never see it.
                stop(exc)

        return sink

    async def run(self, codec: RTCRtpCodecParameters) -> None:
        s = self.s
        s._RTCRtpSender__rtp_started.set()
        assert codec.payloadType is not None
        self.codec = codec
        self.payload_type = codec.payloadType
        self.sequence_number = random_sequence_number()
        self.timestamp_origin = random32()
        self.history = s._RTCRtpSender__rtp_history
        self.ext_map = s._RTCRtpSender__rtp_header_extensions_map
        self.mid = s._RTCRtpSender__mid
        loop = asyncio.get_running_loop()
        try:
            self._prepare_extensions()
            while True:
                track = s._RTCRtpSender__track
                if not track:
                    await asyncio.sleep(0.02)
                    continue

                queue = getattr(track, "queue", None)
                if (
                    isinstance(queue, _DirectQueue)
                    and queue.empty()
                    and isinstance(s._RTCRtpSender__encoder, Packer)
                ):
                    # Hand frames to the sink until it stops (an error, or a change).
                    self.ended = loop.create_future()
                    queue.sink = self._sink(track, queue)
                    try:
                        outcome = await self.ended
                    finally:
                        queue.sink = None
                        self.ended = None
                    if outcome is not None:
                        raise outcome
                    continue

                enc_frame = await self.sender._next_encoded_frame(codec)
                if enc_frame is None:
                    continue
                self.send_frame(enc_frame.payloads, enc_frame.timestamp, enc_frame.audio_level)
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        except Exception:
            # as in aiortc: __rtp_exited must be set or stop() hangs, so warn and fall through
            s._RTCRtpSender__log_warning(traceback.format_exc())

        if s._RTCRtpSender__track:
            s._RTCRtpSender__track.stop()
            s._RTCRtpSender__track = None
        s._RTCRtpSender__encoder = None
        s._RTCRtpSender__rtp_exited.set()


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
    if transceiver.kind == "audio":
        # The answer tells a publishing browser how to encode: in-band FEC (a lost packet is
        # rebuilt from the next one) and DTX (almost nothing sent in silence), at most
        # OPUS_MAX_BITRATE. Forwarding passes both through to every receiver unchanged.
        main[0].parameters = {**main[0].parameters, **OPUS_PARAMETERS}
    keep = [main[0]]
    keep += [
        c
        for c in codecs
        if c.mimeType.lower() == "video/rtx" and c.parameters.get("apt") == main[0].payloadType
    ]
    transceiver._codecs = keep
    return True


RED_MIME = "audio/red"


def offer_red(transceiver: RTCRtpTransceiver, offered: list[Any]) -> int | None:
    """Keep RED (RFC 2198) on an audio section the node sends on, when the browser offered
    it over the Opus kept: the node can then add redundancy for a lossy link without
    re-encoding. Returns RED's payload type, or None."""
    codecs: list[Any] = transceiver._codecs
    opus = next((c for c in codecs if c.mimeType.lower() == AUDIO_MIME), None)
    if opus is None:
        return None
    for codec in offered:
        if codec.mimeType.lower() != RED_MIME or codec.clockRate != opus.clockRate:
            continue
        if list(codec.parameters) != [f"{opus.payloadType}/{opus.payloadType}"]:
            continue
        codecs.append(copy.deepcopy(codec))
        return int(codec.payloadType)
    return None


def encoder_of(sender: RTCRtpSender) -> Any:
    return getattr(sender, "_RTCRtpSender__encoder", None)
