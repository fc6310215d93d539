"""The data port's frame codec: round trips, and every way a frame can be bad."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshserve.protocol import frames
from meshserve.protocol.frames import ErrorReply, Frame, FrameError, Kind

LIMIT = frames.frame_limit(1 << 16)


def _read(data: bytes, *, max_bytes: int = LIMIT) -> Frame:
    """The one frame ``data`` holds."""
    (frame,) = frames.FrameBuffer(max_bytes=max_bytes).feed(data)
    return frame


_metadata = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=20),
        st.one_of(st.text(max_size=40), st.binary(max_size=40)),
    ),
    max_size=6,
)


@given(
    kind=st.sampled_from(list(Kind)),
    request_id=st.integers(min_value=0, max_value=2**32 - 1),
    head=st.binary(max_size=200),
    body=st.binary(max_size=2000),
)
def test_any_frame_reads_back_as_written(
    kind: Kind, request_id: int, head: bytes, body: bytes
) -> None:
    frame = Frame(kind, request_id, head, body)
    assert _read(b"".join(frames.encode_frame(frame))) == frame


@given(
    timeout_s=st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)),
    metadata=_metadata,
)
def test_a_request_head_keeps_the_deadline_and_every_metadata_entry(
    timeout_s: float | None, metadata: list[tuple[str, str | bytes]]
) -> None:
    head = frames.encode_request_head(timeout_s, metadata)
    assert frames.decode_request_head(head) == (timeout_s, metadata)


def test_an_error_reply_keeps_the_status_the_type_and_the_message() -> None:
    reply = ErrorReply(code=5, type_name="ModelNotFoundError", message="model 'm' ✗")
    assert frames.decode_error(frames.encode_error(reply)) == reply
    assert frames.decode_error(b"") is None  # an empty head: success


def test_hello_carries_the_token_and_its_version() -> None:
    assert frames.decode_hello(frames.encode_hello("abc")) == b"abc"
    with pytest.raises(FrameError, match="version"):
        frames.decode_hello(bytes((frames.VERSION + 1,)) + b"abc")
    with pytest.raises(FrameError):
        frames.decode_hello(b"")


def test_a_frame_over_the_limit_is_refused_before_its_bytes_arrive() -> None:
    frame = Frame(Kind.REQUEST, 1, b"", b"x" * 100)
    data = b"".join(frames.encode_frame(frame))
    # Only the prefix is there: the size is judged from it alone.
    with pytest.raises(FrameError, match="over the limit of 50"):
        frames.FrameBuffer(max_bytes=50).feed(data[:13])


def test_a_head_longer_than_its_frame_or_the_head_limit_is_refused() -> None:
    inconsistent = struct.pack("!IBII", 9 + 4, Kind.REQUEST, 1, 5) + b"abcd"
    with pytest.raises(FrameError, match="cannot hold a head of 5"):
        _read(inconsistent)
    big = frames.HEAD_LIMIT_BYTES + 1
    too_big = struct.pack("!IBII", 9 + big, Kind.REQUEST, 1, big)
    with pytest.raises(FrameError, match="frame head of"):
        _read(too_big, max_bytes=2 * big)
    short = struct.pack("!IBII", 3, Kind.REQUEST, 1, 0)
    with pytest.raises(FrameError, match="cannot hold"):
        _read(short)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(FrameError, match="unknown frame kind 99"):
        _read(struct.pack("!IBII", 9, 99, 1, 0))


@given(
    frame=st.builds(
        Frame,
        st.sampled_from(list(Kind)),
        st.integers(min_value=0, max_value=2**32 - 1),
        st.binary(max_size=50),
        st.binary(max_size=300),
    ),
    count=st.integers(min_value=1, max_value=4),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_frames_cut_anywhere_come_out_whole_once_their_last_byte_arrives(
    frame: Frame, count: int, cuts: list[int]
) -> None:
    data = b"".join(frames.encode_frame(frame)) * count
    buffer = frames.FrameBuffer(max_bytes=LIMIT)
    found: list[Frame] = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        found += buffer.feed(data[start:cut])
        start = cut
    assert found == [frame] * count


def test_a_truncated_frame_stays_pending_until_its_last_byte() -> None:
    frame = Frame(Kind.REQUEST, 7, b"head", b"body-bytes")
    data = b"".join(frames.encode_frame(frame))
    for cut in (0, 3, 12, 15, len(data) - 1):
        assert frames.FrameBuffer(max_bytes=LIMIT).feed(data[:cut]) == []
    buffer = frames.FrameBuffer(max_bytes=LIMIT)
    assert buffer.feed(data[:-1]) == []
    assert buffer.feed(data[-1:]) == [frame]


@pytest.mark.parametrize(
    "head",
    [
        b"",  # no timeout, no count
        struct.pack("!dH", 1.0, 1),  # one entry announced, none there
        struct.pack("!dH", 1.0, 1) + struct.pack("!BHI", 0, 3, 10) + b"key" + b"v",  # cut value
        struct.pack("!dH", 1.0, 0) + b"trailing",
        struct.pack("!dH", -1.0, 0),  # a negative deadline
        struct.pack("!dH", math.inf, 0),
        struct.pack("!dH", 1.0, 1) + struct.pack("!BHI", 0, 1, 1) + b"\xff" + b"v",  # not UTF-8
    ],
)
def test_a_malformed_request_head_is_a_frame_error(head: bytes) -> None:
    with pytest.raises(FrameError):
        frames.decode_request_head(head)


@pytest.mark.parametrize(
    "head",
    [b"\x00", struct.pack("!HH", 0, 0), struct.pack("!HH", 13, 50) + b"short", b"\x00\x0d\x00"],
)
def test_a_malformed_error_reply_is_a_frame_error(head: bytes) -> None:
    with pytest.raises(FrameError):
        frames.decode_error(head)


@given(garbage=st.binary(min_size=13, max_size=300))
def test_garbage_is_a_frame_error_or_frames_never_anything_else(garbage: bytes) -> None:
    try:
        for frame in frames.FrameBuffer(max_bytes=256).feed(garbage):
            if frame.kind is Kind.REQUEST:
                frames.decode_request_head(frame.head)
            elif frame.kind is Kind.REPLY:
                frames.decode_error(frame.head)
    except FrameError:
        pass
