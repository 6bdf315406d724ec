// The browser SAM decoder (sam_decoder.js) in a dedicated worker, so that a decode never holds
// the page's main thread: clicks, drawing and the server's answers go on while it runs. The page
// talks to it through loadSamDecoderInWorker (sam_decoder.js), which keeps SamDecoder's API.
//
// Messages in: {id, op, args}; out: {id, result} or {id, error: {name, message, reason}}.
//   load {modelUrl (URL or bytes), numThreads}     -> {numThreads}
//   setEmbedding {buffer}                          -> {shape, originalSize, inputSize, convertMs}
//   prepared {}                                    -> null once the image's prepare graph ran
//   decode {points, labels, options}               -> SamDecoder.decode's result (buffers moved)
//   release {}                                     -> null

import { loadSamDecoder } from "./sam_decoder.js";

let decoder = null;

function needDecoder() {
  if (!decoder) throw new Error("the decoder is not loaded");
  return decoder;
}

const OPS = {
  async load({ modelUrl, numThreads }) {
    decoder = await loadSamDecoder({ modelUrl, numThreads });
    return { result: { numThreads: decoder.numThreads } };
  },
  async setEmbedding({ buffer }) {
    return { result: needDecoder().setEmbedding(buffer) };
  },
  async prepared() {
    await needDecoder().embedding.prepared;
    return { result: null };
  },
  async decode({ points, labels, options }) {
    const r = await needDecoder().decode(points, labels, options);
    const moved = [r.mask.buffer, r.iouPredictions.buffer];
    if (r.lowResLogits) moved.push(r.lowResLogits.buffer);
    return { result: r, transfer: moved };
  },
  async release() {
    if (decoder) await decoder.release();
    decoder = null;
    return { result: null };
  },
};

self.onmessage = async ({ data }) => {
  const { id, op, args } = data || {};
  try {
    if (!Object.hasOwn(OPS, op)) throw new Error(`unknown decoder worker operation ${op}`);
    const { result, transfer = [] } = await OPS[op](args || {});
    self.postMessage({ id, result }, transfer);
  } catch (err) {
    const error = { name: (err && err.name) || "Error", message: (err && err.message) || String(err) };
    if (err && err.reason) error.reason = err.reason;
    self.postMessage({ id, error });
  }
};
