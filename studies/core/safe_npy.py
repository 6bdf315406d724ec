"""Reading `.npy` files, object arrays included, without unpickling arbitrary classes.

PointPrompt stores object arrays (np.empty(N, object) filled with ndarrays); numpy writes those
with pickle. `np.load(allow_pickle=True)` would run any callable a crafted file names, so we
parse the header ourselves and unpickle with an allow-list: numpy's array reconstruction,
ndarray, dtype and plain Python containers and scalars. Anything else is refused.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format


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
                handle.seek(0)
                return np.load(handle, allow_pickle=False)
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
    return array
