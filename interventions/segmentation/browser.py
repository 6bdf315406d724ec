"""What the server sends to the browser's SAM decoder and how it checks what came back.

The browser (static/prompting/sam_decoder.js) runs the exported prompt encoder + mask decoder
(``onnx_export``) on a float16 copy of the image embedding; the server's own prediction stays
the record. ``onnx_decoder_feeds`` is the Python twin of the JS module's input preparation, so a
test can run the very graph the browser runs (onnxruntime) on the very inputs it builds.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import numpy as np

from interventions.segmentation.backend import LOW_RES, Embedding
from interventions.segmentation.cache import EmbeddingCache

MASK_CHOICES = ("first", "best_predicted")  # studies' protocol option mask_choice
# Part of the exported decoder's cache key: bump when the graph's inputs, outputs or meaning
# change (onnx_export.py writes it; the web process finds the file by it, without torch).
DECODER_FORMAT = "decoder-v3"
DECODER_SUFFIX = ".samdec"
DECODER_MAGIC = b"SAMDEC03"
# magic, most points for the few-token graph, bytes of the prepare, click and click_few graphs
_DECODER_HEADER = struct.Struct("<8sIIII")
F16_MAGIC = b"SAMEMB16"
_HEADER = struct.Struct("<8sII")  # magic, header length in bytes (= data offset), ndim


def decoder_onnx_path(
    cache_dir: str | os.PathLike[str], model_type: str, weights_sha256: str
) -> Path:
    """Where ``onnx_export.cached_decoder_onnx`` keeps the exported decoder of these weights:
    ``<cache_dir>/<model_type>-<weights sha256>-decoder-v3.samdec``."""
    if len(weights_sha256) != 64 or not all(ch in "0123456789abcdef" for ch in weights_sha256):
        raise ValueError(f"weights_sha256 must be 64 lowercase hex digits, got {weights_sha256!r}")
    if not model_type or not model_type.replace("_", "").isalnum():
        raise ValueError(f"model_type must be a name such as vit_b, got {model_type!r}")
    return Path(cache_dir) / f"{model_type}-{weights_sha256}-{DECODER_FORMAT}{DECODER_SUFFIX}"


def pack_decoder(prepare: bytes, click: bytes, click_few: bytes, few_max_points: int) -> bytes:
    """The decoder container: ``DECODER_MAGIC``, then as uint32 LE the most points the
    few-token graph is used for and the byte lengths of the three graphs, then the
    ``prepare``, ``click`` and ``click_few`` ONNX files (sam_decoder.js's ``unpackDecoder``)."""
    header = _DECODER_HEADER.pack(
        DECODER_MAGIC, few_max_points, len(prepare), len(click), len(click_few)
    )
    return header + prepare + click + click_few


def unpack_decoder(data: bytes) -> tuple[bytes, bytes, bytes, int]:
    """(prepare, click, click_few, few_max_points) of a decoder container; ValueError naming
    what is wrong with a malformed one."""
    if len(data) < _DECODER_HEADER.size:
        raise ValueError(f"decoder file has {len(data)} bytes, shorter than its header")
    magic, few_max_points, *lengths = _DECODER_HEADER.unpack_from(data)
    if magic != DECODER_MAGIC:
        raise ValueError(f"not a {DECODER_FORMAT} decoder file (magic {magic!r})")
    if len(data) != _DECODER_HEADER.size + sum(lengths):
        raise ValueError(
            f"decoder file has {len(data)} bytes, its header says "
            f"{_DECODER_HEADER.size + sum(lengths)}"
        )
    graphs, start = [], _DECODER_HEADER.size
    for length in lengths:
        graphs.append(data[start : start + length])
        start += length
    return graphs[0], graphs[1], graphs[2], few_max_points


def f16_embedding_path(
    cache_dir: str | os.PathLike[str],
    image_sha256: str,
    model_id: str,
    weights_sha256: str | None,
) -> Path:
    """Where the browser's float16 copy of an image embedding is kept: the embedding cache's
    key (model id / image sha256 - weights sha256) with ``.f16`` under ``cache_dir``."""
    return Path(cache_dir) / (EmbeddingCache.key(image_sha256, model_id, weights_sha256) + ".f16")


def write_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file + ``os.replace`` (readers never see a
    partial file; concurrent writers of the same bytes are harmless)."""
    import tempfile

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=out.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out


def embedding_to_f16_bytes(embedding: Embedding) -> bytes:
    """The embedding's SAM ``features`` as little-endian float16 with a small header, for the
    browser (half the bytes of float32: 2 MiB for SAM's 256 x 64 x 64)::

        0   8 bytes         b"SAMEMB16"
        8   uint32          header length = offset of the data (a multiple of 8)
        12  uint32          ndim
        16  uint32 x ndim   shape (C-order)
        ..  uint32 x 2      original image (H, W)
        ..  uint32 x 2      model-input (h, w) = ResizeLongestSide(1024) of (H, W)
        ..  zero padding up to the header length, then prod(shape) float16 values

    All integers little-endian. Raises ValueError when a value does not fit in float16.
    """
    features = embedding.arrays.get("features")
    if features is None or features.ndim != 4 or features.shape[0] != 1:
        raise ValueError("embedding lacks SAM 'features' of shape (1, C, h, w)")
    with np.errstate(over="ignore"):
        half = np.ascontiguousarray(features, dtype="<f2")
    if not np.all(np.isfinite(half)):
        raise ValueError("embedding features do not fit in float16 (|value| > 65504 or NaN)")
    fields = [*features.shape, *embedding.original_size, *embedding.input_size]
    length = _HEADER.size + 4 * len(fields)
    length += -length % 8
    header = _HEADER.pack(F16_MAGIC, length, features.ndim)
    header += struct.pack(f"<{len(fields)}I", *fields)
    return header.ljust(length, b"\0") + half.tobytes()


def embedding_from_f16_bytes(raw: bytes, model_id: str) -> Embedding:
    """Read ``embedding_to_f16_bytes``'s format back, features widened to float32 (exactly as
    the browser widens them)."""
    if len(raw) < _HEADER.size:
        raise ValueError("too short for a float16 embedding header")
    magic, length, ndim = _HEADER.unpack_from(raw)
    if magic != F16_MAGIC:
        raise ValueError(f"not a float16 embedding (magic {magic!r})")
    if ndim < 1 or length < _HEADER.size + 4 * (ndim + 4) or length % 8:
        raise ValueError(f"bad float16 embedding header (ndim {ndim}, length {length})")
    fields = struct.unpack_from(f"<{ndim + 4}I", raw, _HEADER.size)
    shape = tuple(fields[:ndim])
    count = int(np.prod(shape))
    if len(raw) != length + 2 * count:
        raise ValueError(f"float16 embedding has {len(raw)} bytes, expected {length + 2 * count}")
    features = np.frombuffer(raw, dtype="<f2", count=count, offset=length).reshape(shape)
    return Embedding(
        model_id=model_id,
        original_size=(fields[ndim], fields[ndim + 1]),
        input_size=(fields[ndim + 2], fields[ndim + 3]),
        arrays={"features": features.astype(np.float32)},
    )


def onnx_decoder_feeds(
    embedding: Embedding,
    points_xy: np.ndarray,
    labels: np.ndarray,
    mask_input: np.ndarray | None = None,
    mask_choice: str = "first",
    full_low_res: bool = True,
) -> dict[str, np.ndarray]:
    """The exported decoder's inputs for one prompt, built as the server path builds them:
    ``SamBackend.predict`` rounds (x, y) to float32, ``SamPredictor``'s ``apply_coords`` scales
    them by (w_in / W, h_in / H) in float64, the result is float32; SAM's padding point (0, 0)
    with label -1 goes last. ``full_low_res`` False lets the graph upscale only the image's part
    of the padded frame (the mask is the same; ``low_res_masks`` is then that part)."""
    if mask_choice not in MASK_CHOICES:
        raise ValueError(f"mask_choice must be one of {MASK_CHOICES}, got {mask_choice!r}")
    (h, w), (hi, wi) = embedding.original_size, embedding.input_size
    pts = np.asarray(points_xy, dtype=np.float32).reshape(-1, 2).astype(np.float64)
    coords = np.zeros((len(pts) + 1, 2), np.float64)
    coords[:-1, 0] = pts[:, 0] * (wi / w)
    coords[:-1, 1] = pts[:, 1] * (hi / h)
    labs = np.append(np.asarray(labels, dtype=np.float32).ravel(), np.float32(-1.0))
    if mask_input is None:
        prior = np.zeros((1, 1, LOW_RES, LOW_RES), np.float32)
    else:
        prior = np.asarray(mask_input, dtype=np.float32).reshape(1, 1, LOW_RES, LOW_RES)
    return {
        "image_embeddings": np.ascontiguousarray(embedding.arrays["features"], dtype=np.float32),
        "point_coords": coords.astype(np.float32)[None],
        "point_labels": labs[None],
        "mask_input": prior,
        "has_mask_input": np.array([0.0 if mask_input is None else 1.0], np.float32),
        "orig_im_size": np.array(embedding.original_size, np.float32),
        "best_predicted": np.array([float(mask_choice == "best_predicted")], np.float32),
        "full_low_res": np.array([1.0 if full_low_res else 0.0], np.float32),
    }


def mask_sha256(mask: np.ndarray) -> str:
    """Hex sha256 of a 2-D mask as row-major uint8 0/1 bytes: what sam_decoder.js's
    ``maskSha256`` computes for the mask the browser drew, so the server can tell at once
    whether the displayed mask is bit-identical to its own."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    return hashlib.sha256(np.ascontiguousarray(m != 0, dtype=np.uint8).tobytes()).hexdigest()
