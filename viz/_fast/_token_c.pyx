# cython: language_level=3
"""Compiled request tokens: the same rules and API as `_token_py` (read its docstring).

Each key keeps its HMAC inner/outer SHA-256 states after the ipad/opad block, so one MAC is
two or three SHA-256 compressions through OpenSSL's low-level SHA256_* (SHA-NI where present);
the digest is compared with OpenSSL's CRYPTO_memcmp, which is constant-time.
"""

from libc.math cimport floor
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from viz._fast.errors import BadIdentifier, TokenExpired, TokenInvalid

cdef extern from *:
    """
    #define OPENSSL_SUPPRESS_DEPRECATED 1
    #include <openssl/sha.h>
    #include <openssl/crypto.h>
    """
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX *c) nogil
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t n) nogil
    int SHA256_Final(unsigned char *md, SHA256_CTX *c) nogil
    int CRYPTO_memcmp(const void *a, const void *b, size_t n) nogil

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    void *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    object PyUnicode_DecodeASCII(const char *s, Py_ssize_t size, const char *errors)

__all__ = ["WINDOW_S", "TokenSigner"]

WINDOW_S = 300
DEFAULT_LOOKBACK_WINDOWS = 12
cdef enum:
    _MAX_KEYS = 8
    # bid (22) + ':' + tid (<= 64) + ':' + window digits (<= 20) + sign
    _MSG_MAX = 128
cdef double _MAX_NOW_S = 1e12

cdef unsigned char _IDCHAR[256]
cdef signed char _HEXVAL[256]
cdef const char *_HEXDIGITS = b"0123456789abcdef"


cdef void _init_tables():
    cdef int c
    for c in range(256):
        _IDCHAR[c] = (
            (c >= 0x41 and c <= 0x5A) or (c >= 0x61 and c <= 0x7A)
            or (c >= 0x30 and c <= 0x39) or c == 0x5F or c == 0x2D
        )
        _HEXVAL[c] = -1
    for c in range(10):
        _HEXVAL[0x30 + c] = c
    for c in range(6):
        _HEXVAL[0x61 + c] = 10 + c


_init_tables()


cdef inline bint _ident_ok(object s, Py_ssize_t lo, Py_ssize_t hi):
    """True when `s` is an ASCII str of lo..hi characters of [A-Za-z0-9_-]."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i
    cdef const unsigned char *p
    if n < lo or n > hi or not PyUnicode_IS_ASCII(s):
        return False
    p = <const unsigned char *>PyUnicode_DATA(s)
    for i in range(n):
        if not _IDCHAR[p[i]]:
            return False
    return True


cdef inline void _check_ids(object bid, object tid) except *:
    if type(bid) is not str or type(tid) is not str:
        if not isinstance(bid, str) or not isinstance(tid, str):
            raise TypeError("bid and tid must be str")
    if not _ident_ok(bid, 22, 22):
        raise BadIdentifier("bid must be 22 base64url characters")
    if not _ident_ok(tid, 1, 64):
        raise BadIdentifier("tid must be 1-64 characters of [A-Za-z0-9_-]")


cdef long long _window(object now_s) except? -1:
    cdef double now
    if isinstance(now_s, bool) or not isinstance(now_s, (int, float)):
        raise TypeError("now_s must be a number")
    now = now_s
    if not (0.0 <= now <= _MAX_NOW_S):
        raise ValueError(f"now_s out of range: {now_s!r}")
    return <long long>floor(now / WINDOW_S)


cdef Py_ssize_t _write_int(char *out, long long v) noexcept nogil:
    """Decimal digits of v (v >= -1, as windows are) at out; returns the length."""
    cdef char tmp[24]
    cdef Py_ssize_t n = 0, i
    cdef bint neg = v < 0
    cdef unsigned long long u = <unsigned long long>(-v if neg else v)
    while True:
        tmp[n] = <char>(48 + u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    if neg:
        tmp[n] = b'-'
        n += 1
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef class TokenSigner:
    """Issues and verifies tokens for one site; build once per key set and reuse."""

    cdef SHA256_CTX *_ctx  # 2 per key: inner, outer
    cdef int _nkeys
    cdef readonly int expired_lookback_windows

    def __cinit__(self):
        self._ctx = NULL
        self._nkeys = 0

    def __init__(self, keys, *, expired_lookback_windows=DEFAULT_LOOKBACK_WINDOWS):
        cdef unsigned char block[64]
        cdef unsigned char pad[64]
        cdef const unsigned char *kp
        cdef Py_ssize_t klen, i
        cdef int k
        keys = list(keys)
        if not 1 <= len(keys) <= _MAX_KEYS:
            raise ValueError(f"need 1..{_MAX_KEYS} keys, got {len(keys)}")
        if (not isinstance(expired_lookback_windows, int)
                or not 0 <= expired_lookback_windows <= 288):
            raise ValueError("expired_lookback_windows must be an int in 0..288")
        for key in keys:
            if not isinstance(key, bytes):
                raise TypeError("keys must be bytes")
            if not key:
                raise ValueError("keys must not be empty")
        self.expired_lookback_windows = expired_lookback_windows
        if self._ctx != NULL:
            free(self._ctx)
            self._ctx = NULL
        self._ctx = <SHA256_CTX *>malloc(2 * len(keys) * sizeof(SHA256_CTX))
        if self._ctx == NULL:
            raise MemoryError()
        self._nkeys = len(keys)
        for k in range(self._nkeys):
            key = keys[k]
            klen = len(key)
            kp = key
            for i in range(64):
                block[i] = 0
            if klen > 64:  # RFC 2104: long keys are hashed first
                SHA256_Init(&self._ctx[2 * k])
                SHA256_Update(&self._ctx[2 * k], kp, klen)
                SHA256_Final(block, &self._ctx[2 * k])
            else:
                memcpy(block, kp, klen)
            for i in range(64):
                pad[i] = block[i] ^ 0x36
            SHA256_Init(&self._ctx[2 * k])
            SHA256_Update(&self._ctx[2 * k], pad, 64)
            for i in range(64):
                pad[i] = block[i] ^ 0x5C
            SHA256_Init(&self._ctx[2 * k + 1])
            SHA256_Update(&self._ctx[2 * k + 1], pad, 64)

    def __dealloc__(self):
        if self._ctx != NULL:
            free(self._ctx)

    cdef void _mac(self, int k, char *msg, Py_ssize_t prefix_len, long long window,
                   unsigned char *out) noexcept nogil:
        # msg holds "bid:tid:" (prefix_len bytes) with room for the window digits after it
        cdef SHA256_CTX ctx
        cdef unsigned char inner[32]
        cdef Py_ssize_t n = prefix_len + _write_int(msg + prefix_len, window)
        memcpy(&ctx, &self._ctx[2 * k], sizeof(SHA256_CTX))
        SHA256_Update(&ctx, msg, n)
        SHA256_Final(inner, &ctx)
        memcpy(&ctx, &self._ctx[2 * k + 1], sizeof(SHA256_CTX))
        SHA256_Update(&ctx, inner, 32)
        SHA256_Final(out, &ctx)

    cdef inline Py_ssize_t _prefix(self, object bid, object tid, char *msg) noexcept:
        cdef Py_ssize_t nb = PyUnicode_GET_LENGTH(bid), nt = PyUnicode_GET_LENGTH(tid)
        memcpy(msg, PyUnicode_DATA(bid), nb)
        msg[nb] = b':'
        memcpy(msg + nb + 1, PyUnicode_DATA(tid), nt)
        msg[nb + 1 + nt] = b':'
        return nb + nt + 2

    def issue(self, bid, tid, now_s):
        """The token for the current window, signed with the current (first) key."""
        cdef char msg[_MSG_MAX]
        cdef unsigned char digest[32]
        cdef char hexed[64]
        cdef int i
        _check_ids(bid, tid)
        cdef long long w = _window(now_s)
        self._mac(0, msg, self._prefix(bid, tid, msg), w, digest)
        for i in range(32):
            hexed[2 * i] = _HEXDIGITS[digest[i] >> 4]
            hexed[2 * i + 1] = _HEXDIGITS[digest[i] & 15]
        return PyUnicode_DecodeASCII(hexed, 64, NULL)

    def expires_at_s(self, now_s):
        """Epoch second at which a token issued at `now_s` stops verifying."""
        return (_window(now_s) + 2) * WINDOW_S

    def verify(self, bid, tid, token, now_s):
        """Return None for a valid token; raise BadIdentifier, TokenInvalid or TokenExpired."""
        cdef char msg[_MSG_MAX]
        cdef unsigned char given[32]
        cdef unsigned char digest[32]
        cdef const unsigned char *tp
        cdef Py_ssize_t plen, i
        cdef int k, j
        cdef signed char hi, lo
        cdef long long w
        _check_ids(bid, tid)
        if not isinstance(token, str):
            raise TypeError("token must be str")
        w = _window(now_s)
        if PyUnicode_GET_LENGTH(token) != 64 or not PyUnicode_IS_ASCII(token):
            raise TokenInvalid("token must be 64 lowercase hex characters")
        tp = <const unsigned char *>PyUnicode_DATA(token)
        for i in range(32):
            hi = _HEXVAL[tp[2 * i]]
            lo = _HEXVAL[tp[2 * i + 1]]
            if hi < 0 or lo < 0:
                raise TokenInvalid("token must be 64 lowercase hex characters")
            given[i] = <unsigned char>((hi << 4) | lo)
        plen = self._prefix(bid, tid, msg)
        for k in range(self._nkeys):
            for j in range(2):
                self._mac(k, msg, plen, w - j, digest)
                if CRYPTO_memcmp(digest, given, 32) == 0:
                    return None
        for k in range(self._nkeys):
            self._mac(k, msg, plen, w + 1, digest)
            if CRYPTO_memcmp(digest, given, 32) == 0:
                raise TokenExpired("token window is over; refresh via /init")
            for j in range(self.expired_lookback_windows):
                self._mac(k, msg, plen, w - 2 - j, digest)
                if CRYPTO_memcmp(digest, given, 32) == 0:
                    raise TokenExpired("token window is over; refresh via /init")
        raise TokenInvalid("token does not match")
