"""Writing `.npy` files into a stream, object arrays included, one element at a time.

PointPrompt's object arrays are written by numpy as a pickle of the array; here the same pickle
(numpy's `_reconstruct` + `__setstate__`, the list of elements built with APPENDS) is produced
from an iterator, with the pickler's memo off, so an array of N images never sits in memory and
`np.load(..., allow_pickle=True)` (and our safe loader) read it as an ordinary object array.
"""

from __future__ import annotations

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


class _CountedItems:
    def __init__(self, length: int, items: Iterable):
        self.length = length
        self.items = iter(items)
        self.seen = 0

    def __iter__(self):
        for item in self.items:
            self.seen += 1
            if self.seen > self.length:
                raise ValueError(f"object array: more than the {self.length} elements announced")
            yield item
        if self.seen != self.length:
            raise ValueError(f"object array: {self.seen} elements given, {self.length} announced")


class _LazyList:
    def __init__(self, items: _CountedItems):
        self.items = items

    def __reduce__(self):
        return (list, (), None, iter(self.items))


class _StreamedObjectArray:
    def __init__(self, length: int, items: _CountedItems):
        self.length = length
        self.items = items

    def __reduce__(self):
        state = (1, (self.length,), np.dtype(object), False, _LazyList(self.items))
        return (_RECONSTRUCT, (np.ndarray, (0,), b"b"), state)


def write_object_npy(out: IO[bytes], length: int, items: Iterable) -> None:
    """A 1-D object `.npy` (as `a = np.empty(length, object); a[i] = ...; np.save`) from an iterator."""
    npy_format.write_array_header_1_0(
        out, {"descr": "|O", "fortran_order": False, "shape": (length,)}
    )
    pickler = pickle.Pickler(out, protocol=PICKLE_PROTOCOL)
    pickler.fast = True  # no memo: elements are freed as soon as they are written
    pickler.dump(_StreamedObjectArray(length, _CountedItems(length, items)))
