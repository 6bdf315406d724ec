"""Response headers for static files (whitenoise's WHITENOISE_ADD_HEADERS_FUNCTION).

The prompting page is cross-origin isolated (COOP + COEP, studies/prompting/views.py) so the
browser's SAM decoder can run WebAssembly threads. A dedicated worker of such a page loads only
if its script answers with a COEP of its own, so onnxruntime-web's worker script and the page's
decoder worker (static/prompting/decoder_worker.js) get one; every
static file says it may be embedded by this site's pages only."""

from __future__ import annotations

WORKER_SCRIPTS = "/vendor/onnxruntime-web/"
DECODER_WORKER = "/prompting/decoder_worker"  # static/prompting/decoder_worker.js (and hashed)


def add_headers(headers, path: str, url: str) -> None:
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    worker = (WORKER_SCRIPTS in url and url.endswith(".mjs")) or (
        DECODER_WORKER in url and url.endswith(".js")
    )
    if worker:
        headers["Cross-Origin-Embedder-Policy"] = "require-corp"
