// The participants' workspace shared by the study pages: an image that fills the space the
// window gives it, zoom (wheel, pinch, + / - / 0 keys) and pan (drag with the middle button or
// Alt, two fingers; the view follows the keyboard cursor), the model's mask drawn on the image
// (fill or outline, with an opacity), point markers that differ in shape (+ green, - red) as well
// as colour, pointer input (mouse, touch, pen) and a keyboard cursor (`KeyCursor`). Coordinates stay exact in image pixels at every zoom:
// `pixelAt(clientX, clientY)` inverts exactly the transform `draw` uses.
import { decodeRle } from "./rle.js";

export const COLORS = { green: "#0a8f1c", red: "#d4141f", gt: [255, 196, 0] };

/** A mask (Uint8Array, row-major) as an image-sized canvas: filled or outlined, in `rgb`. */
export function maskCanvas(mask, width, height, rgb, style = "fill") {
  const layer = document.createElement("canvas");
  layer.width = width; layer.height = height;
  const ctx = layer.getContext("2d");
  const data = ctx.createImageData(width, height);
  const on = (x, y) => x >= 0 && y >= 0 && x < width && y < height && mask[y * width + x];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!mask[i]) continue;
      const edge = !on(x - 1, y) || !on(x + 1, y) || !on(x, y - 1) || !on(x, y + 1);
      if (style === "outline" && !edge) continue;
      const o = i * 4;
      // the edge is drawn darker in fill mode so the boundary shows on any image
      const k = style === "fill" && edge ? 0.55 : 1;
      data.data[o] = rgb[0] * k; data.data[o + 1] = rgb[1] * k; data.data[o + 2] = rgb[2] * k; data.data[o + 3] = 255;
    }
  }
  ctx.putImageData(data, 0, 0);
  return layer;
}

/** A colour that stands out against the image under the mask: the hue opposite its mean. */
export function contrastColor(image, mask, width, height) {
  const c = document.createElement("canvas");
  c.width = width; c.height = height;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(image, 0, 0, width, height);
  const px = ctx.getImageData(0, 0, width, height).data;
  let r = 0, g = 0, b = 0, n = 0;
  for (let i = 0; i < mask.length; i += 7) {
    if (!mask[i]) continue;
    r += px[i * 4]; g += px[i * 4 + 1]; b += px[i * 4 + 2]; n++;
  }
  if (!n) return [30, 144, 255];
  const candidates = [[255, 0, 200], [0, 220, 255], [255, 200, 0], [30, 90, 255], [0, 230, 90]];
  const dist = (c2) => (c2[0] - r / n) ** 2 + (c2[1] - g / n) ** 2 + (c2[2] - b / n) ** 2;
  return candidates.reduce((best, c2) => (dist(c2) > dist(best) ? c2 : best));
}

export function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${url}`));
    img.src = url;
  });
}

/** The mask of a COCO RLE (or a {mask, width, height} already decoded). */
export function toMask(maskOrRle) {
  if (maskOrRle && maskOrRle.mask) return maskOrRle;
  return decodeRle(maskOrRle);
}

/** Draw a point marker: a disc with a + (green, on the object) or a - (red, not the object).
 * `hollow`: a ring with the sign's strokes outside it, so the pixels under the point stay
 * visible (small objects). A pending point (not yet confirmed) is a dashed ring in the mode's
 * colour over a solid black-and-white one, visible on any image. */
export function marker(ctx, cx, cy, radius, mode, { pending = false, removing = false, hollow = false } = {}) {
  const dpr = window.devicePixelRatio || 1;
  ctx.save();
  ctx.beginPath(); ctx.arc(cx, cy, radius, 0, 2 * Math.PI);
  if (pending) {
    ctx.lineWidth = 6 * dpr; ctx.strokeStyle = "#000"; ctx.stroke();
    ctx.lineWidth = 4 * dpr; ctx.strokeStyle = "#fff"; ctx.stroke();
    ctx.setLineDash([4 * dpr, 3 * dpr]); ctx.lineWidth = 2.5 * dpr;
    ctx.strokeStyle = removing ? "#333" : COLORS[mode]; ctx.stroke();
    ctx.restore();
    return;
  }
  if (hollow) {
    ctx.lineWidth = 4 * dpr; ctx.strokeStyle = "#fff"; ctx.stroke();
    ctx.lineWidth = 2 * dpr; ctx.strokeStyle = COLORS[mode]; ctx.stroke();
    const a = radius + 2 * dpr, b = radius + 7 * dpr;  // the sign's arms, outside the ring
    const arms = mode === "green" ? [[1, 0], [-1, 0], [0, 1], [0, -1]] : [[1, 0], [-1, 0]];
    ctx.beginPath();
    for (const [dx, dy] of arms) { ctx.moveTo(cx + dx * a, cy + dy * a); ctx.lineTo(cx + dx * b, cy + dy * b); }
    ctx.lineWidth = 4.5 * dpr; ctx.strokeStyle = "#fff"; ctx.stroke();
    ctx.lineWidth = 2.5 * dpr; ctx.strokeStyle = COLORS[mode]; ctx.stroke();
    ctx.restore();
    return;
  }
  ctx.fillStyle = COLORS[mode]; ctx.fill();
  ctx.lineWidth = 2; ctx.strokeStyle = "#fff"; ctx.stroke();
  ctx.beginPath();
  const a = radius * 0.55;
  ctx.moveTo(cx - a, cy); ctx.lineTo(cx + a, cy);
  if (mode === "green") { ctx.moveTo(cx, cy - a); ctx.lineTo(cx, cy + a); }
  ctx.lineWidth = Math.max(2, radius / 3.5); ctx.strokeStyle = "#fff"; ctx.stroke();
  ctx.restore();
}

/**
 * A canvas showing one image at "fit" size inside its stage, with zoom and pan.
 * The canvas element keeps the image's aspect ratio at the largest size the stage allows, so
 * at zoom 1 the canvas box is exactly the image; zooming magnifies inside that box.
 */
export class ZoomView {
  constructor(canvas, width, height, { interactive = false, onChange = () => {} } = {}) {
    this.canvas = canvas;
    this.setSize(width, height);
    this.ctx = canvas.getContext("2d");
    this.onChange = onChange;
    this.pointers = new Map();
    if (interactive) this.listen();
  }

  /** A new image of this size: zoom and pan start over. */
  setSize(width, height) {
    this.width = width; this.height = height;
    this.zoom = 1; this.cx = width / 2; this.cy = height / 2;  // image point at the box centre
  }

  /** Fit the canvas into `maxW` x `maxH` CSS pixels (keeps the aspect ratio). */
  fit(maxW, maxH) {
    const scale = Math.max(0.05, Math.min(maxW / this.width, maxH / this.height));
    const cssW = Math.floor(this.width * scale), cssH = Math.floor(this.height * scale);
    const dpr = window.devicePixelRatio || 1;
    this.canvas.style.width = `${cssW}px`; this.canvas.style.height = `${cssH}px`;
    this.canvas.width = Math.round(cssW * dpr); this.canvas.height = Math.round(cssH * dpr);
    this.clamp();
  }

  /** Canvas backing pixels per image pixel. */
  get scale() { return (this.canvas.width / this.width) * this.zoom; }

  clamp() {
    this.zoom = Math.min(Math.max(this.zoom, 1), 16);
    const hw = this.width / (2 * this.zoom), hh = this.height / (2 * this.zoom);
    this.cx = Math.min(Math.max(this.cx, hw), this.width - hw);
    this.cy = Math.min(Math.max(this.cy, hh), this.height - hh);
  }

  /** Image coordinates (float) of a backing-canvas point and back. */
  toImage(px, py) {
    const s = this.scale;
    return [this.cx + (px - this.canvas.width / 2) / s, this.cy + (py - this.canvas.height / 2) / s];
  }

  toCanvas(ix, iy) {
    const s = this.scale;
    return [(ix - this.cx) * s + this.canvas.width / 2, (iy - this.cy) * s + this.canvas.height / 2];
  }

  /** Image pixel (integer column, row) under a client point, clamped to the image. */
  pixelAt(clientX, clientY) {
    const rect = this.canvas.getBoundingClientRect();
    const px = ((clientX - rect.left) / rect.width) * this.canvas.width;
    const py = ((clientY - rect.top) / rect.height) * this.canvas.height;
    const [x, y] = this.toImage(px, py);
    return [Math.min(Math.max(Math.floor(x), 0), this.width - 1), Math.min(Math.max(Math.floor(y), 0), this.height - 1)];
  }

  zoomAt(factor, clientX, clientY) {
    const rect = this.canvas.getBoundingClientRect();
    const px = clientX === undefined ? this.canvas.width / 2 : ((clientX - rect.left) / rect.width) * this.canvas.width;
    const py = clientY === undefined ? this.canvas.height / 2 : ((clientY - rect.top) / rect.height) * this.canvas.height;
    const [ix, iy] = this.toImage(px, py);
    this.zoom *= factor;
    this.clamp();
    // keep the image point under the pointer where it was
    const s = this.scale;
    this.cx = ix - (px - this.canvas.width / 2) / s;
    this.cy = iy - (py - this.canvas.height / 2) / s;
    this.clamp();
    this.onChange();
  }

  panBy(dxCss, dyCss) {
    const rect = this.canvas.getBoundingClientRect();
    const k = this.canvas.width / rect.width / this.scale;
    this.cx -= dxCss * k; this.cy -= dyCss * k;
    this.clamp();
    this.onChange();
  }

  reset() { this.zoom = 1; this.cx = this.width / 2; this.cy = this.height / 2; this.onChange(); }

  /** CSS pixels per image pixel at the current zoom. */
  cssPerPixel() { return (this.canvas.getBoundingClientRect().width / this.width) * this.zoom; }

  /** Pan (without a redraw) so that image pixel (x, y) is in view with a margin: the view
   * follows the keyboard cursor when zoomed in. */
  follow(x, y) {
    const hw = this.width / (2 * this.zoom), hh = this.height / (2 * this.zoom);
    const mx = Math.min(hw * 0.2, 24 / this.zoom), my = Math.min(hh * 0.2, 24 / this.zoom);
    if (x + 0.5 < this.cx - hw + mx) this.cx = x + 0.5 + hw - mx;
    else if (x + 0.5 > this.cx + hw - mx) this.cx = x + 0.5 - hw + mx;
    if (y + 0.5 < this.cy - hh + my) this.cy = y + 0.5 + hh - my;
    else if (y + 0.5 > this.cy + hh - my) this.cy = y + 0.5 - hh + my;
    this.clamp();
  }

  listen() {
    const c = this.canvas;
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      this.zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX, e.clientY);
    }, { passive: false });
    c.addEventListener("pointerdown", (e) => {
      this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (e.button === 1 || e.altKey || this.pointers.size > 1) { this.panning = true; e.preventDefault(); }
    });
    c.addEventListener("pointermove", (e) => {
      const last = this.pointers.get(e.pointerId);
      if (!last) return;
      if (this.pointers.size === 2) {  // pinch: zoom by the change in finger distance, pan by the midpoint
        const [a, b] = [...this.pointers.values()];
        const before = Math.hypot(a.x - b.x, a.y - b.y);
        this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
        const [a2, b2] = [...this.pointers.values()];
        const after = Math.hypot(a2.x - b2.x, a2.y - b2.y);
        const mx = (a2.x + b2.x) / 2, my = (a2.y + b2.y) / 2;
        if (before > 0) this.zoomAt(after / before, mx, my);
        this.panBy((e.clientX - last.x) / 2, (e.clientY - last.y) / 2);
        return;
      }
      this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (this.panning) this.panBy(e.clientX - last.x, e.clientY - last.y);
    });
    const end = (e) => {
      this.pointers.delete(e.pointerId);
      if (!this.pointers.size) setTimeout(() => { this.panning = false; }, 0);
    };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
  }

  /** Draw the image, optional dimming, layers (with opacity) and point markers. */
  draw({ image, dim = 0, layers = [], opacity = 1, green = [], red = [], pending = [], radius = 7, hollow = false }) {
    const { ctx, canvas } = this;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const s = this.scale;
    const [ox, oy] = this.toCanvas(0, 0);
    ctx.imageSmoothingEnabled = s < 1;
    if (image) ctx.drawImage(image, ox, oy, this.width * s, this.height * s);
    if (dim) { ctx.fillStyle = `rgba(0,0,0,${dim})`; ctx.fillRect(0, 0, canvas.width, canvas.height); }
    ctx.globalAlpha = opacity;
    for (const layer of layers) if (layer) ctx.drawImage(layer, ox, oy, this.width * s, this.height * s);
    ctx.globalAlpha = 1;
    const r = radius * dpr;
    const at = (x, y) => this.toCanvas(x + 0.5, y + 0.5);
    for (const [x, y] of green) marker(ctx, ...at(x, y), r, "green", { hollow });
    for (const [x, y] of red) marker(ctx, ...at(x, y), r, "red", { hollow });
    for (const p of pending) marker(ctx, ...at(p.x, p.y), r + 2 * dpr, p.mode, { pending: true, removing: p.action === "remove" });
  }
}

// ---------- the keyboard (WCAG 2.1.1: every function works from the keyboard) ----------

/** True when the key event's target is a control (button, field, slider, radio, select): the
 * control then takes its own keys (Enter and Space press a button) and no page shortcut fires. */
export function onControl(event) {
  const t = event.target;
  return t instanceof Element && t.closest("button, input, select, textarea, [contenteditable=''], [contenteditable=true], a[href], summary") !== null;
}

/** The direction [dx, dy] of an arrow key, or null for any other key. */
export function arrowOf(key) {
  return { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[key] || null;
}

/** The keyboard cursor on an image: image pixel (x, y), moved by the arrow keys (a coarse step
 * of about 16 CSS pixels, one image pixel with Shift), drawn only once the keys have moved or
 * used it (`shown`), and said through the page's aria-live region. */
export class KeyCursor {
  constructor() { this.place(0, 0); }

  /** A new image: the cursor starts at its centre, hidden. */
  reset(width, height) { this.width = width; this.height = height; this.place(Math.floor(width / 2), Math.floor(height / 2)); this.shown = false; }

  place(x, y) {
    this.x = Math.min(Math.max(Math.round(x), 0), Math.max((this.width || 1) - 1, 0));
    this.y = Math.min(Math.max(Math.round(y), 0), Math.max((this.height || 1) - 1, 0));
  }

  /** Move by an arrow's direction; the view follows. Returns the new [x, y]. */
  move([dx, dy], fine, view) {
    const step = fine ? 1 : Math.max(1, Math.round(16 / view.cssPerPixel()));
    this.place(this.x + dx * step, this.y + dy * step);
    this.shown = true;
    view.follow(this.x, this.y);
    return [this.x, this.y];
  }

  get point() { return [this.x, this.y]; }

  /** What a screen reader hears of the cursor's place. */
  spoken() { return `Cursor at x ${this.x}, y ${this.y} (image ${this.width} by ${this.height}).`; }

  /** Draw the cursor on a view (after its `draw`): a cross-hair ring, black inside white so it
   * shows on any image, in `color` at the centre. */
  draw(view, color = "#ffbf47") {
    if (!this.shown) return;
    const ctx = view.ctx, dpr = window.devicePixelRatio || 1;
    const [cx, cy] = view.toCanvas(this.x + 0.5, this.y + 0.5);
    const r = 10 * dpr, gap = 4 * dpr, arm = 16 * dpr;
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    const path = () => {
      ctx.beginPath(); ctx.arc(cx, cy, r, 0, 2 * Math.PI);
      ctx.moveTo(cx - arm, cy); ctx.lineTo(cx - gap, cy); ctx.moveTo(cx + gap, cy); ctx.lineTo(cx + arm, cy);
      ctx.moveTo(cx, cy - arm); ctx.lineTo(cx, cy - gap); ctx.moveTo(cx, cy + gap); ctx.lineTo(cx, cy + arm);
    };
    path(); ctx.lineWidth = 4 * dpr; ctx.strokeStyle = "#fff"; ctx.stroke();
    path(); ctx.lineWidth = 2 * dpr; ctx.strokeStyle = "#000"; ctx.stroke();
    ctx.beginPath(); ctx.arc(cx, cy, 1.5 * dpr, 0, 2 * Math.PI); ctx.fillStyle = color; ctx.fill();
    ctx.restore();
  }
}

/** The participant's assignments in the order they are worked: the practice one first. */
export function workOrder(assignments) {
  return assignments.slice().sort((a, b) => (b.practice ? 1 : 0) - (a.practice ? 1 : 0) || a.order - b.order);
}

export const PRACTICE_TEXT = "Practice image — not part of the study's data.";

/** What the status line says of an assignment: "Practice" or "Image k of N" (N real images,
 * the practice one never counted). */
export function progressLabel(assignments, assignment) {
  if (assignment.practice) return { short: "Practice image", spoken: "Practice image, not part of the study's data." };
  const real = assignments.filter((a) => !a.practice);
  const text = `Image ${real.indexOf(assignment) + 1} of ${real.length}`;
  return { short: text, spoken: `${text}.` };
}

/** Focus an element without scrolling the page, then bring it fully into view if it is not. */
export function focusIntoView(el) {
  el.focus({ preventScroll: true });
  const r = el.getBoundingClientRect();
  if (r.top < 0 || r.bottom > window.innerHeight) el.scrollIntoView({ block: "nearest" });
}

/** Say `text` to screen readers through an aria-live region (re-set so repeats are read). */
export function announce(region, text) {
  region.textContent = "";
  requestAnimationFrame(() => { region.textContent = text; });
}

/** Send the survey dialog's answer for an assignment; true once it is saved. The dialog's
 * buttons are disabled while it is sent, and the dialog closes either way (the page offers a
 * retry when it was not saved). */
export async function saveSurveyAnswer(api, dialog, assignmentId, answer, question) {
  dialog.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  try {
    await api.post(`assignments/${assignmentId}/survey`, { answers: { answer, question } });
    return true;
  } catch (err) {
    return false;
  } finally {
    dialog.close();
  }
}
