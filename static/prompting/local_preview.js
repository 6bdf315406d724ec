// The participant page's local preview of a click (docs/browser_decoder.md, "The page"):
// SAM's decoder in the browser on the image's float16 embedding, shown at once, while the
// server's answer (the record) is on its way. Every failure means "no preview": decodeClick
// answers null and the page uses the server path alone.
//
//   import { createLocalPreview } from "/static/prompting/local_preview.js";
//   const preview = createLocalPreview(assignmentId, state.decoder);  // GET assignments/<id>
//   const local = await preview.decodeClick(points, labels);          // null: no preview
//   if (local) drawMask(local.mask, local.width, local.height);
//   const shown = await preview.shownPayload(local, performance.now()); // after the draw
//   // POST assignments/<id>/events/<client_event_id>/shown with it once the event is answered
//
// Decoding ahead: preview.decodeAhead(points, labels) decodes the prompt a click is about to give
// (the pointer rests on the image, or is pressed and not yet released) and shows nothing; a
// decodeClick of the same prompt, on the same image and chained mask, then takes that result
// instead of decoding again, so the mask is drawn as soon as the click lands.

const DECODER_MODULE = new URL("./sam_decoder.js", import.meta.url).href;

/** COCO compressed RLE of a row-major 0/1 mask (pycocotools' string form, column-major runs
 * starting with background), as interventions.metrics.rle_encode writes it. */
export function encodeRle(mask, width, height) {
  const runs = [];
  let value = 0, run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] !== 0 ? 1 : 0;
      if (v !== value) { runs.push(run); run = 0; value = v; }
      run++;
    }
  }
  runs.push(run);
  let counts = "";
  for (let i = 0; i < runs.length; i++) {
    let x = runs[i];
    if (i > 2) x -= runs[i - 2];
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x >>= 5;
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      counts += String.fromCharCode(c + 48);
    }
  }
  return { size: [height, width], counts };
}

/** The embedding URL of another assignment of the same study (the block's URL, re-pointed). */
function embeddingUrlOf(block, assignmentId) {
  return block.embedding_url.replace(/assignments\/\d+\//, `assignments/${assignmentId}/`);
}

class LocalPreview {
  /**
   * @param {number} assignmentId the assignment on screen
   * @param {object|null} block the `decoder` block of GET /api/v1/assignments/<id>
   * @param {{fetchInit?: RequestInit, numThreads?: number, decoderModule?: string,
   *   inWorker?: boolean}} options
   *   fetchInit: extra fetch options (e.g. an Authorization header); numThreads: wasm threads
   *   where the page is cross-origin isolated; inWorker: false decodes on the main thread
   *   (by default a dedicated worker does, or the main thread where workers cannot run it)
   */
  constructor(assignmentId, block, options = {}) {
    this.block = block || null;
    this.options = options;
    this.assignmentId = assignmentId;
    this.reason = null;
    this.decoder = null;
    this.sd = null;  // the lazily imported sam_decoder.js
    this.embeddings = new Map();  // assignment id -> Promise<ArrayBuffer>
    this.embeddingFor = null;  // the assignment whose embedding the decoder holds
    this.prefetched = null;  // the assignment whose embedding prefetch() fetched ahead
    this.lastLowRes = null;  // chained low-res logits (study option chain_low_res_mask)
    this.hoverTicket = 0;  // the latest hover wins; older ones answer null
    this.hoverBusy = null;
    this.guess = null;  // the latest decode ahead of a click: {key, chained, run}
    this.wanted = null;  // a decode ahead waiting for the running one: {key, points, labels}
    this.guessing = false;  // a decode ahead is running
    this.ready = this._load();  // resolves true (previews possible) or false
  }

  get available() {
    return this.decoder !== null && this.reason === null;
  }

  /** WebAssembly threads the decoder runs on (0 before it loads). */
  get threads() {
    return this.decoder ? this.decoder.numThreads : 0;
  }

  /** Where the decoder runs: "worker", "main thread", or null before it loads. */
  get where() {
    if (!this.decoder) return null;
    return this.decoder.inWorker ? "worker" : "main thread";
  }

  async _load() {
    const block = this.block;
    if (!block || !block.available) {
      this.reason = (block && block.reason) || "the study has no browser decoder";
      return false;
    }
    if (typeof WebAssembly !== "object") {
      this.reason = "this browser has no WebAssembly";
      return false;
    }
    try {
      this.sd = await import(this.options.decoderModule || DECODER_MODULE);
      const why = this.sd.webAssemblyUnavailableReason();
      if (why) throw new Error(why);
      const model = await this._fetch(block.model_url);
      const opts = { modelUrl: new Uint8Array(model), numThreads: this.options.numThreads || 1 };
      if (this.options.inWorker === false) {
        this.decoder = await this.sd.loadSamDecoder(opts);
      } else {
        try {
          // off the main thread: a decode never delays the page's input, drawing or answers
          this.decoder = await this.sd.loadSamDecoderInWorker({ ...opts, modelUrl: opts.modelUrl.slice() });
        } catch (err) {
          if (!err.workerFailed) throw err;
          this.decoder = await this.sd.loadSamDecoder(opts);  // no module workers here
        }
      }
      await this._useEmbedding(this.assignmentId);
      return true;
    } catch (err) {
      this.reason = (err && (err.reason || err.message)) || String(err);
      this.decoder = null;
      return false;
    }
  }

  async _fetch(url) {
    const init = { credentials: "same-origin", ...(this.options.fetchInit || {}) };
    const response = await fetch(url, init);
    if (!response.ok) throw new Error(`GET ${url} answered ${response.status}`);
    return response.arrayBuffer();
  }

  _embedding(assignmentId) {
    let pending = this.embeddings.get(assignmentId);
    if (!pending) {
      pending = this._fetch(embeddingUrlOf(this.block, assignmentId));
      pending.catch(() => this.embeddings.delete(assignmentId));  // a later call retries
      this.embeddings.set(assignmentId, pending);
    }
    return pending;
  }

  async _useEmbedding(assignmentId) {
    const buffer = await this._embedding(assignmentId);
    if (this.embeddingFor !== assignmentId) {
      this.embeddingFor = assignmentId;  // decodes asked from now on queue behind it
      this.lastLowRes = null;
      try {
        await this.decoder.setEmbedding(buffer);  // a Promise when the decoder is in a worker
      } catch (err) {
        this.embeddingFor = null;
        throw err;
      }
    }
  }

  /** Fetch another assignment's embedding now (e.g. the next image), kept for setAssignment. */
  prefetch(assignmentId) {
    if (!this.block || !this.block.available) return Promise.resolve(false);
    this.prefetched = assignmentId;
    return this._embedding(assignmentId).then(() => true, () => false);
  }

  /** The page moved to another assignment of the same study. */
  async setAssignment(assignmentId) {
    this.assignmentId = assignmentId;
    if (!(await this.ready)) return false;
    for (const id of this.embeddings.keys()) {  // keep the new image's and the next one's only
      if (id !== assignmentId && id !== this.prefetched) this.embeddings.delete(id);
    }
    try {
      await this._useEmbedding(assignmentId);
      return true;
    } catch (err) {
      this.reason = `the embedding did not load: ${err && err.message}`;
      return false;
    }
  }

  /** Forget the chained low-res mask (call when the server's answer starts a new round). */
  resetChain() {
    this.lastLowRes = null;
  }

  /**
   * The mask the server would answer for this prompt, decoded here; null when no preview can
   * be made (no decoder, a failed decode).
   * @param {Array<[number, number]>} points (x, y) in image pixels; labels 1 green / 0 red
   * @returns {Promise<{mask: Uint8Array, width: number, height: number, latencyMs: number,
   *   decodeMs: number, maskIndex: number, predictedIou: number, clickedAt: number}|null>}
   *   (the RLE and hash the log wants are made by shownPayload, after the mask is drawn)
   */
  async decodeClick(points, labels, { clickedAt = performance.now(), hover = false } = {}) {
    if (!(await this.ready)) return null;
    try {
      let out = hover ? null : await this._takeGuess(points, labels);
      const ahead = out !== null;
      if (!ahead) {
        await this._useEmbedding(this.assignmentId);
        out = await (hover ? this._hoverDecode(points, labels) : this._decode(points, labels));
      }
      if (this.block.chain_low_res_mask && !hover) this.lastLowRes = out.lowResLogits;
      return {
        mask: out.mask,
        width: out.width,
        height: out.height,
        latencyMs: performance.now() - clickedAt,
        decodeMs: out.decodeMs,
        maskIndex: out.maskIndex,
        predictedIou: out.predictedIou,
        clickedAt,
        ahead,  // decoded before the click (decodeMs is then not part of latencyMs)
      };
    } catch (err) {
      this.lastError = err;
      return null;
    }
  }

  /** The decoder's answer for this prompt on the current image and chained mask. */
  _decode(points, labels) {
    const chain = this.block.chain_low_res_mask && this.lastLowRes;
    return this.decoder.decode(points, labels, {
      maskChoice: this.block.mask_choice,
      maskInput: chain ? this.sd.roundToFloat16(this.lastLowRes) : null,
      fullLowRes: Boolean(this.block.chain_low_res_mask),  // else only the image is upscaled
    });
  }

  /** A hover's decode, kept as the decode ahead of a green click at the cursor (the hover shows
   * that mask already: the click then draws it at once). */
  _hoverDecode(points, labels) {
    const key = this._key(points, labels);
    const kept = this.guess;
    if (kept && kept.key === key && kept.chained === this.lastLowRes) return kept.run;
    const run = this._decode(points, labels);
    const guess = { key, chained: this.lastLowRes, run };
    this.guess = guess;
    run.catch(() => { if (this.guess === guess) this.guess = null; });
    return run;
  }

  /** What identifies a decode: the image, the points and labels (the chained mask is compared
   * by identity beside it). */
  _key(points, labels) {
    return JSON.stringify([this.assignmentId, points, labels]);
  }

  /**
   * Decode ahead of a click: the prompt `points` / `labels` (the current points and the one a
   * click here would add) is decoded now and nothing is shown; decodeClick of the same prompt
   * takes the result. One decode ahead runs at a time and only the latest request waits
   * behind it, so a moving pointer never builds a queue. Answers false where nothing is
   * decoded (no decoder, the image's embedding not in use yet).
   */
  decodeAhead(points, labels) {
    if (!this.available || this.embeddingFor !== this.assignmentId) return false;
    const key = this._key(points, labels);
    if (this.guess && this.guess.key === key && this.guess.chained === this.lastLowRes) return true;
    this.wanted = { key, points: points.map((p) => [...p]), labels: [...labels] };
    this._startGuess();
    return true;
  }

  _startGuess() {
    if (this.guessing || !this.wanted) return;
    const { key, points, labels } = this.wanted;
    this.wanted = null;
    this.guessing = true;
    const run = this._decode(points, labels);
    const guess = { key, chained: this.lastLowRes, run };
    this.guess = guess;
    run.catch(() => { if (this.guess === guess) this.guess = null; }).finally(() => {
      this.guessing = false;
      this._startGuess();
    });
  }

  /** The decode ahead for this prompt (awaited if still running), taken once; null if there is
   * none. A request still waiting is dropped (for this prompt too): the click decodes next. */
  async _takeGuess(points, labels) {
    const key = this._key(points, labels);
    this.wanted = null;
    const guess = this.guess;
    if (!guess || guess.key !== key || guess.chained !== this.lastLowRes) return null;
    this.guess = null;
    return guess.run.catch(() => null);
  }

  /**
   * The hover preview (study option hover_preview): the mask the prompt would give with a green
   * point at `cursor` ([x, y]) added, without touching the chained mask. Only the latest call
   * is decoded: one made while a decode runs waits, and answers null if a newer one came.
   * null too when the study has no hover preview. A green click at the cursor takes this
   * decode (as a decode ahead) instead of decoding again.
   */
  async hover(points, labels, cursor) {
    if (!this.block || !this.block.hover_preview) return null;
    const ticket = ++this.hoverTicket;
    while (this.hoverBusy) await this.hoverBusy;
    if (ticket !== this.hoverTicket) return null;
    const run = this.decodeClick([...points, cursor], [...labels, 1], { hover: true });
    this.hoverBusy = run.then(() => { this.hoverBusy = null; });
    const out = await run;
    return ticket === this.hoverTicket ? out : null;
  }

  /**
   * The `shown` object for a preview that was displayed ({mask_rle, sha256, latency_ms, source}):
   * null without one, or where crypto.subtle is missing (an insecure origin: no sha256).
   * `drawnAt` (performance.now() once the mask is on screen) makes latency_ms click -> drawn;
   * without it, click -> decoded. Async: the RLE and the hash are made here, after the draw.
   */
  async shownPayload(result, drawnAt = null) {
    if (!result) return null;
    const sha256 = await this.sd.maskSha256(result.mask);
    if (!sha256) return null;
    const latency = drawnAt === null ? result.latencyMs : drawnAt - result.clickedAt;
    return {
      mask_rle: encodeRle(result.mask, result.width, result.height),
      sha256,
      latency_ms: Math.max(0, Math.round(latency * 1000) / 1000),
      source: "local",
    };
  }

  release() {
    if (this.decoder) this.decoder.release();
    this.decoder = null;
    this.embeddings.clear();
  }
}

/** A LocalPreview of this assignment (see the top of this file); never throws. */
export function createLocalPreview(assignmentId, block, options = {}) {
  return new LocalPreview(assignmentId, block, options);
}
