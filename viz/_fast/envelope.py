"""The Kafka envelope between collect and consumer: encode from validated events, decode back.

Field names and the dedup key `eid`, and the row `decode_row` builds for the consumer, are
documented in `viz._fast._envelope_py`.
"""

from viz._fast._select import load
from viz._fast.errors import EnvelopeError, UnknownVersion

_impl, COMPILED = load("envelope")
VERSION: int = _impl.VERSION
Envelope = _impl.Envelope
encode_envelope = _impl.encode_envelope
encode_envelopes = _impl.encode_envelopes
decode_envelope = _impl.decode_envelope
decode_row = _impl.decode_row

__all__ = [
    "COMPILED",
    "VERSION",
    "Envelope",
    "EnvelopeError",
    "UnknownVersion",
    "decode_envelope",
    "decode_row",
    "encode_envelope",
    "encode_envelopes",
]
