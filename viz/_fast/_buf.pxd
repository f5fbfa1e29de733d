# A growable byte buffer for the compiled modules that write bytes (envelope, native): a
# declaration file only, inlined where it is cimported, so it needs no extension of its own.

from libc.stdlib cimport realloc


cdef struct Buf:
    char *data
    Py_ssize_t len
    Py_ssize_t cap


cdef inline int _reserve(Buf *b, Py_ssize_t extra) except -1:
    """Make room for ``extra`` more bytes (capacity doubles; ``cap`` starts > 0)."""
    cdef Py_ssize_t cap = b.cap
    cdef char *grown
    if b.len + extra <= cap:
        return 0
    while cap < b.len + extra:
        cap *= 2
    grown = <char *>realloc(b.data, cap)
    if grown == NULL:
        raise MemoryError()
    b.data = grown
    b.cap = cap
    return 0
