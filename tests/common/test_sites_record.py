"""The site record travels from viz-config to the services intact, keys included."""

from __future__ import annotations

from viz.common.sites import SiteRecord, is_valid_sid, is_valid_tid


def _record(**overrides: object) -> SiteRecord:
    fields: dict[str, object] = dict(
        sid="news-site", tid="acme", name="News", domains=("news.example",),
        features={"collect": True, "cmp": True, "recs": False}, cmp_config={"title": "Hi"},
        recs_config={}, version=3, secret_key=b"\x01" * 32,
    )
    fields.update(overrides)
    return SiteRecord(**fields)  # type: ignore[arg-type]


def test_wire_round_trip_keeps_every_field() -> None:
    record = _record(previous_key=b"\x02" * 32, previous_key_expires_at=1_700_000_900.0)
    assert SiteRecord.from_wire(record.to_wire()) == record


def test_previous_key_verifies_only_until_it_expires() -> None:
    record = _record(previous_key=b"\x02" * 32, previous_key_expires_at=1000.0)
    assert record.verification_keys(999.0) == (b"\x01" * 32, b"\x02" * 32)
    assert record.verification_keys(1000.0) == (b"\x01" * 32,)


def test_secret_key_is_not_in_the_repr() -> None:
    assert "\\x01" not in repr(_record())


def test_origin_matches_site_domains_and_their_subdomains_only() -> None:
    record = _record(domains=("example.com",))
    assert record.allows_origin_host("example.com")
    assert record.allows_origin_host("WWW.Example.com")
    assert not record.allows_origin_host("evil-example.com")
    assert not record.allows_origin_host("example.com.evil.net")


def test_identifier_rules() -> None:
    assert is_valid_sid("abc") and is_valid_sid("a" * 64) and is_valid_sid("my_site-2")
    assert not is_valid_sid("ab") and not is_valid_sid("a" * 65) and not is_valid_sid("a/b")
    assert is_valid_tid("t") and not is_valid_tid("a:b") and not is_valid_tid("")
    # `$` alone would accept a trailing newline.
    assert not is_valid_sid("abc\n") and not is_valid_tid("t\n")
