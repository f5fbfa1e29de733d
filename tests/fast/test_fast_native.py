"""Behaviour of the Native block encoder (`native_block`), run against both twins."""

from __future__ import annotations

import pytest
from _impls import KINDS, load

DT = "DateTime64(3, 'UTC')"


@pytest.fixture(params=KINDS)
def native(request):
    return load("native", request.param)


def test_encodes_one_block_column_by_column(native):
    block = native.native_block(["s", "n"], ["String", "UInt16"], [["é", 258], ("", 1)])
    assert block == (b"\x02\x02"                                   # 2 columns, 2 rows
                     b"\x01s\x06String" b"\x02\xc3\xa9" b"\x00"    # "é", ""
                     b"\x01n\x06UInt16" b"\x02\x01" b"\x01\x00")   # 258, 1 little endian


def test_low_cardinality_goes_as_string_and_datetime64_as_int64_ticks(native):
    block = native.native_block(["lc", "ts"], ["LowCardinality(String)", DT], [["a", -1]])
    assert block == (b"\x02\x01" b"\x02lc\x06String\x01a"
                     b"\x02ts" + bytes([len(DT)]) + DT.encode() + b"\xff" * 8)


def test_long_strings_get_multi_byte_lengths(native):
    block = native.native_block(["s"], ["String"], [["x" * 300]])
    assert block == b"\x01\x01\x01s\x06String" + b"\xac\x02" + b"x" * 300


def test_integer_widths_and_bounds(native):
    types = ["UInt8", "UInt16", "UInt32", "UInt64", "Int64"]
    top = [2**8 - 1, 2**16 - 1, 2**32 - 1, 2**64 - 1, 2**63 - 1]
    block = native.native_block(list("abcde"), types, [top, [True, 0, 0, 0, -(2**63)]])
    assert block.endswith(b"\xff" * 7 + b"\x7f" + b"\x00" * 7 + b"\x80")
    widths = [1, 2, 4, 8, 8]
    assert len(block) == 2 + sum(3 + len(t) + 2 * w for t, w in zip(types, widths, strict=True))
    for t, high in zip(types, top, strict=True):
        with pytest.raises(OverflowError):
            native.native_block(["x"], [t], [[high + 1]])
        if t != "Int64":
            with pytest.raises(OverflowError):
                native.native_block(["x"], [t], [[-1]])
        assert native.native_block(["x"], [t], [[high]]) == native.native_block(
            ["x"], [t], [(high,)])
    with pytest.raises(OverflowError):
        native.native_block(["x"], ["Int64"], [[-(2**63) - 1]])


def test_no_rows_is_a_header_only_block(native):
    assert native.native_block(["a"], ["UInt8"], []) == b"\x01\x00\x01a\x05UInt8"


@pytest.mark.parametrize(("types", "rows", "error"), [
    (["Float64"], [[1.0]], ValueError),
    (["Nullable(String)"], [[None]], ValueError),
    (["DateTime64(6)"], [[1]], ValueError),
    (["String"], [[1]], TypeError),
    (["String"], [[None]], TypeError),
    (["String"], [["\ud800"]], UnicodeEncodeError),
    (["UInt8"], [["1"]], TypeError),
    (["UInt8"], [[1.0]], TypeError),
    (["UInt8"], [[1, 2]], ValueError),
    (["UInt8"], [{1}], TypeError),
    (["UInt8"], ["1"], TypeError),
])
def test_rejects_what_it_cannot_encode(native, types, rows, error):
    with pytest.raises(error):
        native.native_block(["x"], types, rows)


def test_the_first_bad_value_in_row_order_decides_the_error(native):
    rows = [["ok", 1], ["ok", 256], [7, 1]]  # row 1 overflows before row 2's str is wrong
    with pytest.raises(OverflowError):
        native.native_block(["s", "n"], ["String", "UInt8"], rows)
    with pytest.raises(ValueError):
        native.native_block(["s"], ["String", "UInt8"], [])
    with pytest.raises(TypeError):
        native.native_block([1], ["String"], [])
