"""Reading `.npy` files, object arrays included, without unpickling arbitrary classes.

PointPrompt stores object arrays (np.empty(N, object) filled with ndarrays); numpy writes those
with pickle. `np.load(allow_pickle=True)` would run any callable a crafted file names, so we
parse the header ourselves and unpickle with an allow-list: numpy's array reconstruction,
ndarray, dtype and plain Python containers and scalars. Anything else is refused.

Memory stays bounded by the file: a plain array's header must not claim more bytes than the
file holds, an object array may hold only numeric ndarrays (never lists, which pickle can share
to build a billion-element structure from a few hundred bytes), and only numeric dtypes are read
(bool, integers, floats; complex, structured, datetime and text are refused, not cast).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

NUMERIC_KINDS = "biuf"
MAX_OBJECT_ITEMS = 1_000_000


class UnsafeNpyError(ValueError):
    """A `.npy` file is corrupt or tries to unpickle something outside the allow-list."""


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "dict"),
    ("builtins", "int"),
    ("builtins", "float"),
    ("builtins", "complex"),
    ("builtins", "bool"),
    ("builtins", "str"),
    ("builtins", "bytes"),
    ("builtins", "slice"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafeNpyError(
            f"refusing to unpickle {module}.{name}: only numpy arrays and plain values are allowed"
        )


def load_npy(path: str | Path) -> np.ndarray:
    """Load a `.npy` file; object arrays are unpickled with the allow-list above."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            version = npy_format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(handle)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npy_format.read_array_header_2_0(handle)
            else:
                raise UnsafeNpyError(
                    f"{path.name}: not a valid .npy file (unsupported version {version})"
                )
            if not dtype.hasobject:
                _check_dtype(dtype, path.name)
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                here = handle.tell()
                available = path.stat().st_size - here
                if claimed > available:
                    raise UnsafeNpyError(
                        f"{path.name}: the header claims shape {shape} ({claimed} bytes) "
                        f"but the file holds {available} bytes of data"
                    )
                handle.seek(0)
                return np.load(handle, allow_pickle=False)
            if dtype != np.dtype(object):
                raise UnsafeNpyError(f"{path.name}: structured dtype {dtype} is not supported")
            if int(np.prod(shape, dtype=object)) > MAX_OBJECT_ITEMS:
                raise UnsafeNpyError(f"{path.name}: the header claims {shape} items")
            payload = handle.read()
    except UnsafeNpyError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise UnsafeNpyError(f"{path.name}: not a valid .npy file ({exc})") from exc
    try:
        array = _RestrictedUnpickler(io.BytesIO(payload)).load()
    except UnsafeNpyError as exc:
        raise UnsafeNpyError(f"{path.name}: {exc}") from None
    except Exception as exc:  # truncated or garbled pickle
        raise UnsafeNpyError(
            f"{path.name}: corrupt object array ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(array, np.ndarray):
        raise UnsafeNpyError(
            f"{path.name}: the pickle holds a {type(array).__name__}, not an array"
        )
    if array.shape != tuple(shape):
        raise UnsafeNpyError(f"{path.name}: header says shape {shape}, payload has {array.shape}")
    if array.dtype.hasobject:
        for index, item in enumerate(array.flat):
            if not isinstance(item, np.ndarray):
                raise UnsafeNpyError(
                    f"{path.name}: item {index} is a {type(item).__name__}, not a numeric array"
                )
            _check_dtype(item.dtype, f"{path.name} item {index}")
    return array


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsafeNpyError(
            f"{where}: dtype {dtype} is not a plain number (bool, integer or float)"
        )
