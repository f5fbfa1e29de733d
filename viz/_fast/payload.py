"""`POST /collect` bodies: `parse_payload` validates one body into a `Payload` (SPEC §5).

The rules, their order and the error paths are documented in `viz._fast._payload_py`.
"""

from viz._fast._select import load
from viz._fast.errors import PayloadError, PayloadTooLarge

_impl, COMPILED = load("payload")
Event = _impl.Event
Payload = _impl.Payload
parse_payload = _impl.parse_payload
hit_event = _impl.hit_event
MAX_BODY_BYTES: int = _impl.MAX_BODY_BYTES
MAX_EVENTS: int = _impl.MAX_EVENTS

__all__ = [
    "COMPILED",
    "MAX_BODY_BYTES",
    "MAX_EVENTS",
    "Event",
    "Payload",
    "PayloadError",
    "PayloadTooLarge",
    "hit_event",
    "parse_payload",
]
