from collections.abc import Callable
from typing import Any, Final

from viz._fast.errors import EnvelopeError as EnvelopeError
from viz._fast.errors import UnknownVersion as UnknownVersion
from viz._fast.payload import Event, Payload

COMPILED: Final[bool]
VERSION: Final[int]

class Envelope:
    v: int
    ts: int
    eid: str
    sid: str
    tid: str
    bid: str | None
    id: str
    t: str
    p: str
    r: str | None
    cts: int
    ms: int | None
    h: str | None
    n: str | None
    title: str | None
    ua: str
    tier: int

def encode_envelope(
    event: Event, *, sid: str, tid: str, bid: str | None, ua: str, tier: int, server_ms: int
) -> bytes: ...
def encode_envelopes(
    payload: Payload, *, tid: str, ua: str, tier: int, server_ms: int
) -> list[bytes]: ...
def decode_envelope(raw: bytes) -> Envelope: ...
def decode_row(
    raw: bytes,
    partition: int,
    offset: int,
    agent: Callable[[str], tuple[Any, ...]],
    attribution: Callable[[str, str], tuple[Any, ...]],
) -> list[Any]: ...
