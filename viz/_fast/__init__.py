"""Hot-path helpers of collect and consumer: tokens, payload parsing, the Kafka envelope, and the
Native-format block the consumer inserts.

Each concern has a compiled module (`_*_c`, Cython) and a pure-Python twin (`_*_py`) with the
same API and exception classes; `COMPILED` says whether all compiled ones are in use
(set `VIZ_NO_EXTENSIONS=1` to force the twins). Tests import both explicitly.
"""

from viz._fast import envelope, native, payload, token
from viz._fast.envelope import (
    VERSION,
    Envelope,
    EnvelopeError,
    UnknownVersion,
    decode_envelope,
    encode_envelope,
    encode_envelopes,
)
from viz._fast.errors import TokenError
from viz._fast.payload import (
    MAX_BODY_BYTES,
    MAX_EVENTS,
    Event,
    Payload,
    PayloadError,
    PayloadTooLarge,
    hit_event,
    parse_payload,
)
from viz._fast.token import WINDOW_S, BadIdentifier, TokenExpired, TokenInvalid, TokenSigner

COMPILED: bool = token.COMPILED and payload.COMPILED and envelope.COMPILED and native.COMPILED

__all__ = [
    "COMPILED",
    "MAX_BODY_BYTES",
    "MAX_EVENTS",
    "VERSION",
    "WINDOW_S",
    "BadIdentifier",
    "Envelope",
    "EnvelopeError",
    "Event",
    "Payload",
    "PayloadError",
    "PayloadTooLarge",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenSigner",
    "UnknownVersion",
    "decode_envelope",
    "encode_envelope",
    "encode_envelopes",
    "hit_event",
    "parse_payload",
]
