"""SAM's prompt encoder + mask decoder as one ONNX graph for the browser, and the float16
embedding the server sends with it (Kirillov et al., 2023, run "in a web browser in ~50 ms").

The graph follows segment-anything's ``SamOnnxModel`` (its point / mask embedding and mask
post-processing, written for tracing) but answers exactly what our ``sam`` backend answers for a
timestep: the three multimask outputs of ``SamPredictor.predict(multimask_output=True)``, of
which it keeps the one the study's ``mask_choice`` names (``first`` = index 0 as PointPrompt,
``best_predicted`` = ``argmax`` of the predicted IoU, first maximum on ties, as ``np.argmax``).
Only the chosen mask is upscaled to the image (one bilinear upsampling instead of three).

Inputs (batch 1; ``N`` points is dynamic)::

    image_embeddings  float32 (1, 256, 64, 64)   the image encoder's features
    point_coords      float32 (1, N, 2)          (x, y) in the 1024 frame: ResizeLongestSide's
                                                  apply_coords, i.e. x * w_in / W, y * h_in / H,
                                                  plus SAM's padding point (0, 0) at the end
    point_labels      float32 (1, N)             1 green, 0 red, -1 the padding point
    mask_input        float32 (1, 1, 256, 256)   previous low-res logits, or zeros
    has_mask_input    float32 (1,)               1 when mask_input is used, else 0
    orig_im_size      float32 (2,)               (H, W) of the original image
    best_predicted    float32 (1,)               1: mask_choice best_predicted, 0: first

Outputs::

    masks             float32 (1, 1, H, W)       logits of the chosen mask (> 0 is the mask)
    iou_predictions   float32 (1, 3)             predicted IoU of the three multimask outputs
    low_res_masks     float32 (1, 1, 256, 256)   the chosen low-res logits (next mask_input)
    mask_index        int64   (1,)               which of the three was chosen
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

from interventions.segmentation.browser import DECODER_FORMAT, decoder_onnx_path

ONNX_OPSET = 17  # onnxruntime-web's wasm backend runs every op of this graph at opset 17
__all__ = ["DECODER_FORMAT", "cached_decoder_onnx", "export_decoder_onnx", "state_dict_sha256"]
INPUT_NAMES = [
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
    "best_predicted",
]
OUTPUT_NAMES = ["masks", "iou_predictions", "low_res_masks", "mask_index"]


class _PromptParts(nn.Module):
    """CPU copies of a Sam's prompt encoder and mask decoder with the attributes SamOnnxModel
    reads, so an export neither copies the image encoder nor moves the caller's model."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = copy.deepcopy(sam.prompt_encoder).to("cpu").eval()
        self.mask_decoder = copy.deepcopy(sam.mask_decoder).to("cpu").eval()
        self.image_encoder = SimpleNamespace(img_size=sam.image_encoder.img_size)
        self.mask_threshold = sam.mask_threshold


class PromptDecoderOnnx(nn.Module):
    """Prompt encoder + mask decoder + upscaling of the mask ``mask_choice`` picks, traceable."""

    def __init__(self, sam: nn.Module) -> None:
        from segment_anything.utils.onnx import SamOnnxModel

        super().__init__()
        # SamOnnxModel's point / mask embedding and post-processing are the tracing-friendly
        # versions of PromptEncoder's; we reuse them and replace only the mask selection.
        self.reference = SamOnnxModel(sam, return_single_mask=False)
        self.sam = sam

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
        best_predicted: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        ref = self.reference
        sparse = ref._embed_points(point_coords, point_labels)
        dense = ref._embed_masks(mask_input, has_mask_input)
        low_res, scores = self.sam.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        low_res, scores = low_res[:, 1:], scores[:, 1:]  # MaskDecoder's multimask slice
        best = torch.argmax(scores, dim=1)
        index = best * (best_predicted > 0.5).to(torch.int64)
        chosen = torch.index_select(low_res, 1, index)
        masks = self.postprocess(chosen, orig_im_size)
        return masks, scores, chosen, index

    def postprocess(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """``Sam.postprocess_masks``: bilinear to 1024 x 1024, crop the padding, bilinear to the
        original size. SamOnnxModel's version crops with Python ints, which the tracer freezes
        to the example's size; here the crop stays a tensor, so every image size works."""
        img = self.reference.img_size
        masks = F.interpolate(masks, size=(img, img), mode="bilinear", align_corners=False)
        prepadded = self.reference.resize_longest_image_size(orig_im_size, img)
        masks = masks[..., : prepadded[0], : prepadded[1]]
        size = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)


def example_inputs(sam: nn.Module, n_points: int = 3) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shapes (for tracing and for tests)."""
    pe = sam.prompt_encoder
    c = pe.embed_dim
    h, w = pe.image_embedding_size
    mh, mw = pe.mask_input_size
    return (
        torch.randn(1, c, h, w),
        torch.randint(0, 1024, (1, n_points, 2), dtype=torch.float32),
        torch.randint(-1, 2, (1, n_points), dtype=torch.float32),
        torch.randn(1, 1, mh, mw),
        torch.tensor([1.0]),
        torch.tensor([480.0, 640.0]),
        torch.tensor([1.0]),
    )


def export_decoder_onnx(sam_model: nn.Module, out_path: str | os.PathLike[str]) -> Path:
    """Write ``PromptDecoderOnnx(sam_model)`` to ``out_path`` as one ONNX file (opset 17,
    dynamic number of points, weights embedded), checked with ``onnx.checker``. Traced on CPU
    copies of the prompt encoder and mask decoder; ``sam_model`` itself is left as it was.

    Uses torch's TorchScript-based exporter (``dynamo=False``), the one SamOnnxModel was
    written for; it is deprecated in favour of torch.export but present in the pinned torch."""
    import onnx

    out = Path(out_path)
    model = PromptDecoderOnnx(_PromptParts(sam_model)).eval()
    with warnings.catch_warnings():
        # the exporter's deprecation notice, and a TracerWarning on Attention's constant
        # math.sqrt(head width); the tests run the graph at other sizes and point counts
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example_inputs(sam_model),
            str(out),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(str(out))
    return out


def state_dict_sha256(sam_model: nn.Module) -> str:
    """sha256 over the model's parameters and buffers (names, dtypes, shapes, bytes), for a
    model that has no checkpoint file (e.g. randomly initialised)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(sam_model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update((t.float() if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return digest.hexdigest()


def cached_decoder_onnx(
    sam_model: nn.Module,
    cache_dir: str | os.PathLike[str],
    model_type: str,
    weights_sha256: str,
) -> Path:
    """The exported decoder of these weights from ``cache_dir``, exporting it once.

    Keyed by model type + weights sha256 + ``DECODER_FORMAT``
    (``<cache_dir>/<model_type>-<sha256>-decoder-v1.onnx``); written to a temporary file and
    renamed, so concurrent exporters and readers never see a partial file.
    """
    path = decoder_onnx_path(cache_dir, model_type, weights_sha256)
    root = path.parent
    if path.is_file() and path.stat().st_size > 0:
        return path
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-", suffix=".onnx")
    os.close(fd)
    try:
        export_decoder_onnx(sam_model, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from a web server of another user
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
