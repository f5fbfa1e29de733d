"""Golden vectors in tests/fixtures (shared with the tracker's JS tests) against both twins."""

from __future__ import annotations

import pytest
from _impls import KINDS, envelope_fields, event_fields, fixture, load, vector_body

from viz._fast import errors

TOKENS = fixture("token_vectors.json")
PAYLOADS = fixture("payload_vectors.json")
ENVELOPES = fixture("envelope_vectors.json")


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.mark.parametrize("case", TOKENS["issue"], ids=lambda c: c["tid"][:12])
def test_issue_matches_token_vectors(kind, case):
    signer = load("token", kind).TokenSigner([bytes.fromhex(case["key_hex"])])
    assert signer.issue(case["bid"], case["tid"], case["ts"]) == case["token"]


@pytest.mark.parametrize("case", TOKENS["verify"], ids=lambda c: c["name"])
def test_verify_matches_token_vectors(kind, case):
    signer = load("token", kind).TokenSigner([bytes.fromhex(k) for k in case["keys_hex"]])
    args = (case["bid"], case["tid"], case["token"], case["now_s"])
    if case["expect"] == "ok":
        signer.verify(*args)
    else:
        with pytest.raises(getattr(errors, case["expect"])) as info:
            signer.verify(*args)
        assert type(info.value).__name__ == case["expect"]


@pytest.mark.parametrize("case", PAYLOADS["cases"], ids=lambda c: c["name"])
def test_parse_matches_payload_vectors(kind, case):
    parse = load("payload", kind).parse_payload
    body = vector_body(case)
    if "expect" in case:
        got = parse(body, PAYLOADS["now_ms"])
        want = case["expect"]
        assert (got.sid, got.bid, got.token) == (want["sid"], want["bid"], want["token"])
        assert [event_fields(e) for e in got.events] == want["events"]
    else:
        with pytest.raises(errors.PayloadError) as info:
            parse(body, PAYLOADS["now_ms"])
        assert type(info.value).__name__ == case["error"]
        assert info.value.path == case["path"]


@pytest.mark.parametrize("case", ENVELOPES["encode"], ids=lambda c: c["name"])
def test_encode_matches_envelope_vectors(kind, case):
    event = load("payload", kind).Event(**case["event"])
    raw = load("envelope", kind).encode_envelope(event, **case["context"])
    assert raw == case["envelope"].encode("utf-8")


@pytest.mark.parametrize("case", ENVELOPES["decode"], ids=lambda c: c["name"])
def test_decode_matches_envelope_vectors(kind, case):
    decode = load("envelope", kind).decode_envelope
    raw = case["raw"].encode("utf-8")
    if "expect" in case:
        assert envelope_fields(decode(raw)) == case["expect"]
    else:
        with pytest.raises(errors.EnvelopeError) as info:
            decode(raw)
        assert type(info.value).__name__ == case["error"]
