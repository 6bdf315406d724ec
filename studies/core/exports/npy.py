"""Writing `.npy` files into a stream, object arrays included, one element at a time.

PointPrompt's object arrays are written by numpy as a pickle of the array; here the same pickle
(numpy's `_reconstruct` + `__setstate__`, the list of elements built with APPENDS) is produced
from an iterator, with the pickler's memo off, one element at a time, so an array of N images
never sits in memory (neither as arrays nor as pickled bytes) and `np.load(...,
allow_pickle=True)` (and our safe loader) read it as an ordinary object array.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

_RECONSTRUCT = np.empty(0, dtype=object).__reduce__()[0]  # numpy's own array reconstructor
PICKLE_PROTOCOL = 3  # as np.save


def write_npy(out: IO[bytes], array: np.ndarray) -> None:
    """np.save into a stream (object arrays are pickled, as np.save does)."""
    np.save(out, array, allow_pickle=array.dtype.hasobject)


class _StreamedObjectArray:
    """Pickles as a 1-D object array of `length` elements (numpy's own reduce), the elements
    being `items`; used only to let the pickler write the opcodes around the elements."""

    def __init__(self, length: int, items):
        self.length = length
        self.items = items

    def __reduce__(self):
        state = (1, (self.length,), np.dtype(object), False, _LazyList(self.items))
        return (_RECONSTRUCT, (np.ndarray, (0,), b"b"), state)


class _LazyList:
    def __init__(self, items):
        self.items = items

    def __reduce__(self):
        return (list, (), None, iter(self.items))


_MARKER = b"\x00intervene object array element\x00"
_MARK, _APPEND, _APPENDS = pickle.MARK, pickle.APPEND, pickle.APPENDS
_BATCH = 1000  # the pickler's batch of list items (MARK ... APPENDS), as CPython writes it


def _element(item) -> bytes:
    """One element's pickle opcodes as they appear inside the array's pickle (memo off)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=PICKLE_PROTOCOL)
    pickler.fast = True
    pickler.dump(item)
    body = buffer.getbuffer()
    return bytes(body[2:-1])  # without PROTO 3 and STOP


def _frame(length: int) -> tuple[bytes, bytes]:
    """The pickle of a `length`-element object array split around its elements: what the
    pickler writes before the first element and after the last (protocol 3, memo off)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=PICKLE_PROTOCOL)
    pickler.fast = True
    pickler.dump(_StreamedObjectArray(length, [_MARKER]))
    head, found, tail = buffer.getvalue().partition(_element(_MARKER) + _APPEND)
    if not found:
        raise RuntimeError("unexpected pickle layout for an object array")
    return head, tail


def write_object_npy(out: IO[bytes], length: int, items: Iterable) -> None:
    """A 1-D object `.npy` (as `a = np.empty(length, object); a[i] = ...; np.save`) from an iterator.

    The bytes are those of one pickler dumping the whole array with its memo off (what this
    function wrote before it streamed), but each element is pickled on its own and written at
    once: CPython's pickler keeps everything under 64 KiB in its output buffer until the dump
    ends, so one pickler over thousands of small images held them all. Elements are written
    in the pickler's batches (MARK, up to 1,000 elements, APPENDS; a last batch of one element
    is the element and APPEND)."""
    npy_format.write_array_header_1_0(
        out, {"descr": "|O", "fortran_order": False, "shape": (length,)}
    )
    head, tail = _frame(length)
    out.write(head)
    seen = 0
    batch: list[bytes] = []  # at most one pending element: the one that may end a batch alone
    in_batch = 0
    for item in items:
        seen += 1
        if seen > length:
            raise ValueError(f"object array: more than the {length} elements announced")
        if in_batch == 0:
            batch.append(_element(item))  # held until we know whether a second one follows
            in_batch = 1
            continue
        if batch:
            out.write(_MARK)
            out.write(batch.pop())
        out.write(_element(item))
        in_batch += 1
        if in_batch == _BATCH:
            out.write(_APPENDS)
            in_batch = 0
    if seen != length:
        raise ValueError(f"object array: {seen} elements given, {length} announced")
    if batch:
        out.write(batch.pop())
        out.write(_APPEND)
    elif in_batch:
        out.write(_APPENDS)
    out.write(tail)
