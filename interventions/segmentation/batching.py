"""Several click -> mask requests (different images, different numbers of points) decoded in one
forward of SAM's prompt encoder + mask decoder (Kirillov et al., 2023), with answers equal to
``SamBackend.predict`` one at a time.

SAM's two-way transformer attends over the prompt tokens without any mask, so simply padding
shorter prompts with extra "not a point" tokens (label -1) would change their answers: every
extra token takes a share of each softmax. Here each request keeps exactly the tokens
``SamPredictor`` gives it (its points plus SAM's own single padding point) and the batch's
further padding tokens are masked out of every attention over prompt tokens (their scores set
to -inf before the softmax), so they take no share. Image embeddings are stacked, one row per
request, instead of ``MaskDecoder.predict_masks``' repeat of one image per prompt.

``MicroBatcher`` is the worker side: request threads ``submit`` and wait; a collector thread
runs whatever arrived within ``max_wait_ms`` of the first request as one batch.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch

from interventions.segmentation.backend import (
    Embedding,
    Prediction,
    check_mask_input,
    check_prompt,
)


@dataclass(frozen=True)
class DecodeRequest:
    """One prompt on one image: (x, y) points in original pixels, labels 1 green / 0 red, and
    optionally the previous low-res logits (1, 256, 256) as ``mask_input``."""

    embedding: Embedding
    points_xy: np.ndarray
    labels: np.ndarray
    mask_input: np.ndarray | None = None


def _attend(attn: torch.nn.Module, q, k, v, key_valid: torch.Tensor | None) -> torch.Tensor:
    """segment_anything's ``Attention.forward`` with invalid keys removed from the softmax."""
    q = attn._separate_heads(attn.q_proj(q), attn.num_heads)
    k = attn._separate_heads(attn.k_proj(k), attn.num_heads)
    v = attn._separate_heads(attn.v_proj(v), attn.num_heads)
    scores = q @ k.permute(0, 1, 3, 2)
    scores = scores / math.sqrt(q.shape[-1])
    if key_valid is not None:
        scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return attn.out_proj(attn._recombine_heads(out))


def _two_way(transformer, image, image_pe, tokens, valid):
    """``TwoWayTransformer.forward`` (and its blocks) with prompt-token key masks."""
    keys = image.flatten(2).permute(0, 2, 1)
    key_pe = image_pe.flatten(2).permute(0, 2, 1)
    queries = tokens
    for layer in transformer.layers:
        if layer.skip_first_layer_pe:
            queries = _attend(layer.self_attn, queries, queries, queries, valid)
        else:
            q = queries + tokens
            queries = queries + _attend(layer.self_attn, q, q, queries, valid)
        queries = layer.norm1(queries)
        q, k = queries + tokens, keys + key_pe
        queries = layer.norm2(queries + _attend(layer.cross_attn_token_to_image, q, k, keys, None))
        queries = layer.norm3(queries + layer.mlp(queries))
        q, k = queries + tokens, keys + key_pe
        keys = layer.norm4(keys + _attend(layer.cross_attn_image_to_token, k, q, queries, valid))
    q, k = queries + tokens, keys + key_pe
    queries = queries + _attend(transformer.final_attn_token_to_image, q, k, keys, None)
    return transformer.norm_final_attn(queries), keys


def _decode(decoder, features, image_pe, sparse, dense, valid):
    """``MaskDecoder.predict_masks`` for one image row per prompt row."""
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse), dim=1)
    valid = torch.cat([torch.ones_like(valid[:, :1]).expand(-1, output_tokens.shape[1]), valid], 1)
    src = features + dense
    pos_src = image_pe.expand(src.shape[0], -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = _two_way(decoder.transformer, src, pos_src, tokens, valid)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : (1 + decoder.num_mask_tokens), :]
    src = src.transpose(1, 2).reshape(b, c, h, w)
    upscaled = decoder.output_upscaling(src)
    hyper_in = torch.stack(
        [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
        dim=1,
    )
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
    return masks, decoder.iou_prediction_head(iou_token_out)


def predict_batch(
    backend, requests: Sequence[DecodeRequest], multimask: bool = True
) -> list[Prediction]:
    """``[backend.predict(r.embedding, r.points_xy, r.labels, r.mask_input, multimask) for r in
    requests]`` in one batched forward of ``backend``'s (a ``SamBackend``) prompt encoder and
    mask decoder. Requests may come from different images and hold different numbers of points
    (zero included); an invalid request raises ValueError before anything runs."""
    if not requests:
        return []
    sam = backend.predictor.model
    transform = backend.predictor.transform
    device = backend.device
    checked = []
    for r in requests:
        pts, lab = check_prompt(r.embedding, backend.model_id, r.points_xy, r.labels)
        features = r.embedding.arrays.get("features")
        if features is None or features.ndim != 4 or features.shape[0] != 1:
            raise ValueError("embedding lacks SAM 'features' of shape (1, C, h, w)")
        checked.append((pts, lab, features, check_mask_input(r.mask_input)))

    b = len(requests)
    # Each request's tokens as SamPredictor makes them: its points + SAM's one padding point
    # (none at all without points); then -1 tokens up to the longest, masked out.
    width = max(len(pts) + 1 if len(pts) else 0 for pts, *_ in checked)
    coords = np.zeros((b, width, 2), np.float32)
    labels = np.full((b, width), -1, np.int32)
    valid = np.zeros((b, width), bool)
    for i, ((pts, lab, _, _), r) in enumerate(zip(checked, requests, strict=True)):
        if len(pts):
            # as SamBackend.predict -> SamPredictor.predict: float32 points, apply_coords
            scaled = transform.apply_coords(pts.astype(np.float32), r.embedding.original_size)
            coords[i, : len(pts)] = scaled
            labels[i, : len(pts)] = lab
            valid[i, : len(pts) + 1] = True

    pe = sam.prompt_encoder
    with torch.inference_mode():
        sparse = pe._embed_points(
            torch.from_numpy(coords).to(device), torch.from_numpy(labels).to(device), pad=False
        )
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            1, -1, *pe.image_embedding_size
        )
        dense = torch.cat(
            [
                no_mask
                if prior is None
                else pe.mask_downscaling(torch.from_numpy(prior[None]).to(device))
                for *_, prior in checked
            ]
        )
        features = torch.from_numpy(np.concatenate([f for _, _, f, _ in checked])).to(device)
        low_res, iou = _decode(
            sam.mask_decoder,
            features.to(torch.float32),
            pe.get_dense_pe(),
            sparse,
            dense,
            torch.from_numpy(valid).to(device),
        )
        keep = slice(1, None) if multimask else slice(0, 1)
        low_res, iou = low_res[:, keep], iou[:, keep]
        out = []
        for i, r in enumerate(requests):
            up = sam.postprocess_masks(
                low_res[i : i + 1], r.embedding.input_size, r.embedding.original_size
            )
            out.append(
                Prediction(
                    (up[0] > sam.mask_threshold).cpu().numpy(),
                    iou[i].cpu().numpy().astype(np.float32),
                    low_res[i].cpu().numpy().astype(np.float32),
                )
            )
    return out


class MicroBatcher:
    """Collects requests that arrive within ``max_wait_ms`` of the first waiting one (at most
    ``max_batch``) and decodes them with one ``predict_batch`` on its own thread.

    A worker that serves clicks from several threads calls ``predict`` (or ``submit`` for a
    Future) instead of ``backend.predict``; a single request waits at most ``max_wait_ms``
    longer than alone. Invalid requests are refused in ``submit``, so they never fail a batch.
    """

    def __init__(
        self, backend, max_batch: int = 8, max_wait_ms: float = 5.0, multimask: bool = True
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.backend = backend
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.multimask = multimask
        self.batch_sizes: list[int] = []  # one entry per batch run, for figures and tests
        self._pending: list[tuple[DecodeRequest, Future]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="sam-microbatcher", daemon=True)
        self._thread.start()

    def submit(self, request: DecodeRequest) -> Future:
        check_prompt(request.embedding, self.backend.model_id, request.points_xy, request.labels)
        check_mask_input(request.mask_input)
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("MicroBatcher is closed")
            self._pending.append((request, future))
            self._cond.notify_all()
        return future

    def predict(self, request: DecodeRequest, timeout: float | None = None) -> Prediction:
        return self.submit(request).result(timeout)

    def close(self) -> None:
        """Run what is pending, then stop the collector thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _take(self) -> list[tuple[DecodeRequest, Future]]:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return []
            deadline = time.monotonic() + self.max_wait_s
            while len(self._pending) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
            if not live:
                continue
            self.batch_sizes.append(len(live))
            try:
                answers = predict_batch(self.backend, [r for r, _ in live], self.multimask)
            except BaseException as exc:  # every waiting caller hears of it
                for _, f in live:
                    f.set_exception(exc)
                continue
            for (_, f), answer in zip(live, answers, strict=True):
                f.set_result(answer)


def predict_prompts(
    backend,
    embedding: Embedding,
    prompts: Sequence[tuple[np.ndarray, np.ndarray]],
    multimask: bool = True,
    max_batch: int = 64,
    first_only: bool = False,
) -> list[Prediction]:
    """Every (points_xy, labels) prompt on one image's embedding: for SAM in batched forwards of
    at most ``max_batch`` prompts (``predict_batch``), for a backend without a batch decoder
    (the classical one) ``backend.predict`` per prompt. Same answers as ``backend.predict`` one
    at a time (SAM: up to float32 summation order, see ``predict_batch``).

    ``first_only``: the caller reads masks[0] (and predicted_iou[0]) of the multimask answer
    only. The classical backend's first candidate does not depend on the others
    (``multimask=False`` returns it alone, the same mask and score), so only it is computed;
    SAM's single-mask output is another mask, so SAM still decodes all three."""
    from interventions.segmentation.classical import ClassicalBackend

    if not hasattr(backend, "predictor"):
        single = first_only and multimask and isinstance(backend, ClassicalBackend)
        return [
            backend.predict(
                embedding, points, labels, mask_input=None, multimask=multimask and not single
            )
            for points, labels in prompts
        ]
    out: list[Prediction] = []
    for start in range(0, len(prompts), max_batch):
        part = prompts[start : start + max_batch]
        out.extend(
            predict_batch(
                backend, [DecodeRequest(embedding, pts, lab) for pts, lab in part], multimask
            )
        )
    return out
