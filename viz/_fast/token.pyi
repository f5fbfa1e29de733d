from collections.abc import Sequence
from typing import Final

from viz._fast.errors import BadIdentifier as BadIdentifier
from viz._fast.errors import TokenError as TokenError
from viz._fast.errors import TokenExpired as TokenExpired
from viz._fast.errors import TokenInvalid as TokenInvalid

COMPILED: Final[bool]
WINDOW_S: Final[int]

class TokenSigner:
    def __init__(
        self, keys: Sequence[bytes], *, expired_lookback_windows: int = 12
    ) -> None: ...
    @property
    def expired_lookback_windows(self) -> int: ...
    def issue(self, bid: str, tid: str, now_s: float) -> str: ...
    def expires_at_s(self, now_s: float) -> int: ...
    def verify(self, bid: str, tid: str, token: str, now_s: float) -> None: ...
