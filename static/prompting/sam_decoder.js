// SAM's prompt encoder + mask decoder in the browser (onnxruntime-web, single-threaded wasm), on
// a float16 image embedding the server sends. The server's own prediction stays the record: this
// module only lets the page draw the mask before the server's answer arrives. Inputs are built
// exactly as the server builds them (interventions/segmentation/browser.py, onnx_decoder_feeds),
// so with the same embedding the mask is the server's mask up to float rounding.
//
//   import { loadSamDecoder, DecoderUnavailable } from "./sam_decoder.js";
//   let decoder = null;
//   try { decoder = await loadSamDecoder({ modelUrl }); } catch (e) { /* server path only */ }
//   decoder.setEmbedding(await (await fetch(embeddingUrl)).arrayBuffer());
//   const r = await decoder.decode([[x, y], ...], [1, 0, ...], { maskChoice: "first" });
//   // r.mask: Uint8Array(r.height * r.width), 1 inside; r.predictedIou; r.decodeMs
//
// Nothing is loaded from a CDN: onnxruntime-web comes from static/vendor/onnxruntime-web/
// (copied there by `make setup`), found relative to this file unless ortUrl / wasmPaths say.

const VENDOR = new URL("../vendor/onnxruntime-web/", import.meta.url).href;
const LOW_RES = 256;
const MAGIC = "SAMEMB16";
const DECODER_MAGIC = "SAMDEC03";
const MASK_CHOICES = ["first", "best_predicted"];

/** Why the browser decoder cannot run here; the caller uses the server path instead. */
export class DecoderUnavailable extends Error {
  constructor(reason, cause) {
    super(`browser SAM decoder unavailable: ${reason}`);
    this.name = "DecoderUnavailable";
    this.reason = reason;
    if (cause) this.cause = cause;
  }
}

// The smallest module using a v128 instruction (the same probe as wasm-feature-detect's simd):
// onnxruntime-web ships only SIMD builds.
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253,
  15, 253, 98, 11,
]);

/** null when WebAssembly with SIMD is available, else the reason it is not (a string). */
export function webAssemblyUnavailableReason() {
  if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
    return "WebAssembly is not available in this browser";
  }
  try {
    if (!WebAssembly.validate(SIMD_PROBE)) return "WebAssembly SIMD is not supported";
  } catch (err) {
    return `WebAssembly cannot validate modules (${err})`;
  }
  return null;
}

let halfTable = null;
function halfToFloatTable() {
  // all 65536 float16 bit patterns -> float32, built once (256 KiB); exact, like numpy's astype
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    let v;
    if (exp === 0) v = frac * 2 ** -24;
    else if (exp === 31) v = frac ? NaN : Infinity;
    else v = (1 + frac / 1024) * 2 ** (exp - 15);
    halfTable[h] = sign * v;
  }
  return halfTable;
}

/** float16 bits (Uint16Array) -> Float32Array, exactly. */
export function halfToFloat32(bits) {
  const table = halfToFloatTable();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function floatToHalfBits(value) {
  // round to nearest, ties to even, as numpy's astype(float16)
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);  // inf, NaN
  const e = exp - 112;  // float16 exponent field
  if (e >= 0x1f) return sign | 0x7c00;  // too large: inf
  let half, rem, halfway;
  if (e <= 0) {  // float16 subnormal (or zero)
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    half = mant >>> shift;
    rem = mant & ((1 << shift) - 1);
    halfway = 1 << (shift - 1);
  } else {
    half = (e << 10) | (mant >>> 13);
    rem = mant & 0x1fff;
    halfway = 0x1000;
  }
  if (rem > halfway || (rem === halfway && (half & 1))) half++;  // a carry may reach inf: right
  return sign | half;
}

/**
 * Float32 values rounded to the nearest float16 (ties to even), returned as a Float32Array. The
 * server chains the previous low-res logits as float16 (workers/tasks.py), so a page that passes
 * the browser's own lowResLogits as the next maskInput rounds them with this first.
 */
export function roundToFloat16(values) {
  const out = new Float32Array(values.length);
  if (typeof Math.f16round === "function") {
    for (let i = 0; i < values.length; i++) out[i] = Math.f16round(values[i]);
    return out;
  }
  const table = halfToFloatTable();
  for (let i = 0; i < values.length; i++) out[i] = table[floatToHalfBits(values[i])];
  return out;
}

/**
 * Parse the server's float16 embedding (interventions/segmentation/browser.py,
 * embedding_to_f16_bytes): {features: Float32Array, shape: number[], originalSize: [H, W],
 * inputSize: [h, w]}. Throws Error on a malformed buffer.
 */
export function parseEmbeddingF16(buffer) {
  if (!(buffer instanceof ArrayBuffer)) throw new Error("embedding must be an ArrayBuffer");
  if (buffer.byteLength < 16) throw new Error("embedding is too short for its header");
  const view = new DataView(buffer);
  const magic = String.fromCharCode(...new Uint8Array(buffer, 0, 8));
  if (magic !== MAGIC) throw new Error(`not a float16 SAM embedding (magic ${JSON.stringify(magic)})`);
  const headerLength = view.getUint32(8, true);
  const ndim = view.getUint32(12, true);
  if (ndim < 1 || headerLength % 8 || headerLength < 16 + 4 * (ndim + 4)) {
    throw new Error(`bad embedding header (ndim ${ndim}, length ${headerLength})`);
  }
  const fields = [];
  for (let i = 0; i < ndim + 4; i++) fields.push(view.getUint32(16 + 4 * i, true));
  const shape = fields.slice(0, ndim);
  const count = shape.reduce((a, b) => a * b, 1);
  if (buffer.byteLength !== headerLength + 2 * count) {
    throw new Error(`embedding has ${buffer.byteLength} bytes, expected ${headerLength + 2 * count}`);
  }
  return {
    features: halfToFloat32(new Uint16Array(buffer, headerLength, count)),
    shape,
    originalSize: [fields[ndim], fields[ndim + 1]],
    inputSize: [fields[ndim + 2], fields[ndim + 3]],
  };
}

/** IoU of two 0/1 Uint8Array masks of the same length (1 when both are empty). */
export function maskIou(a, b) {
  if (a.length !== b.length) throw new Error(`masks differ in size: ${a.length} vs ${b.length}`);
  let inter = 0, union = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] !== 0, y = b[i] !== 0;
    if (x && y) inter++;
    if (x || y) union++;
  }
  return union === 0 ? 1 : inter / union;
}

/** Hex sha256 of a 0/1 Uint8Array mask (row-major), as interventions' mask_sha256; null where
 * crypto.subtle is missing (an insecure origin). */
export async function maskSha256(mask) {
  if (!globalThis.crypto || !crypto.subtle) return null;
  const bytes = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) bytes[i] = mask[i] !== 0 ? 1 : 0;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Load onnxruntime-web and the exported decoder once.
 * @param {{modelUrl: string|ArrayBuffer|Uint8Array, ortUrl?: string, wasmPaths?: string,
 *   numThreads?: number}} opts numThreads > 1 is used only where the page is cross-origin
 *   isolated (COOP/COEP headers); otherwise, and by default, one thread
 * @returns {Promise<SamDecoder>} rejects with DecoderUnavailable (never anything else)
 */
export async function loadSamDecoder(opts) {
  const { modelUrl, ortUrl = VENDOR + "ort.wasm.min.mjs", wasmPaths = VENDOR } = opts || {};
  const wanted = Math.max(1, Math.floor((opts && opts.numThreads) || 1));
  const numThreads = wanted > 1 && globalThis.crossOriginIsolated ? wanted : 1;
  if (!modelUrl) throw new DecoderUnavailable("no modelUrl given");
  const reason = webAssemblyUnavailableReason();
  if (reason) throw new DecoderUnavailable(reason);
  let ort;
  try {
    ort = await import(ortUrl);
  } catch (err) {
    throw new DecoderUnavailable(`onnxruntime-web did not load from ${ortUrl}`, err);
  }
  ort.env.wasm.wasmPaths = wasmPaths;
  ort.env.wasm.numThreads = numThreads;  // > 1 needs SharedArrayBuffer (cross-origin isolation)
  ort.env.wasm.proxy = false;
  let sessions;
  try {
    const bytes = typeof modelUrl === "string" ? await fetchBytes(modelUrl) : modelUrl;
    const graphs = unpackDecoder(bytes);
    const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
    sessions = {
      prepare: await ort.InferenceSession.create(graphs.prepare, options),
      click: await ort.InferenceSession.create(graphs.click, options),
      clickFew: await ort.InferenceSession.create(graphs.clickFew, options),
      fewMaxPoints: graphs.fewMaxPoints,
    };
  } catch (err) {
    throw new DecoderUnavailable(`the decoder model did not load: ${err && err.message}`, err);
  }
  return new SamDecoder(ort, sessions, numThreads);
}

/**
 * loadSamDecoder in a dedicated worker (decoder_worker.js), with SamDecoder's API (setEmbedding
 * answers a Promise there): a decode no longer holds the page's main thread, so input, drawing
 * and the server's answers are handled while it runs. The worker script must be served with
 * the page's COEP for its wasm threads (config/static_headers.py).
 * @param {{modelUrl: string|ArrayBuffer|Uint8Array, numThreads?: number}} opts bytes are moved
 *   to the worker (the caller's buffer is detached)
 * @returns {Promise<WorkerSamDecoder>} rejects with DecoderUnavailable; `workerFailed` is true
 *   on it when the worker itself could not run (the caller may load on the main thread instead)
 */
export async function loadSamDecoderInWorker(opts) {
  const { modelUrl, numThreads = 1 } = opts || {};
  if (!modelUrl) throw new DecoderUnavailable("no modelUrl given");
  const reason = webAssemblyUnavailableReason();
  if (reason) throw new DecoderUnavailable(reason);
  let worker;
  try {
    worker = new Worker(WORKER_URL, { type: "module", name: "sam-decoder" });
  } catch (err) {
    throw Object.assign(new DecoderUnavailable(`the decoder worker did not start: ${err && err.message}`, err), { workerFailed: true });
  }
  const remote = new WorkerSamDecoder(worker);
  const bytes = typeof modelUrl === "string" ? modelUrl : modelUrl instanceof Uint8Array ? modelUrl : new Uint8Array(modelUrl);
  const moved = typeof bytes === "string" ? [] : [bytes.buffer];
  try {
    const info = await remote._call("load", { modelUrl: bytes, numThreads }, moved);
    remote.numThreads = info.numThreads;
  } catch (err) {
    worker.terminate();
    throw err instanceof DecoderUnavailable ? err : new DecoderUnavailable(err.message, err);
  }
  return remote;
}

const WORKER_URL = new URL("./decoder_worker.js", import.meta.url);

function errorFrom(data) {
  if (data.name === "DecoderUnavailable") return new DecoderUnavailable(data.reason || data.message);
  const err = new Error(data.message);
  err.name = data.name;
  return err;
}

/** SamDecoder's API, run by decoder_worker.js (see loadSamDecoderInWorker). */
export class WorkerSamDecoder {
  constructor(worker) {
    this.worker = worker;
    this.numThreads = 1;
    this.inWorker = true;
    this.embedding = null;  // {prepared: Promise} of the image given last
    this.calls = new Map();
    this.nextId = 1;
    worker.onmessage = ({ data }) => {
      const call = this.calls.get(data.id);
      if (!call) return;
      this.calls.delete(data.id);
      if (data.error) call.reject(errorFrom(data.error));
      else call.resolve(data.result);
    };
    worker.onerror = (event) => {
      event.preventDefault();
      const why = `the decoder worker failed: ${event.message || "its script did not load"}`;
      this.broken = Object.assign(new DecoderUnavailable(why), { workerFailed: true });
      for (const call of this.calls.values()) call.reject(this.broken);
      this.calls.clear();
    };
  }

  _call(op, args = {}, transfer = []) {
    if (this.broken) return Promise.reject(this.broken);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  /** As SamDecoder.setEmbedding, answered as a Promise; the buffer is copied (the caller keeps
   * it, e.g. in a cache). */
  setEmbedding(embedding) {
    const buffer = embedding instanceof ArrayBuffer ? embedding.slice(0) : embedding;
    const info = this._call("setEmbedding", { buffer }, buffer instanceof ArrayBuffer ? [buffer] : []);
    const prepared = info.then(() => this._call("prepared"));
    prepared.catch(() => {});
    this.embedding = { prepared };
    return info;
  }

  /** As SamDecoder.decode (a maskInput's buffer is moved to the worker). */
  decode(points, labels, options = {}) {
    const moved = options.maskInput ? [options.maskInput.buffer] : [];
    return this._call("decode", { points, labels, options }, moved);
  }

  async release() {
    try {
      await this._call("release");
    } finally {
      this.worker.terminate();
    }
  }
}

/**
 * The decoder container (interventions/segmentation/browser.py, pack_decoder): "SAMDEC03", then
 * as uint32 LE the most points the few-token click graph is for and the byte lengths of the
 * prepare, click and clickFew ONNX graphs, then the three graphs.
 * @returns {{prepare: Uint8Array, click: Uint8Array, clickFew: Uint8Array, fewMaxPoints: number}}
 *   throws Error on a malformed container
 */
export function unpackDecoder(bytes) {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (data.length < 24) throw new Error("decoder file is shorter than its header");
  const magic = String.fromCharCode(...data.subarray(0, 8));
  if (magic !== DECODER_MAGIC) throw new Error(`not a decoder-v3 file (magic ${JSON.stringify(magic)})`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const fewMaxPoints = view.getUint32(8, true);
  const lengths = [12, 16, 20].map((at) => view.getUint32(at, true));
  const total = 24 + lengths.reduce((a, b) => a + b, 0);
  if (data.length !== total) {
    throw new Error(`decoder file has ${data.length} bytes, its header says ${total}`);
  }
  const graphs = [];
  let start = 24;
  for (const length of lengths) {
    graphs.push(data.subarray(start, start + length));
    start += length;
  }
  return { prepare: graphs[0], click: graphs[1], clickFew: graphs[2], fewMaxPoints };
}

async function fetchBytes(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

export class SamDecoder {
  constructor(ort, sessions, numThreads = 1) {
    this.ort = ort;
    this.sessions = sessions;
    this.numThreads = numThreads;
    this.embedding = null;
    this.queue = Promise.resolve();  // onnxruntime runs one session.run at a time
    const zeros = new Float32Array(LOW_RES * LOW_RES);
    this.noMask = new ort.Tensor("float32", zeros, [1, 1, LOW_RES, LOW_RES]);
    this.maskFlags = [0, 1].map((v) => new ort.Tensor("float32", Float32Array.of(v), [1]));
  }

  /**
   * Use this image's embedding for the next decodes: the server's float16 buffer (ArrayBuffer),
   * or an already parsed {features, shape, originalSize, inputSize}.
   * @returns {{shape: number[], originalSize: number[], inputSize: number[], convertMs: number}}
   */
  setEmbedding(embedding) {
    const started = performance.now();
    const parsed = embedding instanceof ArrayBuffer ? parseEmbeddingF16(embedding) : embedding;
    const { features, shape, originalSize, inputSize } = parsed;
    const count = shape.reduce((a, b) => a * b, 1);
    if (!(features instanceof Float32Array) || features.length !== count) {
      throw new Error("embedding features must be a Float32Array of prod(shape) values");
    }
    this.embedding = {
      tensor: new this.ort.Tensor("float32", features, shape),
      originalSize: originalSize.slice(),
      inputSize: inputSize.slice(),
      sizeTensor: new this.ort.Tensor("float32", Float32Array.from(originalSize), [2]),
      prepared: null,  // the prepare graph's outputs without a mask input (once per image)
    };
    // the per-image part runs now, ahead of the first click (queued like a decode)
    const emb = this.embedding;
    const prepared = this.queue.then(() => this._prepare(emb, null));
    emb.prepared = prepared;
    this.queue = prepared.catch(() => {});
    return {
      shape: shape.slice(),
      originalSize: originalSize.slice(),
      inputSize: inputSize.slice(),
      convertMs: performance.now() - started,
    };
  }

  /**
   * One prompt -> the mask the server would choose.
   * @param {Array<[number, number]>} points (x = column, y = row) in original image pixels
   * @param {Array<number>} labels 1 green (object), 0 red (background), one per point
   * @param {{maskChoice?: "first"|"best_predicted", maskInput?: Float32Array|null,
   *   fullLowRes?: boolean}} options
   *   maskInput: previous low-res logits (256*256) when the study chains them
   *   (chain_low_res_mask); the server uses its previous logits rounded to float16, so pass
   *   roundToFloat16(previous.lowResLogits) to decode what the server decodes.
   *   fullLowRes: true to get lowResLogits (needed to chain); false (the default) upscales only
   *   the image's part of SAM's padded frame, which is faster, and lowResLogits is null
   * @returns {Promise<{mask: Uint8Array, width: number, height: number, maskIndex: number,
   *   predictedIou: number, iouPredictions: Float32Array, lowResLogits: Float32Array|null,
   *   decodeMs: number}>}
   */
  decode(points, labels, options = {}) {
    const run = this.queue.then(() => this._decode(points, labels, options));
    this.queue = run.catch(() => {});
    return run;
  }

  async _decode(points, labels, { maskChoice = "first", maskInput = null, fullLowRes = false } = {}) {
    const started = performance.now();
    const emb = this.embedding;
    if (!emb) throw new Error("setEmbedding() first");
    if (!MASK_CHOICES.includes(maskChoice)) throw new Error(`unknown maskChoice ${maskChoice}`);
    if (points.length !== labels.length) throw new Error("one label per point");
    const [h, w] = emb.originalSize;
    const [hIn, wIn] = emb.inputSize;
    const n = points.length + 1;  // + SAM's padding point (0, 0) with label -1
    const coords = new Float32Array(2 * n);
    const labs = new Float32Array(n);
    for (let i = 0; i < points.length; i++) {
      const [x, y] = points[i];
      if (!(x >= 0 && x < w && y >= 0 && y < h)) {
        throw new Error(`point ${i} (${x}, ${y}) is outside the image`);
      }
      if (labels[i] !== 0 && labels[i] !== 1) throw new Error(`label ${i} must be 0 or 1`);
      // as the server: (x, y) rounded to float32, scaled in float64, stored as float32
      coords[2 * i] = Math.fround(x) * (wIn / w);
      coords[2 * i + 1] = Math.fround(y) * (hIn / h);
      labs[i] = labels[i];
    }
    labs[n - 1] = -1;
    if (maskInput && maskInput.length !== LOW_RES * LOW_RES) {
      throw new Error("maskInput must hold 256*256 logits");
    }
    const T = this.ort.Tensor;
    // the image's part once per image; with a mask input (chained studies) once per click
    const prepared = maskInput ? await this._prepare(emb, maskInput) : await emb.prepared;
    const feeds = {
      ...prepared,
      point_coords: new T("float32", coords, [1, n, 2]),
      point_labels: new T("float32", labs, [1, n]),
      orig_im_size: emb.sizeTensor,
      best_predicted: new T("float32", Float32Array.of(maskChoice === "best_predicted" ? 1 : 0), [1]),
      full_low_res: this.maskFlags[fullLowRes ? 1 : 0],
    };
    // few points: the graph that folds the image projections into the tokens (cheaper)
    const few = points.length <= this.sessions.fewMaxPoints;
    const out = await (few ? this.sessions.clickFew : this.sessions.click).run(feeds);
    const logits = out.masks.data;
    const mask = new Uint8Array(h * w);
    for (let i = 0; i < mask.length; i++) mask[i] = logits[i] > 0 ? 1 : 0;  // SAM's mask_threshold
    const iouPredictions = Float32Array.from(out.iou_predictions.data);
    const maskIndex = Number(out.mask_index.data[0]);
    const lowResLogits = fullLowRes ? Float32Array.from(out.low_res_masks.data) : null;
    for (const name of Object.keys(out)) out[name].dispose?.();
    return {
      mask,
      width: w,
      height: h,
      maskIndex,
      predictedIou: iouPredictions[maskIndex],
      iouPredictions,
      lowResLogits,
      decodeMs: performance.now() - started,
    };
  }

  async _prepare(emb, maskInput) {
    const T = this.ort.Tensor;
    const feeds = {
      image_embeddings: emb.tensor,
      mask_input: maskInput
        ? new T("float32", Float32Array.from(maskInput), [1, 1, LOW_RES, LOW_RES])
        : this.noMask,
      has_mask_input: this.maskFlags[maskInput ? 1 : 0],
    };
    return this.sessions.prepare.run(feeds);  // {keys, k_t, v_t, q_t}
  }

  /** Free the wasm sessions (the decoder is unusable afterwards). */
  async release() {
    await this.queue;
    await this.sessions.prepare.release();
    await this.sessions.click.release();
    await this.sessions.clickFew.release();
  }
}
