"""SAM's prompt encoder + mask decoder as ONNX for the browser, and the container it travels in
(Kirillov et al., 2023, run "in a web browser in ~50 ms").

The decoder answers exactly what our ``sam`` backend answers for a timestep: the three multimask
outputs of ``SamPredictor.predict(multimask_output=True)``, of which it keeps the one the
study's ``mask_choice`` names (``first`` = index 0 as PointPrompt, ``best_predicted`` =
``argmax`` of the predicted IoU, first maximum on ties, as ``np.argmax``). It is exported as two
graphs, so that a click pays only for what depends on the click:

``prepare`` (once per image, or per click when the study chains the previous mask)::

    image_embeddings  float32 (1, 256, 64, 64)   the image encoder's features
    mask_input        float32 (1, 1, 256, 256)   previous low-res logits, or zeros
    has_mask_input    float32 (1,)               1 when mask_input is used, else 0
 -> keys              float32 (4096, 256)        image tokens (features + dense prompt), channel last
    k_t, v_t          float32 (heads, d, 4096)   the first block's token->image keys and values
    q_t               float32 (heads, d, 4096)   the first block's image->token queries

``click`` (once per click; ``N`` points is dynamic)::

    keys, k_t, v_t, q_t                          from ``prepare``
    point_coords      float32 (1, N, 2)          (x, y) in the 1024 frame: ResizeLongestSide's
                                                  apply_coords, i.e. x * w_in / W, y * h_in / H,
                                                  plus SAM's padding point (0, 0) at the end
    point_labels      float32 (1, N)             1 green, 0 red, -1 the padding point
    orig_im_size      float32 (2,)               (H, W) of the original image
    best_predicted    float32 (1,)               1: mask_choice best_predicted, 0: first
    full_low_res      float32 (1,)               1: upscale SAM's whole padded frame (the
                                                  low-res logits are chained); 0: only the
                                                  image's part (same mask, less work)
 -> masks             float32 (1, 1, H, W)       logits of the chosen mask (> 0 is the mask)
    iou_predictions   float32 (1, 3)             predicted IoU of the three multimask outputs
    low_res_masks     float32 (1, 1, 256, 256)   the chosen low-res logits (next mask_input);
                                                  with full_low_res 0 their top-left part
    mask_index        int64   (1,)               which of the three was chosen

The click graph is SAM's MaskDecoder rewritten for a CPU without changing its arithmetic beyond
float32 reassociation: image tokens stay channel last (no head transposes of the 4096 image
tokens: per-head keys are computed transposed, as one GEMM), the two 2x2 stride-2 transposed
convolutions of the output upscaling are matrix products on channel-last pixels (their
LayerNorm2d is a LayerNorm per pixel), and only the chosen mask is formed and upscaled
(``click_few``, the same for up to 10 points, folds the image projections into the tokens).

The container (``DECODER_FORMAT``): ``b"SAMDEC03"``, then as little-endian uint32 the most
points ``click_few`` is for and the byte lengths of the three graphs, then the ``prepare``,
``click`` and ``click_few`` ONNX files (``pack_decoder`` in browser.py).
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import os
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from interventions.segmentation.browser import (
    DECODER_FORMAT,
    decoder_onnx_path,
    pack_decoder,
    unpack_decoder,
)

ONNX_OPSET = 17  # onnxruntime-web's wasm backend runs every op of these graphs at opset 17
__all__ = [
    "DECODER_FORMAT",
    "DecoderSessions",
    "cached_decoder_onnx",
    "export_decoder_onnx",
    "state_dict_sha256",
]
PREPARE_INPUTS = ["image_embeddings", "mask_input", "has_mask_input"]
PREPARED = ["keys", "k_t", "v_t", "q_t"]
CLICK_INPUTS = [
    *PREPARED,
    "point_coords",
    "point_labels",
    "orig_im_size",
    "best_predicted",
    "full_low_res",
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


def _linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return x @ layer.weight.t() + layer.bias


def _per_head_t(layer: nn.Linear, x: torch.Tensor, heads: int) -> torch.Tensor:
    """``layer(x)`` for image tokens x (n, C), transposed and split per head: (heads, d, n),
    computed as W @ x^T (one GEMM, no transpose of the result)."""
    return (layer.weight @ x.t() + layer.bias[:, None]).reshape(heads, -1, x.shape[0])


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:  # (T, D) -> (heads, T, d)
    return x.reshape(x.shape[0], heads, -1).transpose(0, 1)


def _merge(x: torch.Tensor) -> torch.Tensor:  # (heads, T, d) -> (T, D)
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def _token_attention(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """segment-anything's Attention among the (few) prompt tokens."""
    heads = attn.num_heads
    qh, kh = _split(_linear(q, attn.q_proj), heads), _split(_linear(k, attn.k_proj), heads)
    vh = _split(_linear(v, attn.v_proj), heads)
    weights = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(qh.shape[-1]), dim=-1)
    return _linear(_merge(weights @ vh), attn.out_proj)


def _token_to_image(attn: nn.Module, q: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor):
    """Tokens q (T, C) attend to the image, whose keys/values come per head transposed."""
    qh = _split(_linear(q, attn.q_proj), attn.num_heads)  # (heads, T, d)
    weights = torch.softmax(qh @ k_t / math.sqrt(qh.shape[-1]), dim=-1)  # (heads, T, n)
    return _linear(_merge(weights @ v_t.transpose(1, 2)), attn.out_proj)


def _image_to_token(attn: nn.Module, q_t: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """The image (queries per head transposed, (heads, d, n)) attends to the tokens k, v (T, C);
    the scores are kept transposed (heads, T, n), so the softmax runs over axis 1."""
    heads = attn.num_heads
    kh, vh = _split(_linear(k, attn.k_proj), heads), _split(_linear(v, attn.v_proj), heads)
    scores = kh @ q_t / math.sqrt(kh.shape[-1])
    scores = torch.exp(scores - scores.amax(dim=1, keepdim=True))
    weights = scores / scores.sum(dim=1, keepdim=True)
    out_t = (vh.transpose(1, 2) @ weights).reshape(-1, weights.shape[-1])  # (D, n)
    return out_t.t() @ attn.out_proj.weight.t() + attn.out_proj.bias  # (n, C)


def _head_weights(layer: nn.Linear, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A projection's weight (heads, d, C) and bias (heads, d), split per head."""
    return layer.weight.reshape(heads, -1, layer.weight.shape[1]), layer.bias.reshape(heads, -1)


def _folded_scores(tokens_h: torch.Tensor, layer: nn.Linear, image: torch.Tensor) -> torch.Tensor:
    """Per-head dot products of the few tokens (heads, T, d) with ``layer(image)`` (n, C),
    without projecting the image: (t W_h) . x + t . b_h, as (heads * T, n)."""
    heads, count, _ = tokens_h.shape
    weight, bias = _head_weights(layer, heads)
    folded = (tokens_h @ weight).reshape(heads * count, -1)  # (heads * T, C)
    offset = (tokens_h * bias[:, None, :]).sum(-1).reshape(heads * count, 1)
    return folded @ image.t() + offset


def _token_to_image_few(attn: nn.Module, q: torch.Tensor, keys: torch.Tensor, keyed: torch.Tensor):
    """_token_to_image for few tokens, with the image's key/value projections folded into the
    tokens' side: softmax((q W_k) (x + pe)^T) (x W_v^T + b_v) = (softmax(...) x) W_v^T + b_v,
    since each softmax row sums to 1."""
    heads = attn.num_heads
    qh = _split(_linear(q, attn.q_proj), heads)  # (heads, T, d)
    count, width = qh.shape[1], qh.shape[2]
    scores = _folded_scores(qh, attn.k_proj, keyed) / math.sqrt(width)
    pooled = (torch.softmax(scores, dim=-1) @ keys).reshape(heads, count, -1)  # (heads, T, C)
    weight, bias = _head_weights(attn.v_proj, heads)
    out = pooled @ weight.transpose(1, 2) + bias[:, None, :]  # (heads, T, d)
    return _linear(_merge(out), attn.out_proj)


def _image_to_token_few(attn: nn.Module, scores_t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The image->token attention's output for few tokens, given its scores (heads, T, n) before
    the softmax: each head's values go through out_proj first (T x C), so the image side is
    one (n x heads*T) @ (heads*T x C) product."""
    heads, count, n = scores_t.shape
    scores_t = torch.exp(scores_t - scores_t.amax(dim=1, keepdim=True))
    weights = (scores_t / scores_t.sum(dim=1, keepdim=True)).reshape(heads * count, n)
    vh = _split(_linear(v, attn.v_proj), heads)  # (heads, T, d)
    out_w = attn.out_proj.weight  # (C, heads * d)
    per_head = out_w.reshape(out_w.shape[0], heads, -1).permute(1, 2, 0)  # (heads, d, C)
    values = (vh @ per_head).reshape(heads * count, -1)  # (heads * T, C)
    return weights.t() @ values + attn.out_proj.bias  # (n, C)


class PrepareGraph(nn.Module):
    """What a click does not change: the image tokens (embedding + the dense prompt) and the
    first transformer block's projections of them."""

    def __init__(self, parts: _PromptParts) -> None:
        from segment_anything.utils.onnx import SamOnnxModel

        super().__init__()
        # SamOnnxModel's mask embedding is the tracing-friendly PromptEncoder._embed_masks
        self.reference = SamOnnxModel(parts, return_single_mask=False)
        self.block = parts.mask_decoder.transformer.layers[0]
        pe = parts.prompt_encoder.get_dense_pe()  # (1, C, h, w)
        self.register_buffer("pe", pe.flatten(2)[0].t().contiguous())  # (h * w, C)

    @torch.no_grad()
    def forward(self, image_embeddings, mask_input, has_mask_input):
        dense = self.reference._embed_masks(mask_input, has_mask_input)
        keys = (image_embeddings + dense).flatten(2)[0].t()  # (n, C)
        heads = self.block.cross_attn_token_to_image.num_heads
        t2i, i2t = self.block.cross_attn_token_to_image, self.block.cross_attn_image_to_token
        keyed = keys + self.pe
        return (
            keys,
            _per_head_t(t2i.k_proj, keyed, heads),
            _per_head_t(t2i.v_proj, keys, heads),
            _per_head_t(i2t.q_proj, keyed, heads),
        )


class ClickGraph(nn.Module):
    """The prompt encoder's points, SAM's two-way transformer from its first block's
    cross-attention on, the IoU head, and the chosen mask, upscaled to the image."""

    def __init__(self, parts: _PromptParts, few_tokens: bool = False) -> None:
        from segment_anything.utils.onnx import SamOnnxModel

        super().__init__()
        # SamOnnxModel's point embedding is the tracing-friendly PromptEncoder._embed_points
        self.reference = SamOnnxModel(parts, return_single_mask=False)
        self.decoder = parts.mask_decoder
        self.few_tokens = few_tokens
        pe = parts.prompt_encoder.get_dense_pe()
        self.register_buffer("pe", pe.flatten(2)[0].t().contiguous())
        self.grid = tuple(pe.shape[-2:])

    @torch.no_grad()
    def forward(
        self,
        keys,
        k_t,
        v_t,
        q_t,
        point_coords,
        point_labels,
        orig_im_size,
        best_predicted,
        full_low_res,
    ):
        dec = self.decoder
        tr = dec.transformer
        heads = tr.num_heads
        sparse = self.reference._embed_points(point_coords, point_labels)[0]  # (N, C)
        tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight, sparse], dim=0)
        queries = tokens
        for i, block in enumerate(tr.layers):
            t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
            if i == 0:  # skip_first_layer_pe: no positional encoding, no residual
                queries = block.norm1(_token_attention(block.self_attn, queries, queries, queries))
                attended = _token_to_image(t2i, queries + tokens, k_t, v_t)
            else:
                q = queries + tokens
                queries = block.norm1(queries + _token_attention(block.self_attn, q, q, queries))
                keyed = keys + self.pe
                if self.few_tokens:
                    attended = _token_to_image_few(t2i, queries + tokens, keys, keyed)
                else:
                    k_t = _per_head_t(t2i.k_proj, keyed, heads)
                    v_t = _per_head_t(t2i.v_proj, keys, heads)
                    q_t = _per_head_t(i2t.q_proj, keyed, heads)
                    attended = _token_to_image(t2i, queries + tokens, k_t, v_t)
            queries = block.norm2(queries + attended)
            queries = block.norm3(queries + block.mlp(queries))
            if self.few_tokens:
                kh = _split(_linear(queries + tokens, i2t.k_proj), heads)  # (heads, T, d)
                if i == 0:
                    scores_t = kh @ q_t
                else:
                    scores_t = _folded_scores(kh, i2t.q_proj, keyed).reshape(heads, kh.shape[1], -1)
                scores_t = scores_t / math.sqrt(kh.shape[-1])
                attended = _image_to_token_few(i2t, scores_t, queries)
            else:
                attended = _image_to_token(i2t, q_t, queries + tokens, queries)
            keys = block.norm4(keys + attended)
        final = tr.final_attn_token_to_image
        if self.few_tokens:
            attended = _token_to_image_few(final, queries + tokens, keys, keys + self.pe)
        else:
            k_t = _per_head_t(final.k_proj, keys + self.pe, heads)
            v_t = _per_head_t(final.v_proj, keys, heads)
            attended = _token_to_image(final, queries + tokens, k_t, v_t)
        queries = tr.norm_final_attn(queries + attended)

        # MaskDecoder's multimask outputs are mask tokens 1..3; pick one before forming masks
        scores = dec.iou_prediction_head(queries[0:1])[:, 1:]  # (1, 3)
        best = torch.argmax(scores, dim=1)
        index = best * (best_predicted > 0.5).to(torch.int64)
        hyper = torch.stack(
            [
                dec.output_hypernetworks_mlps[j](queries[1 + j])
                for j in range(1, dec.num_mask_tokens)
            ]
        )
        chosen = torch.index_select(hyper, 0, index)  # (1, C / 8)
        low_res = self.upscaled_mask(self.image_cells(keys, orig_im_size, full_low_res), chosen)
        return self.postprocess(low_res, orig_im_size), scores, low_res, index

    def image_cells(self, keys, orig_im_size, full_low_res):
        """The image tokens (grid rows x columns, C) the upscaling needs: all of them when
        ``full_low_res`` is 1 (the low-res logits are chained into the next click), else only
        those under the image in the padded 1024 frame plus two cells of margin, so that every
        pixel the bilinear resizes read is computed (each token's 4 x 4 low-res pixels depend
        on that token alone). For a 4:3 image 50 of 64 rows."""
        h, w = self.grid
        img = self.reference.img_size
        grid = torch.tensor([h, w], dtype=torch.int64)
        inside = self.reference.resize_longest_image_size(orig_im_size, img).to(torch.int64)
        need = torch.minimum(torch.div(inside, img // h, rounding_mode="floor") + 2, grid)
        need = torch.where(full_low_res > 0.5, grid, need)
        cells = keys.reshape(h, w, keys.shape[1])[: need[0], : need[1]]
        return cells

    def upscaled_mask(self, cells: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """MaskDecoder.output_upscaling then ``hyper @ upscaled`` for one mask, channel last, on
        grid cells (rows, cols, C): ConvTranspose2d(k=2, s=2) maps each pixel to its 2 x 2
        children by one matrix, so both are matrix products on pixel rows, and the result is put
        in image order once."""
        conv1, norm, act1, conv2, act2 = self.decoder.output_upscaling
        cols = cells.shape[1]
        keys = cells.reshape(-1, cells.shape[2])
        n = keys.shape[0]
        c4, c8 = conv1.weight.shape[1], conv2.weight.shape[1]
        w1 = conv1.weight.permute(0, 2, 3, 1).reshape(conv1.weight.shape[0], 4 * c4)
        y = (keys @ w1).reshape(n * 4, c4) + conv1.bias  # rows (pixel, a, b)
        y = act1(F.layer_norm(y, (c4,), norm.weight, norm.bias, norm.eps))
        w2 = conv2.weight.permute(0, 2, 3, 1).reshape(c4, 4 * c8)
        z = act2((y @ w2).reshape(n * 16, c8) + conv2.bias)  # rows (pixel, a, b, c, d)
        low = (z @ hyper.t()).reshape(-1, cols, 2, 2, 2, 2)  # (i, j, a, b, c, d)
        return low.permute(0, 2, 4, 1, 3, 5).reshape(1, 1, -1, 4 * cols)  # row 4i+2a+c

    def postprocess(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """``Sam.postprocess_masks``: bilinear to 1024 x 1024, crop the padding, bilinear to the
        original size. SamOnnxModel's version crops with Python ints, which the tracer freezes
        to the example's size; here the crop stays a tensor, so every image size works. The
        first resize is by a factor of 4 (256 -> 1024: the same source coordinates), so it runs
        on the rows and columns ``image_cells`` kept."""
        img = self.reference.img_size
        scale = float(img // (4 * self.grid[0]))  # 1024 / 256
        masks = F.interpolate(masks, scale_factor=scale, mode="bilinear", align_corners=False)
        prepadded = self.reference.resize_longest_image_size(orig_im_size, img)
        masks = masks[..., : prepadded[0], : prepadded[1]]
        size = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)


def example_inputs(sam: nn.Module, n_points: int = 3) -> tuple[torch.Tensor, ...]:
    """``prepare``'s inputs followed by the click's own (points, labels, size, choice)."""
    pe = sam.prompt_encoder
    c = pe.embed_dim
    h, w = pe.image_embedding_size
    mh, mw = pe.mask_input_size
    return (
        torch.randn(1, c, h, w),
        torch.randn(1, 1, mh, mw),
        torch.tensor([1.0]),
        torch.randint(0, 1024, (1, n_points, 2), dtype=torch.float32),
        torch.randint(-1, 2, (1, n_points), dtype=torch.float32),
        torch.tensor([480.0, 640.0]),
        torch.tensor([1.0]),
        torch.tensor([0.0]),
    )


def _to_onnx(model: nn.Module, args: tuple, inputs: list[str], outputs: list[str], dynamic):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the exporter's deprecation notice, and TracerWarnings on constant head widths; the
        # tests run the graphs at other sizes and point counts
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            buffer,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


def export_decoder_onnx(sam_model: nn.Module, out_path: str | os.PathLike[str]) -> Path:
    """Write the ``prepare`` and ``click`` graphs of ``sam_model`` (opset 17, dynamic number of
    points, weights embedded), each checked with ``onnx.checker``, to ``out_path`` as one
    container. Traced on CPU copies of the prompt encoder and mask decoder; ``sam_model``
    itself is left as it was.

    Uses torch's TorchScript-based exporter (``dynamo=False``), the one SamOnnxModel was
    written for; it is deprecated in favour of torch.export but present in the pinned torch."""
    import onnx

    parts = _PromptParts(sam_model)
    prepare = PrepareGraph(parts).eval()
    example = example_inputs(sam_model)
    prepared = prepare(*example[:3])
    points = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    graphs = [_to_onnx(prepare, example[:3], PREPARE_INPUTS, PREPARED, None)]
    for few in (False, True):
        click = ClickGraph(parts, few_tokens=few).eval()
        graphs.append(
            _to_onnx(click, (*prepared, *example[3:]), CLICK_INPUTS, OUTPUT_NAMES, points)
        )
    for graph in graphs:
        onnx.checker.check_model(onnx.load_from_string(graph))
    out = Path(out_path)
    out.write_bytes(pack_decoder(*graphs, few_max_points(sam_model)))
    return out


def few_max_points(sam_model: nn.Module) -> int:
    """The most prompt points for which ``ClickGraph(few_tokens=True)`` is the cheaper graph:
    its image-side products grow with heads x tokens, the usual ones with the attention width,
    so it is used while the tokens (IoU + mask tokens + points + SAM's padding point) are at
    most the head width (16 for every released SAM: up to 10 points)."""
    decoder = sam_model.mask_decoder
    attention = decoder.transformer.layers[0].cross_attn_token_to_image
    head_width = attention.internal_dim // attention.num_heads
    return max(0, head_width - 1 - decoder.num_mask_tokens - 1)


class DecoderSessions:
    """The exported decoder in onnxruntime (Python), run as static/prompting/sam_decoder.js
    runs it: ``prepare`` then ``click``. For tests and benchmarks; the server decodes with
    torch (``SamBackend``)."""

    def __init__(self, path: str | os.PathLike[str], threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        prepare, click, click_few, self.few_max_points = unpack_decoder(Path(path).read_bytes())
        providers = ["CPUExecutionProvider"]
        self.prepare = ort.InferenceSession(prepare, options, providers=providers)
        self.click = ort.InferenceSession(click, options, providers=providers)
        self.click_few = ort.InferenceSession(click_few, options, providers=providers)

    def run(self, feeds: dict[str, np.ndarray], few: bool | None = None) -> list[np.ndarray]:
        """``onnx_decoder_feeds(...)`` -> [masks, iou_predictions, low_res_masks, mask_index];
        ``few`` forces a click graph (default: as the browser picks, by the number of points)."""
        prepared = self.prepare.run(None, {name: feeds[name] for name in PREPARE_INPUTS})
        click = dict(zip(PREPARED, prepared, strict=True))
        click.update({name: feeds[name] for name in CLICK_INPUTS[len(PREPARED) :]})
        if few is None:
            few = feeds["point_labels"].shape[1] - 1 <= self.few_max_points
        return (self.click_few if few else self.click).run(None, click)


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
    (``<cache_dir>/<model_type>-<sha256>-decoder-v3.samdec``); written to a temporary file and
    renamed, so concurrent exporters and readers never see a partial file.
    """
    path = decoder_onnx_path(cache_dir, model_type, weights_sha256)
    root = path.parent
    if path.is_file() and path.stat().st_size > 0:
        return path
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-", suffix=".samdec")
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
