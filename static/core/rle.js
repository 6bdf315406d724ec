// COCO compressed RLE (pycocotools' string form) -> Uint8Array mask in row-major (y * w + x) order.
export function decodeCounts(counts) {
  const out = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (out.length > 2) x += out[out.length - 2];
    out.push(x);
  }
  return out;
}

export function decodeRle(rle) {
  const [h, w] = rle.size;
  const runs = typeof rle.counts === "string" ? decodeCounts(rle.counts) : rle.counts;
  const colMajor = new Uint8Array(h * w);
  let pos = 0, val = 0;
  for (const run of runs) { if (val) colMajor.fill(1, pos, pos + run); pos += run; val ^= 1; }
  const mask = new Uint8Array(h * w);  // COCO RLE is column-major (Fortran order)
  for (let x = 0; x < w; x++) for (let y = 0; y < h; y++) mask[y * w + x] = colMajor[x * h + y];
  return { mask, width: w, height: h };
}
