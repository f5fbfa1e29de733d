# cython: language_level=3
"""Compiled Native block encoder: the same bytes and errors as `_native_py` (read its docstring).

Values are written straight from the row objects into one C buffer per column (walking the
rows once, in order), a str as its UTF-8 bytes and an int range-checked in C; the buffers are
then joined into the block.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

from viz._fast._buf cimport Buf, _reserve

from viz._fast._native_py import native_type

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    void *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    const char *PyUnicode_AsUTF8AndSize(object o, Py_ssize_t *size) except NULL
    bint PyLong_Check(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1
    unsigned long long PyLong_AsUnsignedLongLong(object o) except? -1
    PyObject *PySequence_Fast_GET_ITEM(object o, Py_ssize_t i)  # borrowed
    Py_ssize_t PySequence_Fast_GET_SIZE(object o)

__all__ = ["native_block", "native_type"]

cdef enum Kind:
    K_STR, K_U8, K_U16, K_U32, K_U64, K_I64

cdef dict _KINDS = {"s": K_STR, "B": K_U8, "H": K_U16, "I": K_U32, "Q": K_U64, "q": K_I64}


cdef inline int _varint(Buf *b, uint64_t n) except -1:
    _reserve(b, 10)
    while n >= 0x80:
        b.data[b.len] = <char>((n & 0x7F) | 0x80)
        b.len += 1
        n >>= 7
    b.data[b.len] = <char>n
    b.len += 1
    return 0


cdef int _string(Buf *b, object value) except -1:
    cdef const char *p
    cdef Py_ssize_t n
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    if PyUnicode_IS_ASCII(value):
        p = <const char *>PyUnicode_DATA(value)
        n = PyUnicode_GET_LENGTH(value)
    else:
        p = PyUnicode_AsUTF8AndSize(value, &n)  # UnicodeEncodeError on lone surrogates
    _varint(b, <uint64_t>n)
    _reserve(b, n)
    memcpy(b.data + b.len, p, n)
    b.len += n
    return 0


cdef inline int _put(Buf *b, uint64_t v, int width) except -1:
    # little endian, whatever the host's order
    cdef int i
    _reserve(b, width)
    for i in range(width):
        b.data[b.len + i] = <char>((v >> (8 * i)) & 0xFF)
    b.len += width
    return 0


cdef int _int(Buf *b, object value, Kind kind) except -1:
    cdef int overflow = 0
    cdef long long s
    cdef unsigned long long u
    if not PyLong_Check(value):
        raise TypeError(f"expected int, got {type(value).__name__}")
    s = PyLong_AsLongLongAndOverflow(value, &overflow)
    if kind == K_I64:
        if overflow:
            raise OverflowError("int out of Int64 range")
        return _put(b, <uint64_t>s, 8)
    if overflow < 0 or (overflow == 0 and s < 0):
        raise OverflowError("negative value for an unsigned column")
    u = PyLong_AsUnsignedLongLong(value) if overflow else <unsigned long long>s
    if kind == K_U8:
        if u > 0xFF:
            raise OverflowError("int out of UInt8 range")
        return _put(b, u, 1)
    if kind == K_U16:
        if u > 0xFFFF:
            raise OverflowError("int out of UInt16 range")
        return _put(b, u, 2)
    if kind == K_U32:
        if u > 0xFFFFFFFF:
            raise OverflowError("int out of UInt32 range")
        return _put(b, u, 4)
    return _put(b, u, 8)


def native_block(names, types, rows):
    """One Native block holding `rows` (each a list or tuple, one value per column)."""
    cdef Buf head
    cdef Buf *cols = NULL
    cdef Kind *kinds = NULL
    cdef Py_ssize_t j, width, n, total
    cdef bytes out
    cdef char *dst
    if len(names) != len(types):
        raise ValueError("names and types differ in length")
    specs = [native_type(t) for t in types]
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"expected str, got {type(name).__name__}")
    width = len(names)
    row_list = rows if type(rows) is list else list(rows)
    n = len(row_list)
    for row in row_list:
        if type(row) is not list and type(row) is not tuple:
            raise TypeError(f"a row must be a list or tuple, not {type(row).__name__}")
        if PySequence_Fast_GET_SIZE(row) != width:
            raise ValueError(f"a row has {len(row)} values, expected {width}")
    head.data = NULL
    cols = <Buf *>calloc(width + 1, sizeof(Buf))
    kinds = <Kind *>calloc(width + 1, sizeof(Kind))
    if cols == NULL or kinds == NULL:
        free(cols)
        free(kinds)
        raise MemoryError()
    try:
        head.cap = 32
        head.len = 0
        head.data = <char *>malloc(head.cap)
        if head.data == NULL:
            raise MemoryError()
        _varint(&head, <uint64_t>width)
        _varint(&head, <uint64_t>n)
        for j in range(width):
            kinds[j] = <Kind>(<int>_KINDS[specs[j][1]])
            cols[j].cap = 256 + n * (8 if kinds[j] != K_STR else 16)  # grows when needed
            cols[j].data = <char *>malloc(cols[j].cap)
            if cols[j].data == NULL:
                raise MemoryError()
            _string(&cols[j], names[j])
            _string(&cols[j], specs[j][0])
        # Row by row, into one buffer per column: a batch's rows are scattered over the heap,
        # so walking each column down all the rows would miss the cache for every value.
        for row in row_list:
            for j in range(width):
                value = <object>PySequence_Fast_GET_ITEM(row, j)
                if kinds[j] == K_STR:
                    _string(&cols[j], value)
                else:
                    _int(&cols[j], value, kinds[j])
        total = head.len
        for j in range(width):
            total += cols[j].len
        out = PyBytes_FromStringAndSize(NULL, total)
        dst = PyBytes_AS_STRING(out)
        memcpy(dst, head.data, head.len)
        dst += head.len
        for j in range(width):
            memcpy(dst, cols[j].data, cols[j].len)
            dst += cols[j].len
        return out
    finally:
        for j in range(width):
            free(cols[j].data)
        free(cols)
        free(kinds)
        free(head.data)
