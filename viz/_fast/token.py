"""Request tokens: `TokenSigner` issues and verifies windowed HMAC-SHA256 tokens (SPEC §3).

Rules and costs are documented in `viz._fast._token_py`. HTTP mapping for collect:
`BadIdentifier` -> 400, `TokenExpired` -> 401 reason `token_expired` (refresh via /init and
resend), `TokenInvalid` -> 403 reason `token_invalid`.
"""

from viz._fast._select import load
from viz._fast.errors import BadIdentifier, TokenError, TokenExpired, TokenInvalid

_impl, COMPILED = load("token")
TokenSigner = _impl.TokenSigner
WINDOW_S: int = _impl.WINDOW_S

__all__ = [
    "COMPILED",
    "WINDOW_S",
    "BadIdentifier",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenSigner",
]
