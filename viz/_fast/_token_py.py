"""Pure-Python reference for request tokens: issue and verify windowed HMAC-SHA256 tokens.

    token = hex(HMAC-SHA256(site_key, bid + ":" + tid + ":" + str(floor(now_s / 300))))

Verification rules (identical in `_token_c`; see docs in `viz._fast.token`):

1. `bid` must be `[A-Za-z0-9_-]{22}`, `tid` `[A-Za-z0-9_-]{1,64}` -> else `BadIdentifier`
   (checked first, so no HMAC is spent on them and no `:` can shift the signed fields).
2. `token` must be 64 lowercase hex chars -> else `TokenInvalid`.
3. Accepted: any key (current first, then previous keys) for window w or w-1, where
   w = floor(now_s / 300).  Cost for a genuine token: 1..2*len(keys) HMACs.
4. Not accepted but genuine for window w+1 (an instance whose clock runs ahead) or for one of
   the `expired_lookback_windows` windows before w-1 (default 12, about an hour) -> `TokenExpired`:
   the tracker refreshes via /init and resends (collect answers 401 `token_expired`).
5. Anything else -> `TokenInvalid` (collect answers 403 `token_invalid`).  A forged token
   therefore costs exactly len(keys) * (3 + expired_lookback_windows) HMACs, never more.

Tokens older than the lookback are reported as invalid rather than expired; the tracker knows
`exp` from /init and refreshes before sending, so those only come from replays or very
stale queues, which must not buy unbounded HMAC work from the server.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Sequence

from viz._fast.errors import BadIdentifier, TokenExpired, TokenInvalid

__all__ = ["WINDOW_S", "TokenSigner"]

WINDOW_S = 300
DEFAULT_LOOKBACK_WINDOWS = 12
_MAX_KEYS = 8
_MAX_NOW_S = 1e12  # far beyond any real clock, small enough that windows fit in int64

_BID = re.compile(r"[A-Za-z0-9_-]{22}")
_TID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[0-9a-f]{64}")


def _window(now_s: float) -> int:
    if isinstance(now_s, bool) or not isinstance(now_s, (int, float)):
        raise TypeError("now_s must be a number")
    now = float(now_s)
    if not 0.0 <= now <= _MAX_NOW_S:  # also rejects NaN
        raise ValueError(f"now_s out of range: {now_s!r}")
    return math.floor(now / WINDOW_S)


def _check_ids(bid: str, tid: str) -> None:
    if not isinstance(bid, str) or not isinstance(tid, str):
        raise TypeError("bid and tid must be str")
    # re's fullmatch would accept non-ASCII digits for \d; the explicit classes do not.
    if _BID.fullmatch(bid) is None:
        raise BadIdentifier("bid must be 22 base64url characters")
    if _TID.fullmatch(tid) is None:
        raise BadIdentifier("tid must be 1-64 characters of [A-Za-z0-9_-]")


class TokenSigner:
    """Issues and verifies tokens for one site; build once per key set and reuse."""

    __slots__ = ("_states", "_lookback")

    def __init__(
        self, keys: Sequence[bytes], *, expired_lookback_windows: int = DEFAULT_LOOKBACK_WINDOWS
    ) -> None:
        keys = list(keys)
        if not 1 <= len(keys) <= _MAX_KEYS:
            raise ValueError(f"need 1..{_MAX_KEYS} keys, got {len(keys)}")
        if not isinstance(expired_lookback_windows, int) or not 0 <= expired_lookback_windows <= 288:
            raise ValueError("expired_lookback_windows must be an int in 0..288")
        self._lookback = expired_lookback_windows
        self._states = []
        for key in keys:
            if not isinstance(key, bytes):
                raise TypeError("keys must be bytes")
            if not key:
                raise ValueError("keys must not be empty")
            if len(key) > 64:  # RFC 2104: long keys are hashed first
                key = hashlib.sha256(key).digest()
            key = key.ljust(64, b"\0")
            inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
            outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
            self._states.append((inner, outer))

    @property
    def expired_lookback_windows(self) -> int:
        return self._lookback

    def issue(self, bid: str, tid: str, now_s: float) -> str:
        """The token for the current window, signed with the current (first) key."""
        _check_ids(bid, tid)
        return self._mac(0, bid, tid, _window(now_s)).hex()

    def expires_at_s(self, now_s: float) -> int:
        """Epoch second at which a token issued at `now_s` stops verifying."""
        return (_window(now_s) + 2) * WINDOW_S

    def verify(self, bid: str, tid: str, token: str, now_s: float) -> None:
        """Return None for a valid token; raise BadIdentifier, TokenInvalid or TokenExpired."""
        _check_ids(bid, tid)
        if not isinstance(token, str):
            raise TypeError("token must be str")
        w = _window(now_s)
        if _TOKEN.fullmatch(token) is None:
            raise TokenInvalid("token must be 64 lowercase hex characters")
        given = bytes.fromhex(token)
        nkeys = len(self._states)
        for k in range(nkeys):
            for win in (w, w - 1):
                if hmac.compare_digest(self._mac(k, bid, tid, win), given):
                    return
        for k in range(nkeys):
            for win in (w + 1, *range(w - 2, w - 2 - self._lookback, -1)):
                if hmac.compare_digest(self._mac(k, bid, tid, win), given):
                    raise TokenExpired("token window is over; refresh via /init")
        raise TokenInvalid("token does not match")

    def _mac(self, k: int, bid: str, tid: str, window: int) -> bytes:
        inner, outer = self._states[k]
        i = inner.copy()
        i.update(f"{bid}:{tid}:{window}".encode("ascii"))
        o = outer.copy()
        o.update(i.digest())
        return o.digest()
