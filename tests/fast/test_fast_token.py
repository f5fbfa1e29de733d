"""Behaviour of TokenSigner, run against both twins."""

from __future__ import annotations

import hashlib
import hmac
import math

import pytest
from _impls import KINDS, load

from viz._fast.errors import BadIdentifier, TokenError, TokenExpired, TokenInvalid
from viz.common.errors import VizError

KEY = bytes(range(32))
OLD_KEY = bytes(range(100, 132))
BID = "AbCdEfGhIjKlMnOpQrSt_-"
TID = "tenant-7"
NOW = 1_700_000_123.25  # inside window 5_666_667


@pytest.fixture(params=KINDS)
def tokens(request):
    return load("token", request.param)


def reference(key: bytes, bid: str, tid: str, now_s: float) -> str:
    msg = f"{bid}:{tid}:{math.floor(now_s / 300)}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def test_issues_hmac_sha256_of_bid_tid_window(tokens):
    token = tokens.TokenSigner([KEY]).issue(BID, TID, NOW)
    assert token == reference(KEY, BID, TID, NOW)
    assert len(token) == 64 and token == token.lower()


def test_long_keys_are_hashed_like_rfc2104(tokens):
    key = b"k" * 100
    assert tokens.TokenSigner([key]).issue(BID, TID, NOW) == reference(key, BID, TID, NOW)


def test_accepts_token_from_current_and_previous_window(tokens):
    signer = tokens.TokenSigner([KEY])
    token = signer.issue(BID, TID, NOW)
    signer.verify(BID, TID, token, NOW)
    signer.verify(BID, TID, token, NOW + 300)
    boundary = (math.floor(NOW / 300) + 2) * 300
    assert signer.expires_at_s(NOW) == boundary
    signer.verify(BID, TID, token, boundary - 0.001)


def test_rejects_token_from_expired_window(tokens):
    signer = tokens.TokenSigner([KEY])
    token = signer.issue(BID, TID, NOW)
    with pytest.raises(TokenExpired):
        signer.verify(BID, TID, token, signer.expires_at_s(NOW))


def test_token_from_next_window_asks_for_refresh(tokens):
    signer = tokens.TokenSigner([KEY])
    with pytest.raises(TokenExpired):
        signer.verify(BID, TID, signer.issue(BID, TID, NOW + 300), NOW)


def test_token_beyond_lookback_is_invalid_not_expired(tokens):
    signer = tokens.TokenSigner([KEY], expired_lookback_windows=3)
    token = signer.issue(BID, TID, NOW)
    with pytest.raises(TokenExpired):
        signer.verify(BID, TID, token, NOW + 300 * 4)
    with pytest.raises(TokenInvalid):
        signer.verify(BID, TID, token, NOW + 300 * 5)


def test_previous_key_stays_valid_after_rotation(tokens):
    old = tokens.TokenSigner([OLD_KEY]).issue(BID, TID, NOW)
    rotated = tokens.TokenSigner([KEY, OLD_KEY])
    rotated.verify(BID, TID, old, NOW)
    assert rotated.issue(BID, TID, NOW) == reference(KEY, BID, TID, NOW)
    with pytest.raises(TokenInvalid):
        tokens.TokenSigner([KEY]).verify(BID, TID, old, NOW)


@pytest.mark.parametrize(
    "bid,tid",
    [
        ("short", TID),
        (BID + "A", TID),
        ("AbCdEfGhIjKlMnOpQrSt:-", TID),
        ("AbCdEfGhIjKlMnOpQrStü-", TID),
        (BID, ""),
        (BID, "a:b"),
        (BID, "t" * 65),
        (BID, "tenant 7"),
    ],
)
def test_rejects_bad_identifiers_before_any_hmac(tokens, bid, tid):
    signer = tokens.TokenSigner([KEY])
    with pytest.raises(BadIdentifier):
        signer.verify(bid, tid, "0" * 64, NOW)
    with pytest.raises(BadIdentifier):
        signer.issue(bid, tid, NOW)


def test_bound_fields_cannot_be_swapped(tokens):
    signer = tokens.TokenSigner([KEY])
    token = signer.issue(BID, TID, NOW)
    with pytest.raises(TokenInvalid):
        signer.verify(BID, "tenant-8", token, NOW)
    with pytest.raises(TokenInvalid):
        signer.verify("B" + BID[1:], TID, token, NOW)


@pytest.mark.parametrize("token", ["", "0" * 63, "0" * 65, "A" * 64, "g" * 64, "é" * 64])
def test_rejects_malformed_token(tokens, token):
    with pytest.raises(TokenInvalid):
        tokens.TokenSigner([KEY]).verify(BID, TID, token, NOW)


def test_uppercase_hex_of_a_valid_token_is_rejected(tokens):
    signer = tokens.TokenSigner([KEY])
    with pytest.raises(TokenInvalid):
        signer.verify(BID, TID, signer.issue(BID, TID, NOW).upper(), NOW)


def test_errors_share_one_base_that_is_a_value_error():
    for cls in (BadIdentifier, TokenExpired, TokenInvalid):
        assert issubclass(cls, TokenError)
    assert issubclass(TokenError, VizError) and issubclass(TokenError, ValueError)


@pytest.mark.parametrize("keys", [[], [b""], [KEY] * 9])
def test_rejects_unusable_key_sets(tokens, keys):
    with pytest.raises(ValueError):
        tokens.TokenSigner(keys)


def test_rejects_non_bytes_keys_and_non_str_input(tokens):
    with pytest.raises(TypeError):
        tokens.TokenSigner(["secret"])
    signer = tokens.TokenSigner([KEY])
    with pytest.raises(TypeError):
        signer.verify(BID.encode(), TID, "0" * 64, NOW)
    with pytest.raises(TypeError):
        signer.verify(BID, TID, None, NOW)


@pytest.mark.parametrize("now", [float("nan"), float("inf"), -1.0, 1e13])
def test_rejects_absurd_clock(tokens, now):
    with pytest.raises(ValueError) as info:
        tokens.TokenSigner([KEY]).issue(BID, TID, now)
    assert not isinstance(info.value, TokenError)
