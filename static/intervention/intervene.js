// The intervention annotation page (docs/design.md "Intervention protocol"). The participant paints
// a region (brush with a radius, rectangle, polygon, eraser), picks delete or insert, and
// applies: the page posts one trial (region as COCO RLE at the image's size) and shows the
// model's new top-5, the change of the target class's probability and whether the prediction
// flipped. Undo takes back the last paint step or the last apply (the trial stays logged: the
// log is the server's, undo only changes what the page shows and the region being edited).
// Trials are sent one at a time in `seq` order and retried with the same client_event_id; a
// conflict re-synchronises from GET /api/v1/assignments/<id>, which also restores the last
// result after a reload. The image lives in the shared workspace (static/core/workspace.js):
// it fills the window, zooms and pans, takes mouse, touch and pen; the keys are the prompting
// page's map (`?` shows it; x is the rectangle). The keyboard paints too: the arrows move a
// cursor, Enter starts and ends a brush stroke or a rectangle, or places a polygon's corner.
import { Api, ApiFailure } from "../core/api.js";
import { decodeRle } from "../core/rle.js";
import {
  KeyCursor, PRACTICE_TEXT, ZoomView, announce, arrowOf, focusIntoView, loadImage, onControl, progressLabel,
  saveSurveyAnswer, workOrder,
} from "../core/workspace.js";

const $ = (id) => document.getElementById(id);
const app = $("app");
const config = JSON.parse($("intervene-config").textContent);
const ui = {
  progress: $("progress"), goal: $("goal"), pending: $("pending"), banner: $("banner"), error: $("error"),
  errorText: $("error-text"), retry: $("retry"), workspace: $("workspace"), area: $("area"), apply: $("apply"),
  undo: $("undo"), finish: $("finish"), survey: $("survey"), radius: $("radius"), radiusValue: $("radius-value"),
  substrate: $("substrate"), flip: $("flip"), top5: $("top5").querySelector("tbody"), history: $("history"),
  trialCount: $("trial-count"), toolHelp: $("tool-help"), seenNote: $("seen-note"),
  stage: $("stage"), confirm: $("confirm"), help: $("help"), announce: $("announce"), loading: $("loading"),
  loadingText: $("loading-text"), paint: $("canvas-paint"),
};
const views = {};
const api = new Api({ onRetry: (attempt, total) => showPending(`Connection problem: trying again (${attempt} of ${total})…`) });

const GOALS = {
  flip: "Goal: find the smallest region whose deletion changes the model's prediction.",
  restore: "Goal: find the smallest region that, inserted alone, makes the model predict the target.",
  explore: "Goal: explore freely how deleting and inserting regions changes the prediction.",
};
const SUBSTRATE_TEXT = {  // what covers a deleted region (the study's substrate), in plain words
  zero: "Deleted parts become plain grey", blur: "Deleted parts become blurred",
  mean: "Deleted parts become the image's mean colour", noise: "Deleted parts become random noise",
};
const TOOL_HELP = {
  brush: "Brush: drag to paint. Change the radius with the slider. Keyboard: Enter puts the brush down, the arrows paint, Enter lifts it.",
  rect: "Rectangle: drag from one corner to the opposite corner. Keyboard: Enter at one corner, the arrows, Enter at the opposite corner.",
  polygon: "Polygon: click the corners; click the first corner again, double-click or press Enter to close (Esc cancels). Keyboard: Enter places a corner at the cursor, Shift+Enter closes.",

  eraser: "Eraser: drag to take pixels out of the region. Keyboard: Enter puts the eraser down, the arrows erase, Enter lifts it.",
};

const s = {
  assignments: [], index: 0, assignment: null, info: null, image: null, gtLayer: null, overlayImg: null,
  width: 0, height: 0, scale: 1, region: null, tool: "brush", drag: null, polygon: [],
  undo: [], result: null, trials: [], seq: 0, sending: false, finished: false, busy: false,
  cursor: new KeyCursor(), pen: null, inputs: new Set(), polygonInputs: new Set(),
};

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function showPending(text) { ui.pending.textContent = text; ui.pending.dataset.on = "1"; app.dataset.busy = "1"; }
function hidePending() { ui.pending.textContent = ""; ui.pending.dataset.on = "0"; app.dataset.busy = "0"; }
function showBanner(text, kind = "info") { ui.banner.textContent = text; ui.banner.className = `banner ${kind}`; ui.banner.hidden = false; }
/** The banner between messages: the practice notice on the practice image, else none. */
function restingBanner() {
  if (s.assignment && s.assignment.practice) showBanner(PRACTICE_TEXT, "practice");
  else ui.banner.hidden = true;
}
function showError(text, onRetry) {
  ui.errorText.textContent = text; ui.error.hidden = false; ui.retry.hidden = !onRetry;
  ui.retry.onclick = onRetry ? () => { ui.error.hidden = true; onRetry(); } : null;
  if (onRetry) ui.retry.focus({ preventScroll: true });
}
const pct = (v) => `${(100 * v).toFixed(1)}%`;
const operation = () => document.querySelector("input[name=operation]:checked").value;

// ---------- the region (Uint8Array, row-major, image size) ----------

function regionArea() { let n = 0; for (const v of s.region) n += v; return n; }

function pushUndo(kind) { s.undo.push({ kind, region: s.region.slice(), result: s.result, inputs: new Set(s.inputs) }); if (s.undo.length > 200) s.undo.shift(); }

/** Which input painted the region being edited: "pointer", "keyboard" or "mixed" (logged
 * with each trial as `input`); undefined for a region restored from the server. */
function regionInput() {
  if (s.inputs.size > 1) return "mixed";
  return s.inputs.values().next().value;
}

function paintDisc(cx, cy, r, value) {
  const { width: w, height: h } = s;
  for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(h - 1, Math.ceil(cy + r)); y++) {
    for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(w - 1, Math.ceil(cx + r)); x++) {
      if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) s.region[y * w + x] = value;
    }
  }
}

function paintSegment(a, b, r, value) {
  const steps = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) / Math.max(1, r / 2)));
  for (let i = 0; i <= steps; i++) paintDisc(a[0] + ((b[0] - a[0]) * i) / steps, a[1] + ((b[1] - a[1]) * i) / steps, r, value);
}

function fillRect(a, b) {
  const [x0, x1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])];
  const [y0, y1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])];
  for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) s.region[y * s.width + x] = 1;
}

/** Pixels whose centre lies inside the polygon (even-odd rule), added to the region. */
function fillPolygon(points) {
  const { width: w, height: h } = s;
  for (let y = 0; y < h; y++) {
    const cy = y + 0.5, xs = [];
    for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
      const [xi, yi] = [points[i][0] + 0.5, points[i][1] + 0.5], [xj, yj] = [points[j][0] + 0.5, points[j][1] + 0.5];
      if ((yi > cy) !== (yj > cy)) xs.push(xi + ((cy - yi) * (xj - xi)) / (yj - yi));
    }
    xs.sort((p, q) => p - q);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      for (let x = Math.max(0, Math.ceil(xs[k] - 0.5)); x <= Math.min(w - 1, Math.floor(xs[k + 1] - 0.5)); x++) s.region[y * w + x] = 1;
    }
  }
}

/** COCO RLE, uncompressed: column-major run lengths starting with a run of zeros. */
export function encodeRle(mask, width, height) {
  const counts = [];
  let value = 0, run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== value) { counts.push(run); value = v; run = 0; }
      run++;
    }
  }
  counts.push(run);
  return { size: [height, width], counts };
}

// ---------- drawing ----------

/** Fit the paint canvas to the stage and the side canvases to the side area. */
function layout() {
  if (!views.paint) return;
  const sideEl = document.querySelector(".ws-side");
  const across = getComputedStyle(sideEl).flexDirection === "row";  // narrow: panels side by side
  // the side takes the width the image does not need (within limits): it depends only on the
  // main area's size and the image's aspect, never on itself or the stage, so no resize loop
  if (!across) {
    const main = ui.workspace.getBoundingClientRect();
    const spare = main.width - (main.height - 8) * (s.width / s.height) - 8 - 10;
    const width = Math.round(Math.min(640, Math.max(main.width * 0.3, Math.min(spare, main.width * 0.5))));
    Object.assign(sideEl.style, { flexBasis: `${width}px`, maxWidth: `${width}px` });
  } else Object.assign(sideEl.style, { flexBasis: "", maxWidth: "" });
  const stage = ui.stage.getBoundingClientRect();
  views.paint.fit(stage.width - 8, stage.height - 8);
  const side = sideEl.getBoundingClientRect();
  const figs = $("figs"), pictures = [views.result, views.overlay].filter((v) => v && !v.canvas.closest("[hidden]"));
  const n = Math.max(pictures.length, 1), caption = 30, pad = 16;
  // a wide side is two columns: the prediction over the trials, and the pictures
  const grid = !across && side.width >= 540;
  sideEl.classList.toggle("grid", grid);
  let w;
  if (across) w = Math.min(side.height - 2 * caption - pad, side.width / 4.5);
  else if (grid) {
    figs.classList.remove("across");
    w = Math.min(side.width / 2 - 8 - pad, (side.height - 8 * (n - 1)) / n - caption - pad, 320);
  } else {
    // what the side holds besides the pictures (its size never depends on theirs): the
    // prediction, the pictures' captions, room for three trials; the pictures get the rest, in
    // a column or side by side, whichever leaves them larger
    const pred = $("panel-prediction").getBoundingClientRect().height;
    const free = side.height - pred - 84 - 8 * 3;
    const column = Math.min(side.width - 24, 260, free / n - caption - pad);
    const row = Math.min((side.width - 8 * (n - 1)) / n - pad, 260, free - caption - pad);
    const sideBySide = n > 1 && row > column;
    figs.classList.toggle("across", sideBySide);
    w = sideBySide ? row : column;
  }
  for (const v of pictures) v.fit(Math.max(w, 48), Math.max(w, 48));
  render();
}

function layerFromMask(mask, rgba) {
  const layer = document.createElement("canvas");
  layer.width = s.width; layer.height = s.height;
  const ctx = layer.getContext("2d");
  const data = ctx.createImageData(s.width, s.height);
  for (let i = 0; i < mask.length; i++) if (mask[i]) data.data.set(rgba, i * 4);
  ctx.putImageData(data, 0, 0);
  return layer;
}

/** The ground truth's outline (object pixels with a 4-neighbour outside it) in yellow. */
function outlineLayer(img) {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, c.width, c.height).data, w = c.width, h = c.height;
  const inside = (x, y) => x >= 0 && y >= 0 && x < w && y < h && px[(y * w + x) * 4] > 127;
  const edge = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    if (inside(x, y) && !(inside(x - 1, y) && inside(x + 1, y) && inside(x, y - 1) && inside(x, y + 1))) edge[y * w + x] = 1;
  }
  return layerFromMask(edge, [255, 214, 0, 255]);  // the mask has the image's size (s.width x s.height)
}

/** A preview of what the model sees: the substrate drawn into (delete) or around (insert) the region. */
function substrateCanvas() {
  const c = document.createElement("canvas");
  c.width = s.width; c.height = s.height;
  const ctx = c.getContext("2d");
  const sub = s.info.substrate;
  if (sub === "blur") { ctx.filter = "blur(5px)"; ctx.drawImage(s.image, 0, 0); ctx.filter = "none"; return c; }
  if (sub === "noise") {
    const data = ctx.createImageData(s.width, s.height);
    let seed = 12345;
    for (let i = 0; i < data.data.length; i += 4) {
      for (let k = 0; k < 3; k++) { seed = (seed * 1103515245 + 12345) & 0x7fffffff; data.data[i + k] = 64 + (seed % 128); }
      data.data[i + 3] = 255;
    }
    ctx.putImageData(data, 0, 0); return c;
  }
  let rgb = s.info.substrate_rgb || [128, 128, 128];
  if (sub === "mean") {
    const t = document.createElement("canvas"); t.width = s.width; t.height = s.height;
    const tc = t.getContext("2d"); tc.drawImage(s.image, 0, 0);
    const px = tc.getImageData(0, 0, s.width, s.height).data; const sum = [0, 0, 0];
    for (let i = 0; i < px.length; i += 4) { sum[0] += px[i]; sum[1] += px[i + 1]; sum[2] += px[i + 2]; }
    rgb = sum.map((v) => Math.round(v / (px.length / 4)));
  }
  ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`; ctx.fillRect(0, 0, s.width, s.height);
  return c;
}

function drawResult() {
  const applied = s.result && s.result.mask;
  if (!applied) { views.result.draw({ image: s.image }); ui.seenNote.textContent = "(unmodified)"; return; }
  const composite = document.createElement("canvas");
  composite.width = s.width; composite.height = s.height;
  const cc = composite.getContext("2d");
  const keep = layerFromMask(s.result.mask, [255, 255, 255, 255]);
  // delete: substrate where the region is; insert: the image only where the region is
  cc.drawImage(s.result.operation === "delete" ? s.image : substrateCanvas(), 0, 0);
  const patch = document.createElement("canvas");
  patch.width = s.width; patch.height = s.height;
  const pc = patch.getContext("2d");
  pc.drawImage(s.result.operation === "delete" ? substrateCanvas() : s.image, 0, 0);
  pc.globalCompositeOperation = "destination-in"; pc.drawImage(keep, 0, 0);
  cc.drawImage(patch, 0, 0);
  views.result.draw({ image: composite });
  ui.seenNote.textContent = `(after ${s.result.operation}, trial ${s.result.seq + 1})`;
}

function render() {
  if (!views.paint || !s.image) return;
  const view = views.paint, ctx = view.ctx;
  const alpha = Math.round(255 * Math.min(Math.max(config.overlayOpacity / 100, 0.15), 1));
  view.draw({ image: s.image, layers: [layerFromMask(s.region, [255, 40, 160, alpha]), s.gtLayer] });
  const at = (x, y) => view.toCanvas(x, y);
  if (s.drag && s.tool === "rect" && s.drag.to) {
    const [a, b] = [s.drag.from, s.drag.to];
    const [x0, y0] = at(Math.min(a[0], b[0]), Math.min(a[1], b[1]));
    const [x1, y1] = at(Math.max(a[0], b[0]) + 1, Math.max(a[1], b[1]) + 1);
    ctx.strokeStyle = "#ff28a0"; ctx.setLineDash([4, 3]); ctx.lineWidth = 2;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
  }
  if (s.polygon.length) {
    ctx.strokeStyle = "#ff28a0"; ctx.lineWidth = 2; ctx.beginPath();
    s.polygon.forEach(([x, y], i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, ...at(x + 0.5, y + 0.5)));
    ctx.stroke();
    for (const [x, y] of s.polygon) { ctx.beginPath(); ctx.arc(...at(x + 0.5, y + 0.5), 4, 0, 2 * Math.PI); ctx.fillStyle = "#ff28a0"; ctx.fill(); }
  }
  if (s.cursor.shown && (s.tool === "brush" || s.tool === "eraser")) {  // the brush's reach at the cursor
    const [cx, cy] = at(s.cursor.x + 0.5, s.cursor.y + 0.5);
    ctx.beginPath(); ctx.arc(cx, cy, radius() * view.scale, 0, 2 * Math.PI);
    ctx.setLineDash(s.pen ? [] : [4, 3]); ctx.lineWidth = 2; ctx.strokeStyle = "#ff28a0"; ctx.stroke(); ctx.setLineDash([]);
  }
  s.cursor.draw(view, "#ff28a0");
  if (s.overlayImg && views.overlay) views.overlay.draw({ image: s.image, layers: [s.overlayImg] });
  drawResult();
  const area = regionArea();
  // "Region: 120 pixels (1.2% of the image)", on a phone "Region: 120 px (1.2%)"
  const wide = (text) => Object.assign(document.createElement("span"), { className: "wide-only", textContent: text });
  const narrow = (text) => Object.assign(document.createElement("span"), { className: "narrow-only", textContent: text });
  ui.area.replaceChildren(`Region: ${area}`, wide(" pixels"), narrow(" px"), ` (${pct(area / (s.width * s.height))}`, wide(" of the image"), ")");
  ui.trialCount.textContent = `${s.trials.length} trial${s.trials.length === 1 ? "" : "s"} on this image`;
  document.querySelectorAll(".tool").forEach((b) => { b.classList.toggle("active", b.dataset.tool === s.tool); b.setAttribute("aria-pressed", String(b.dataset.tool === s.tool)); });
  ui.toolHelp.textContent = TOOL_HELP[s.tool];
  ui.apply.disabled = s.finished || s.busy || area === 0;
  ui.undo.disabled = s.finished || s.busy || !s.undo.length;
  ui.finish.disabled = s.finished || s.busy;
  ui.finish.title = s.trials.length < config.minTrials ? `This image needs at least ${config.minTrials} trials first.` : "";
  app.dataset.area = String(area);
  app.dataset.trials = String(s.trials.length);
  app.dataset.tool = s.tool;
  app.dataset.applied = s.result && s.result.mask ? "1" : "0";
  app.dataset.cursor = s.cursor.shown ? `${s.cursor.x},${s.cursor.y}` : "";
  app.dataset.pen = s.pen ? "down" : s.drag && s.drag.keys ? "corner" : "";
  renderPrediction();
}

function renderPrediction() {
  const info = s.info, r = s.result && s.result.mask ? s.result.response : null;
  $("target-name").textContent = info.target_name;
  $("prob-before").textContent = info.prob_target.toFixed(3);
  $("prob-after").textContent = r ? r.prob_after.toFixed(3) : "–";
  $("prob-change").textContent = r ? `${r.prob_change >= 0 ? "+" : ""}${r.prob_change.toFixed(3)}` : "–";
  app.dataset.probBefore = r ? String(r.prob_before) : String(info.prob_target);
  app.dataset.probAfter = r ? String(r.prob_after) : "";
  app.dataset.flipped = r ? String(r.flipped) : "";
  if (r) {
    const names = info.class_names;
    ui.flip.hidden = false;
    ui.flip.className = `flip ${r.flipped ? "yes" : "no"}`;
    ui.flip.textContent = r.flipped
      ? `The prediction flipped: ${names[r.prediction_before]} → ${names[r.prediction_after]}.`
      : `The prediction did not flip (still ${names[r.prediction_after]}).`;
  } else ui.flip.hidden = true;
  $("top5-box").hidden = !info.show_top5;
  if (!info.show_top5) return;
  const after = new Map((r && r.top5_after ? r.top5_after : []).map((c) => [c.class, c.prob]));
  const rows = info.top5.map((c) => [c.name, c.prob.toFixed(3), after.has(c.class) ? after.get(c.class).toFixed(3) : (r ? "not in top 5" : "–")]);
  if (r) for (const c of r.top5_after) if (!info.top5.some((t) => t.class === c.class)) rows.push([c.name, "not in top 5", c.prob.toFixed(3)]);
  ui.top5.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    cells.forEach((v, i) => { const td = document.createElement("td"); td.textContent = v; if (i) td.className = "num"; tr.append(td); });
    return tr;
  }));
}

// ---------- input ----------

function pixelAt(event) { return views.paint.pixelAt(event.clientX, event.clientY); }

const radius = () => Number(ui.radius.value);

function onDown(event) {
  if (s.finished || event.button !== 0 || event.altKey || views.paint.pointers.size > 1) return;
  event.preventDefault();
  ui.paint.setPointerCapture?.(event.pointerId);
  const p = pixelAt(event);
  s.cursor.shown = false; s.pen = null;  // the pointer takes over from the keyboard
  s.cursor.place(...p);
  if (s.drag && s.drag.keys) { s.drag = null; s.undo.pop(); }
  if (s.tool === "polygon") { addPolygonPoint(p, "pointer"); return; }
  pushUndo(s.tool);
  s.inputs.add("pointer");
  s.drag = { from: p, last: p, to: null };
  if (s.tool === "brush" || s.tool === "eraser") paintDisc(p[0], p[1], radius(), s.tool === "brush" ? 1 : 0);
  render();
}

function onMove(event) {
  if (!s.drag || s.drag.keys) return;
  if (views.paint.panning || views.paint.pointers.size > 1) { s.drag = null; const step = s.undo.pop(); if (step) s.region = step.region; render(); return; }
  const p = pixelAt(event);
  if (s.tool === "brush" || s.tool === "eraser") { paintSegment(s.drag.last, p, radius(), s.tool === "brush" ? 1 : 0); s.drag.last = p; }
  else s.drag.to = p;
  render();
}

function onUp(event) {
  if (!s.drag || s.drag.keys) return;
  if (s.tool === "rect") fillRect(s.drag.from, s.drag.to || pixelAt(event));
  s.drag = null;
  render();
}

/** A polygon corner; true when it closed the polygon instead (on the first corner). */
function addPolygonPoint(p, input) {
  const first = s.polygon[0];
  const cssPerPixel = views.paint.cssPerPixel();
  if (first && s.polygon.length >= 3 && Math.hypot(first[0] - p[0], first[1] - p[1]) * cssPerPixel <= 8) { closePolygon(); return true; }
  if (!s.polygon.length) s.polygonInputs.clear();
  s.polygonInputs.add(input);
  s.polygon.push(p);
  render();
  return false;
}

function closePolygon() {
  if (s.polygon.length >= 3) {
    pushUndo("polygon"); fillPolygon(s.polygon);
    for (const i of s.polygonInputs) s.inputs.add(i);
  }
  s.polygon = [];
  render();
}

/** Drop a keyboard stroke or corner in progress (a new tool, Esc, a new image). */
function endKeyboardStep() {
  s.pen = null;
  if (s.drag && s.drag.keys) { s.drag = null; const step = s.undo.pop(); if (step) s.region = step.region; }
}

function setTool(tool) { if (s.polygon.length && tool !== "polygon") s.polygon = []; endKeyboardStep(); s.tool = tool; render(); }

function undo() {
  if (s.polygon.length) { s.polygon.pop(); render(); return; }
  if (s.drag && s.drag.keys) { endKeyboardStep(); render(); return; }
  s.pen = null;
  const step = s.undo.pop();
  if (!step) return;
  s.region = step.region; s.result = step.result; s.inputs = step.inputs;
  showBanner(step.kind === "apply" ? "Undone: the view is back to before the last apply (the trial stays in the log)." : "Undone.", "info");
  render();
}

function clearRegion() {
  if (!regionArea()) return;
  endKeyboardStep();
  pushUndo("clear"); s.region.fill(0); s.inputs.clear(); render();
  showBanner("Region cleared. Press u (or Undo) to bring it back.", "info");
}

// ---------- the keyboard cursor (docs/workspace.md "Keys") ----------

function moveCursor(direction, fine) {
  const from = s.cursor.point;
  const to = s.cursor.move(direction, fine, views.paint);
  if (s.pen) paintSegment(from, to, radius(), s.tool === "brush" ? 1 : 0);
  if (s.drag && s.drag.keys) s.drag.to = to;
  render();
  const what = s.pen ? ` ${s.tool === "brush" ? "Painting" : "Erasing"}; region ${regionArea()} pixels.` : "";
  announce(ui.announce, `${s.cursor.spoken()}${what}`);
}

/** Enter on the image: the keyboard's press and release of the current tool at the cursor. */
function keyStep(shift) {
  if (s.finished) return;
  const p = s.cursor.point;
  s.cursor.shown = true;
  let said;
  if (s.tool === "brush" || s.tool === "eraser") {
    const name = s.tool === "brush" ? "Brush" : "Eraser";
    if (!s.pen) {
      pushUndo(s.tool);
      s.inputs.add("keyboard");
      s.pen = { from: p };
      paintDisc(p[0], p[1], radius(), s.tool === "brush" ? 1 : 0);
      said = `${name} down at x ${p[0]}, y ${p[1]}: the arrows ${s.tool === "brush" ? "paint" : "erase"}, Enter lifts it.`;
    } else {
      s.pen = null;
      said = `${name} lifted. Region: ${regionArea()} pixels.`;
    }
  } else if (s.tool === "rect") {
    if (!(s.drag && s.drag.keys)) {
      pushUndo("rect");
      s.drag = { from: p, last: p, to: p, keys: true };
      said = `First corner at x ${p[0]}, y ${p[1]}: move to the opposite corner and press Enter (Esc cancels).`;
    } else {
      fillRect(s.drag.from, p);
      s.drag = null;
      s.inputs.add("keyboard");
      said = `Rectangle added. Region: ${regionArea()} pixels.`;
    }
  } else if (s.tool === "polygon") {
    if (shift) {
      const n = s.polygon.length;
      closePolygon();
      said = n >= 3 ? `Polygon closed. Region: ${regionArea()} pixels.` : "A polygon needs at least 3 corners.";
    } else if (addPolygonPoint(p, "keyboard")) said = `Polygon closed. Region: ${regionArea()} pixels.`;
    else said = `Corner ${s.polygon.length} at x ${p[0]}, y ${p[1]}.${s.polygon.length >= 3 ? " Shift+Enter closes the polygon." : ""}`;
  }
  render();
  if (said) announce(ui.announce, said);
}

function onKey(event) {
  if (ui.survey.open || ui.confirm.open || ui.help.open || s.finished) return;
  // a focused control (button, slider, the operation's radio buttons) takes its own keys:
  // Enter and Space press a button like any button, and no shortcut of the page fires meanwhile
  if (onControl(event)) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const onImage = event.target === ui.paint;
  if (key === "Enter") {
    event.preventDefault();
    if (event.repeat) return;  // a held Enter is one step
    // a polygon clicked with the pointer closes with Enter; with the keyboard cursor in use,
    // Enter is the tool's step at the cursor
    if (s.tool === "polygon" && s.polygon.length && !s.cursor.shown && !event.shiftKey) closePolygon();
    else if (onImage) keyStep(event.shiftKey);
    return;
  }
  if ((event.ctrlKey || event.metaKey) && key === "z") { event.preventDefault(); undo(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const view = views.paint;
  const arrow = arrowOf(key);
  if (arrow && view && onImage) { event.preventDefault(); moveCursor(arrow, event.shiftKey); return; }
  if (key === "b") setTool("brush");
  else if (key === "x") setTool("rect");
  else if (key === "p") setTool("polygon");
  else if (key === "e") setTool("eraser");
  else if (key === "u") undo();
  else if (key === "a") apply();
  else if (key === " ") { event.preventDefault(); clearRegion(); }
  else if (key === "?") ui.help.showModal();
  else if (key === "+" || key === "=") view?.zoomAt(1.25);
  else if (key === "-" || key === "_") view?.zoomAt(0.8);
  else if (key === "0") view?.reset();
  else if (key === "Escape") { s.polygon = []; endKeyboardStep(); render(); }
}

// ---------- trials ----------

async function apply() {
  if (s.busy || s.finished || regionArea() === 0) return;
  s.pen = null;  // a stroke in progress ends with the apply
  const op = operation();
  const item = { client_event_id: newId(), seq: s.seq, operation: op, substrate: s.info.substrate, region_rle: encodeRle(s.region, s.width, s.height), client_ts: Date.now(), input: regionInput() };
  const mask = s.region.slice();
  s.busy = true; render(); showPending("Waiting for the model…");
  await send(item, mask);
}

async function send(item, mask) {
  let res;
  try {
    res = await api.post(`assignments/${s.assignment.id}/trials`, item);
  } catch (err) {
    hidePending();
    const status = err instanceof ApiFailure ? err.status : 0;
    if (status === 409 && err.data.expected_seq !== undefined) {
      try {
        await loadTrials();
        showError("This page was behind what is saved (another tab, or an answer that got lost). It now shows your saved trials; press Apply again if your last one is missing.");
      } catch (e) {
        showError("This page is out of date and could not reload your saved work.", () => { loadTrials().then(() => { ui.error.hidden = true; render(); }); });
      }
      s.busy = false; render();
    } else if (status >= 400 && status < 500) {
      s.busy = false; render();
      showError(`That trial was not accepted: ${err.message}`);
    } else {
      const why = status ? err.message : "the server did not answer";
      showError(`Your trial could not be saved yet (${why}). It is kept — press Retry.`, () => { showPending("Waiting for the model…"); send(item, mask); });
    }
    return;
  }
  hidePending(); ui.error.hidden = true;
  pushUndo("apply");
  s.seq = res.seq + 1;
  s.trials.push(res);
  s.result = { mask, operation: item.operation, seq: res.seq, response: res };
  addHistory(res);
  const names = s.info.class_names;
  announce(ui.announce, `${res.target_name}: probability ${res.prob_after.toFixed(2)}, change ${res.prob_change >= 0 ? "+" : ""}${res.prob_change.toFixed(2)}. ${res.flipped ? `The prediction flipped to ${names[res.prediction_after]}.` : "The prediction did not flip."}`);
  s.busy = false;
  if (!ui.banner.classList.contains("done")) restingBanner();
  render();
}

function addHistory(r) {
  const li = document.createElement("li");
  li.textContent = `${r.operation} ${pct(r.area_fraction)} of the image: ${r.target_name} ${r.prob_before.toFixed(3)} → ${r.prob_after.toFixed(3)}${r.flipped ? " · flipped" : ""}`;
  ui.history.prepend(li);  // newest first (the list is numbered in reverse)
}

/** The server's view of this assignment (GET /api/v1/assignments/<id>): trials, next seq, and
 * the last trial's region and result, which the page shows again as it showed them. */
async function loadTrials() {
  const st = await api.get(`assignments/${s.assignment.id}`);
  s.seq = st.next_seq; s.trials = st.trials; s.finished = st.status === "finished";
  ui.history.replaceChildren(); st.trials.forEach(addHistory);
  const last = st.trials[st.trials.length - 1];
  if (last && last.region_rle) {
    const { mask, width, height } = decodeRle(last.region_rle);
    if (width === s.assignment.width && height === s.assignment.height) {
      s.result = { mask, operation: last.operation, seq: last.seq, response: last };
      s.region = mask.slice();
      s.undo = [];
    }
  }
  return st;
}

function askFinish() {
  if (s.busy || s.finished) return;
  if (s.trials.length < config.minTrials) {
    showBanner(`This image needs at least ${config.minTrials} trials before you can finish it (so far ${s.trials.length}).`, "info");
    return;
  }
  $("confirm-text").textContent = s.trials.length
    ? "You cannot come back to this image afterwards."
    : "You have not applied any change to this image yet. You cannot come back to it afterwards.";
  ui.confirm.showModal();
  $("confirm-no").focus();
}

async function finish() {
  if (s.busy || s.finished) return;
  s.busy = true; render(); showPending("Saving…");
  try {
    await api.post(`assignments/${s.assignment.id}/finish`, { client_ts: Date.now() });
  } catch (err) {
    s.busy = false; hidePending(); render();
    showError(`The image could not be finished (${err.message}).`, finish);
    return;
  }
  s.busy = false; hidePending();
  endImage();
}

function endImage() {
  s.finished = true;
  showBanner("You finished this image.", "done");
  app.dataset.phase = "survey";
  ui.survey.querySelectorAll("button").forEach((b) => { b.disabled = false; });
  render();
  if (!ui.survey.open) ui.survey.showModal();
  $("survey-yes").focus();
}

async function answerSurvey(answer) {
  showPending("Saving your answer…");
  const saved = await saveSurveyAnswer(api, ui.survey, s.assignment.id, answer, config.surveyQuestion);
  hidePending();
  if (!saved) {
    showError("Your answer was not saved: the server did not answer.", () => endImage());
    return;
  }
  loadFirst();
}

// ---------- the sequence of images ----------

const prefetched = new Map();
function fetchImage(url) {
  if (!prefetched.has(url)) prefetched.set(url, loadImage(url));
  return prefetched.get(url);
}

/** The image's analysis (GET .../intervention) can take seconds on a cold server: show how
 * long, and how far the study's precomputation is (GET participants/me/preparation). */
async function withProgress(promise) {
  const t0 = performance.now();
  let prep = null, asking = false;
  ui.loading.dataset.on = "1";
  const tick = () => {
    const sec = Math.round((performance.now() - t0) / 1000);
    if (sec >= 1 && !asking && sec % 2 === 1) {
      asking = true;
      api.once("participants/me/preparation").then((p) => { prep = p; }).catch(() => {}).finally(() => { asking = false; });
    }
    const jobs = prep && prep.total && prep.status !== "done" ? ` · ${prep.done} of ${prep.total} images prepared` : "";
    ui.loadingText.textContent = sec < 1 ? "Loading the image…" : `Preparing the model's view of this image… ${sec} s${jobs}`;
    ui.loading.setAttribute("aria-valuetext", ui.loadingText.textContent);
  };
  tick();
  const timer = setInterval(tick, 500);
  try { return await promise; } finally { clearInterval(timer); ui.loading.dataset.on = "0"; }
}

async function openAssignment(index) {
  const afterPractice = Boolean(s.assignment && s.assignment.practice && !s.assignments[index].practice);
  s.index = index;
  const a = (s.assignment = s.assignments[index]);
  app.dataset.phase = "loading";
  ui.banner.hidden = true; ui.error.hidden = true;
  Object.assign(s, { width: a.width, height: a.height, undo: [], result: null, polygon: [], drag: null, busy: false, pen: null });
  s.inputs.clear();
  s.cursor.reset(a.width, a.height);
  // each image starts with the brush, its default radius and Delete (the instructions say so)
  s.tool = "brush";
  ui.radius.value = ui.radius.defaultValue; ui.radiusValue.textContent = ui.radius.value;
  $("op-delete").checked = true;
  s.region = new Uint8Array(a.width * a.height);
  const [image, info] = await withProgress(Promise.all([fetchImage(a.image_url), api.get(`assignments/${a.id}/intervention`), loadTrials()]));
  Object.assign(s, { image, info });
  if (info.config) Object.assign(config, info.config); // a within-participants design: this image's arm
  s.gtLayer = a.ground_truth_url ? outlineLayer(await fetchImage(a.ground_truth_url)) : null;
  s.overlayImg = info.overlay_url ? await fetchImage(info.overlay_url) : null;
  ui.workspace.hidden = false;
  if (!views.paint) {
    views.paint = new ZoomView(ui.paint, a.width, a.height, { interactive: true, onChange: render });
    views.result = new ZoomView($("canvas-result"), a.width, a.height);
    views.overlay = new ZoomView($("canvas-overlay"), a.width, a.height);
  } else for (const v of Object.values(views)) v.setSize(a.width, a.height);
  $("panel-overlay").hidden = !s.overlayImg;
  if (s.overlayImg) {
    $("overlay-caption").textContent = info.overlay === "voice" ? "Model's uncertainty (VOICE)" : "Model's explanation (Grad-CAM)";
  }
  ui.goal.textContent = GOALS[info.goal] || info.goal;
  ui.goal.title = ui.goal.textContent;
  ui.substrate.textContent = SUBSTRATE_TEXT[info.substrate] || `Deleted parts become ${info.substrate}`;
  ui.progress.textContent = progressLabel(s.assignments, a).short;
  ui.progress.classList.toggle("practice", Boolean(a.practice));
  if (afterPractice) showBanner("The practice is over: this is the study's first image.", "info");
  else restingBanner();
  app.dataset.assignment = String(a.id);
  app.dataset.practice = a.practice ? "1" : "0";
  app.dataset.width = String(a.width);
  app.dataset.height = String(a.height);
  app.dataset.phase = "annotate";
  layout();
  window.scrollTo(0, 0);
  // the side starts at the top on each image (narrow screens scroll its panels)
  for (const el of [document.querySelector(".ws-side"), ...document.querySelectorAll(".ws-side > *")]) el.scrollTop = 0;
  focusIntoView(ui.paint);
  announce(ui.announce, progressLabel(s.assignments, a).spoken);
  const nextOne = s.assignments[index + 1];
  if (nextOne) fetchImage(nextOne.image_url).catch(() => {});
  if (s.finished) endImage();
}

async function next() {
  const me = await api.get("participants/me");
  s.assignments = workOrder(me.assignments);
  const index = s.assignments.findIndex((a) => !(a.status === "finished" && a.survey_answered));
  if (index < 0) { app.dataset.phase = "done"; window.location.href = config.doneUrl; return; }
  await openAssignment(index);
}

function loadFirst() {
  next().catch(() => showError("The page could not load your task. Check your connection and press Retry.", loadFirst));
}

function start() {
  const c = ui.paint;
  c.addEventListener("pointerdown", onDown);
  c.addEventListener("pointermove", onMove);
  c.addEventListener("pointerup", onUp);
  c.addEventListener("pointercancel", () => { s.drag = null; render(); });
  c.addEventListener("dblclick", (e) => { e.preventDefault(); if (s.tool === "polygon") closePolygon(); });
  c.addEventListener("contextmenu", (e) => e.preventDefault());
  document.addEventListener("keydown", onKey);
  // tool buttons hand focus back to the image, so the keys act on the image again at once
  const back = () => c.focus({ preventScroll: true });
  document.querySelectorAll(".tool").forEach((b) => b.addEventListener("click", () => { setTool(b.dataset.tool); back(); }));
  ui.radius.addEventListener("input", () => { ui.radiusValue.textContent = ui.radius.value; });
  $("clear-region").addEventListener("click", () => { clearRegion(); back(); });
  ui.apply.addEventListener("click", () => { apply(); back(); });
  ui.undo.addEventListener("click", () => { undo(); back(); });
  $("zoom-in").addEventListener("click", () => { views.paint?.zoomAt(1.25); back(); });
  $("zoom-out").addEventListener("click", () => { views.paint?.zoomAt(0.8); back(); });
  $("zoom-fit").addEventListener("click", () => { views.paint?.reset(); back(); });
  $("btn-help").addEventListener("click", () => ui.help.showModal());
  $("help-close").addEventListener("click", () => ui.help.close());
  ui.finish.addEventListener("click", askFinish);
  $("confirm-yes").addEventListener("click", () => { ui.confirm.close(); finish(); });
  $("confirm-no").addEventListener("click", () => { ui.confirm.close(); back(); });
  ui.survey.addEventListener("cancel", (e) => e.preventDefault());
  new ResizeObserver(() => layout()).observe(ui.stage);
  $("survey-yes").addEventListener("click", () => answerSurvey("yes"));
  $("survey-no").addEventListener("click", () => answerSurvey("no"));
  loadFirst();
}

start();
