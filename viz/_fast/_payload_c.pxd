# C-level view of the result classes, so `_envelope_c` reads their fields without lookups.

cdef class Event:
    cdef readonly str id
    cdef readonly str t
    cdef readonly str p
    cdef readonly object r
    cdef readonly long long ts
    cdef readonly object ms
    cdef readonly object h
    cdef readonly object n
    cdef readonly object title


cdef class Payload:
    cdef readonly str sid
    cdef readonly str bid
    cdef readonly str token
    cdef readonly list events


cdef bint _deeper_than(object obj, int limit) except -1
