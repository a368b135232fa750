"""The outside check's wire format: length-prefixed JSON frames, bounded, and nothing else.

Both sides use this file: the grader imports it, and the check process receives its text and
loads it before any student code runs. Everything the check process sends is written by the
student (their code runs in it and can write to any of its descriptors), so the grader reads
frames with hard limits and treats anything that is not a well-formed frame as the end of the
check: ``ProtocolError``, never an exception the grader did not expect.
"""
from __future__ import annotations

import json
import os
import select
import struct
import time

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 96 * 2**20    # one message: an observed array of up to 64 MiB, base64-encoded
MAX_TOTAL_BYTES = 1024 * 2**20  # everything one check process may send
READ_CHUNK = 1 << 20


class ProtocolError(Exception):
    """The other side sent something that is not a frame of this protocol, or too much."""


class Ended(Exception):
    """The other side closed the channel (it exited or died)."""


class TimedOut(Exception):
    """No complete frame arrived before the deadline."""


def encode_frame(message: dict) -> bytes:
    body = json.dumps(message, separators=(",", ":"), allow_nan=True).encode("utf-8")
    if len(body) > MAX_FRAME_BYTES:
        raise ValueError(f"message of {len(body)} bytes is over the {MAX_FRAME_BYTES}-byte frame limit")
    return HEADER.pack(len(body)) + body


def write_frame(fd: int, message: dict) -> None:
    """Write one frame to file descriptor ``fd`` (blocking until all of it is written)."""
    data = memoryview(encode_frame(message))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def decode_body(body: bytes) -> dict:
    """One frame's JSON object; ``ProtocolError`` for anything else (bad UTF-8, bad JSON, nesting
    deep enough to exhaust the parser, a non-object)."""
    try:
        message = json.loads(body.decode("utf-8"))
    except Exception as exc:  # RecursionError and MemoryError included: the sender chose the bytes
        raise ProtocolError(f"unreadable frame ({type(exc).__name__})") from None
    if type(message) is not dict:
        raise ProtocolError("a frame that is not a JSON object")
    return message


class FrameReader:
    """Reads frames from a file descriptor with deadlines and byte limits."""

    def __init__(self, fd: int, total_limit: int = MAX_TOTAL_BYTES):
        self.fd = fd
        self.buffer = bytearray()
        self.total = 0
        self.total_limit = total_limit

    def _fill(self, needed: int, deadline: float | None) -> None:
        while len(self.buffer) < needed:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimedOut()
                ready, _, _ = select.select([self.fd], [], [], left)
                if not ready:
                    raise TimedOut()
            chunk = os.read(self.fd, READ_CHUNK)
            if not chunk:
                raise Ended()
            self.total += len(chunk)
            if self.total > self.total_limit:
                raise ProtocolError(f"more than {self.total_limit} bytes sent")
            self.buffer += chunk

    def read(self, deadline: float | None = None) -> dict:
        """The next frame's message. ``deadline`` is a ``time.monotonic()`` value or None (wait)."""
        self._fill(HEADER.size, deadline)
        (length,) = HEADER.unpack_from(self.buffer)
        if length > MAX_FRAME_BYTES:
            raise ProtocolError(f"a frame of {length} bytes, over the {MAX_FRAME_BYTES}-byte limit")
        self._fill(HEADER.size + length, deadline)
        body = bytes(self.buffer[HEADER.size:HEADER.size + length])
        del self.buffer[:HEADER.size + length]
        return decode_body(body)
