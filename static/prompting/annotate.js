// The prompting annotation page (docs/design.md "Prompting protocol") on the shared workspace
// (static/core/workspace.js): the image fills the window, the model's mask is drawn on it, keys
// and buttons share one map (`?` shows it). The server is the source of truth: the page sends
// actions one at a time in `seq` order and draws the point sets, round, mask and score the
// answers carry. Clicks made while a request is out are queued and shown as pending; failed
// requests are retried with the same client_event_id and seq, then reported with a Retry
// button; a conflict re-synchronises from GET /api/v1/assignments/<id>. Undo and redo are
// logged actions. `showMask(maskOrRle, {source})` draws a mask from any source ("local" for an
// in-browser decoder's preview, "server" for the logged answer, which replaces the preview).
import { Api, ApiFailure } from "../core/api.js";
import { createLocalPreview } from "./local_preview.js";

/** WebAssembly threads for the local decoder: all cores up to 4 where the page is cross-origin
 * isolated (the server sends COOP/COEP on this page), else 1 (sam_decoder.js enforces that). */
function decoderThreads() {
  if (!globalThis.crossOriginIsolated) return 1;
  return Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));
}
import {
  COLORS, KeyCursor, PRACTICE_TEXT, ZoomView, announce, arrowOf, contrastColor, focusIntoView, loadImage, maskCanvas,
  onControl, progressLabel, saveSurveyAnswer, toMask, workOrder,
} from "../core/workspace.js";

const config = JSON.parse(document.getElementById("annotate-config").textContent);
const $ = (id) => document.getElementById(id);
const app = $("app");

const ui = {
  progress: $("progress"), round: $("round"), mode: $("mode"), counts: $("counts"), pending: $("pending"),
  banner: $("banner"), error: $("error"), errorText: $("error-text"), retry: $("retry"), score: $("score"),
  maskNote: $("mask-note"), finish: $("finish"), survey: $("survey"), workspace: $("workspace"), timestep: $("timestep"),
  stage: $("stage"), canvas: $("canvas-image"), announce: $("announce"), opacity: $("opacity"),
  outline: $("btn-outline"), confirm: $("confirm"), help: $("help"), meter: $("round-meter"),
  undo: $("btn-undo"), redo: $("btn-redo"), markers: $("btn-markers"), stageWait: $("stage-wait"),
};

const api = new Api({
  onRetry: (attempt, total) => showPending(`Connection problem: trying again (${attempt} of ${total})…`),
});

const s = {
  assignments: [], index: 0, assignment: null, image: null, gtLayer: null,
  mask: null, maskSource: null, maskLayers: {}, maskColor: [30, 144, 255],
  views: {}, mode: "green", radius: 7, seq: 0, round: 1, timesteps: 0, green: [], red: [], stagnation: 1,
  score: null, queue: [], sending: false, stalled: false, finished: false, blocked: false,
  history: 0, future: 0, opacity: config.overlayOpacity / 100, style: config.overlayStyle, maskHidden: false,
  clickStarts: new Map(), restTimer: null, cursor: new KeyCursor(),
};
window.__timings = [];  // click -> mask drawn (ms), measured in the page (bench/workspace_click.py)
// test seams: draw a mask; the page's LocalPreview (a test may slow it down like a weak laptop)
window.__workspace = { showMask: (m, o) => showMask(m, o), preview: () => s.preview };

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// ---------- the mask ----------

/** Draw a mask on the image: `maskOrRle` is a COCO RLE, {mask, width, height} or null. */
export function showMask(maskOrRle, { source = "server" } = {}) {
  if (source === "server") s.serverMask = maskOrRle;
  s.mask = maskOrRle ? toMask(maskOrRle) : null;
  s.maskSource = s.mask ? source : null;
  s.maskLayers = {};
  if (s.mask && s.image) s.maskColor = contrastColor(s.image, s.mask.mask, s.mask.width, s.mask.height);
  app.dataset.maskSource = s.maskSource || "";
  render();
}

function maskLayer(style) {
  if (!s.mask) return null;
  if (!s.maskLayers[style]) s.maskLayers[style] = maskCanvas(s.mask.mask, s.mask.width, s.mask.height, s.maskColor, style);
  return s.maskLayers[style];
}

// ---------- rendering ----------

function layout() {
  if (!s.views.image) return;
  const stage = ui.stage.getBoundingClientRect();
  s.views.image.fit(stage.width - 8, stage.height - 8);
  // side panels share the side area, whose size never depends on theirs (no resize loop)
  const side = document.querySelector(".ws-side");
  const panels = ["gt", "mask"].map((n) => s.views[n]).filter(Boolean);
  if (side && panels.length) {
    const box = side.getBoundingClientRect();
    const across = getComputedStyle(side).flexDirection === "row";
    const w = across ? box.width / panels.length - 24 : box.width - 24;
    const h = across ? box.height - 44 : box.height / panels.length - 52;
    for (const v of panels) v.fit(Math.max(w, 60), Math.max(h, 60));
  }
  render();
}

function render() {
  const pending = s.queue.filter((q) => q.action === "add" || q.action === "remove");
  const pts = { green: s.green, red: s.red, pending, radius: s.radius, hollow: s.hollow };
  const onImage = config.layout !== "pointprompt" && !s.maskHidden;
  s.views.image?.draw({ image: s.image, layers: onImage ? [maskLayer(s.style)] : [], opacity: s.opacity, ...pts });
  if (s.views.image) s.cursor.draw(s.views.image, COLORS[s.mode]);
  s.views.gt?.draw({ image: s.image, dim: 0.45, layers: [s.gtLayer], ...pts });
  s.views.mask?.draw({ image: s.image, layers: [maskLayer("fill")], opacity: 0.6, ...pts });
  // the explanation after the colour is a separate span: narrow screens leave it out
  ui.mode.firstElementChild.textContent = s.mode === "green" ? "GREEN ⊕" : "RED ⊖";
  ui.mode.lastElementChild.textContent = s.mode === "green" ? " on the object" : " not the object";
  ui.mode.className = `mode ${s.mode}`;
  $("btn-green").setAttribute("aria-pressed", String(s.mode === "green"));
  $("btn-red").setAttribute("aria-pressed", String(s.mode === "red"));
  ui.outline.setAttribute("aria-pressed", String(s.style === "outline"));
  ui.markers.setAttribute("aria-pressed", String(s.hollow));
  app.dataset.mode = s.mode;
  ui.round.textContent = `Round ${s.round} of ${config.maxRounds}`;
  if (ui.meter) ui.meter.firstElementChild.textContent = `${Math.max(s.stagnation - 1, 0)} of ${config.stagnationLimit}`;
  if (s.assignment) {
    ui.progress.textContent = progressLabel(s.assignments, s.assignment).short;
    ui.progress.classList.toggle("practice", Boolean(s.assignment.practice));
  }
  ui.counts.textContent = `${s.green.length} green · ${s.red.length} red`;
  ui.timestep.textContent = `${s.timesteps} prediction${s.timesteps === 1 ? "" : "s"}`;
  if (ui.score) ui.score.textContent = s.score === null ? "–" : s.score.toFixed(3);
  Object.assign(app.dataset, {
    seq: String(s.seq), round: String(s.round), timesteps: String(s.timesteps), green: String(s.green.length),
    red: String(s.red.length), queue: String(s.queue.length), cursor: s.cursor.shown ? `${s.cursor.x},${s.cursor.y}` : "",
  });
  const short = s.timesteps < config.minTimesteps;
  ui.finish.disabled = s.finished || s.blocked;
  ui.finish.setAttribute("aria-disabled", String(short));
  ui.finish.title = short ? `This image needs at least ${config.minTimesteps} predictions first.` : "";
  ui.undo.disabled = s.finished || s.blocked || s.history === 0;
  ui.redo.disabled = s.finished || s.blocked || s.future === 0;
  saveQueue();
  if (s.stalled) showPending("Not saved yet — press Retry.");
  else if (!s.queue.length && !s.sending) hidePending();
  else showPending(s.queue.length > 1 ? `Waiting for the model… (${s.queue.length} actions queued)` : "Waiting for the model…");
}

// "Waiting…" is said in the status line at once and, when the answer is slow (STAGE_WAIT_MS),
// also where the eyes are, on the image (#stage-wait): a quick answer never paints it, so the
// click path stays as fast as before
const STAGE_WAIT_MS = 250;
function showStageWait() {
  if (ui.stageWait.textContent !== ui.pending.textContent) ui.stageWait.textContent = ui.pending.textContent;
  ui.stageWait.dataset.on = "1";
}
function showPending(text) {
  if (ui.pending.textContent !== text) ui.pending.textContent = text;
  ui.pending.dataset.on = "1"; app.dataset.busy = "1";
  if (ui.stageWait.dataset.on === "1") showStageWait();  // its text follows, only while shown
  else if (!s.stageTimer) s.stageTimer = setTimeout(() => { s.stageTimer = null; showStageWait(); }, STAGE_WAIT_MS);
}
function hidePending() {
  clearTimeout(s.stageTimer); s.stageTimer = null;
  ui.pending.textContent = ""; ui.pending.dataset.on = "0"; app.dataset.busy = "0";
  if (ui.stageWait.dataset.on !== "0") ui.stageWait.dataset.on = "0";
}

// ---------- actions not yet answered survive a reload ----------

const QUEUE_FIELDS = ["cid", "action", "mode", "x", "y", "input", "client_ts", "seq"];
const queueKey = (id) => `intervene.queue.${id}`;
let savedQueue = "", saveTimer = null;
/** Keep the actions not yet answered in sessionStorage (this tab only), so that a reload
 * sends them again (same client_event_id: one already stored is answered, not stored twice).
 * Written just after the click's work (and at once when the page is left), never on its path. */
function saveQueue() {
  if (!saveTimer) saveTimer = setTimeout(saveQueueNow, 30);
}
function saveQueueNow() {
  clearTimeout(saveTimer); saveTimer = null;
  if (!s.assignment) return;
  const text = s.queue.length ? JSON.stringify(s.queue.map((q) => Object.fromEntries(QUEUE_FIELDS.map((f) => [f, q[f]])))) : "";
  if (text === savedQueue) return;
  savedQueue = text;
  try {
    if (text) sessionStorage.setItem(queueKey(s.assignment.id), text);
    else sessionStorage.removeItem(queueKey(s.assignment.id));
  } catch (err) { /* storage full or off: the actions are only kept in this page */ }
}

/** The actions a reload interrupted, for this assignment (then forgotten: they are queued). */
function takeSavedQueue(assignmentId) {
  try {
    const text = sessionStorage.getItem(queueKey(assignmentId));
    sessionStorage.removeItem(queueKey(assignmentId));
    const items = text ? JSON.parse(text) : [];
    return Array.isArray(items) ? items.filter((q) => q && typeof q.cid === "string" && typeof q.action === "string") : [];
  } catch (err) { return []; }
}

function showBanner(text, kind = "info") {
  ui.banner.textContent = text;
  ui.banner.className = `banner ${kind}`;
  ui.banner.hidden = false;
}

/** The banner between messages: the practice notice on the practice image, else none. */
function restingBanner() {
  if (s.assignment && s.assignment.practice) showBanner(PRACTICE_TEXT, "practice");
  else ui.banner.hidden = true;
}

function showError(text, onRetry) {
  ui.errorText.textContent = text;
  ui.error.hidden = false;
  ui.retry.hidden = !onRetry;
  ui.retry.onclick = onRetry ? () => { ui.error.hidden = true; onRetry(); } : null;
  if (onRetry) ui.retry.focus({ preventScroll: true });
}

function setMaskNote(text) { if (ui.maskNote) ui.maskNote.textContent = text; }

function needsMore(green, red) {
  const g = config.minGreen - green.length, r = config.minRed - red.length;
  const parts = [];
  if (g > 0) parts.push(`${g} green`);
  if (r > 0) parts.push(`${r} red`);
  return parts.length ? `Add ${parts.join(" and ")} point${g + r > 1 ? "s" : ""} to see the model's mask.` : "";
}

// ---------- the server's answers ----------

function applyResult(res, item) {
  s.seq = res.seq + 1;
  s.green = res.green; s.red = res.red;
  if (typeof res.stagnation === "number") s.stagnation = res.stagnation;
  trackHistory(res);
  if (res.timestep !== null && res.timestep !== undefined) {
    s.timesteps = res.timestep + 1;
    s.score = res.iou;
    setMaskNote(config.showScore ? "" : "Score hidden in this study.");
    showMask(res.mask_rle, { source: "server" });
    announce(ui.announce, config.showScore && res.iou !== null ? `New mask. Match with the outline ${res.iou.toFixed(2)}.` : "New mask.");
    const t0 = item && s.clickStarts.get(item.cid);
    if (t0 !== undefined) {
      s.clickStarts.delete(item.cid);
      requestAnimationFrame(() => window.__timings.push(performance.now() - t0));
    }
  } else if (res.action !== "finish") {
    s.score = null;
    showMask(null);
    setMaskNote(needsMore(res.green, res.red) || "No prediction for this change.");
  }
  if (res.round_ended && !res.finished) {
    showBanner(`Round ${res.round} ended: the mask did not improve for several predictions. All points were cleared — round ${res.next_round} of ${config.maxRounds} starts now.`, "reset");
    announce(ui.announce, `Round ${res.round} ended. Round ${res.next_round} starts; all points were cleared.`);
    s.round = res.next_round; s.green = []; s.red = []; s.score = null; s.history = 0; s.future = 0; s.stagnation = 1;
    showMask(null);
    s.queue.length = 0;  // clicks queued before the reset belong to the old round: drop them
    setMaskNote(needsMore([], []));
  } else if (res.action === "clear" && (s.history > 0)) {
    showBanner("All points cleared. Press u (or Undo) to bring them back.", "info");
  } else if (ui.banner.classList.contains("info") || (ui.banner.classList.contains("reset") && res.timestep !== null)) {
    restingBanner();  // hints go with the next action, the reset notice with the next mask
  }
  if (res.finished) endImage(res.stop_reason);
}

/** How many steps undo / redo can take, as the server's engine counts them. */
function trackHistory(res) {
  if (typeof res.undo === "number") s.history = res.undo;
  if (typeof res.redo === "number") s.future = res.redo;
}

function endImage(reason) {
  s.finished = true;
  s.queue.length = 0;
  const why = reason === "stagnation" ? "The last round ended without further improvement, so this image is done." : "You finished this image.";
  showBanner(why, "done");
  // the question is about the model's mask: not asked after an image where none was shown
  if (s.timesteps === 0) skipSurvey();
  else openSurvey();
}

/** Record that the survey was not asked (the model showed no mask), then go on. */
async function skipSurvey() {
  app.dataset.phase = "survey";
  showPending("Saving…");
  try {
    await api.post(`assignments/${s.assignment.id}/survey`, { answers: { answer: "not asked", reason: "the model showed no mask on this image" } });
  } catch (err) {
    hidePending();
    showError("The page could not save this image's end: the server did not answer.", () => skipSurvey());
    return;
  }
  hidePending();
  loadFirst();
}

// ---------- sending actions ----------

function enqueue(action, extra = {}) {
  if (s.finished || s.blocked || s.queue.some((q) => q.action === "finish")) return null;
  const item = { cid: newId(), action, mode: s.mode, client_ts: Date.now(), ...extra };
  s.queue.push(item);
  render();
  pump();
  return item;
}

/** The in-browser decoder's mask for an added point (issue 14), decoded while the event is on
 * its way: drawn at once when it is ready before the server's answer (a slower one is dropped:
 * the participant then only ever sees the server's mask). Resolves to the `shown` payload that
 * describes what was drawn, or null (nothing drawn, the browser path off or unavailable). No
 * decode starts while one still runs, and after LATE_LIMIT previews in a row that the server's
 * answer beat, the page stops decoding (#app data-preview="late"): this device is too slow. */
const LATE_LIMIT = 5;
function startLocalPreview(item) {
  if (!s.preview || item.action !== "add" || s.queue[0] !== item || s.queue.length > 1) return null;
  if (s.previewBusy || (s.previewLate || 0) >= LATE_LIMIT) return null;
  const green = item.mode === "green" ? [...s.green, [item.x, item.y]] : s.green;
  const red = item.mode === "red" ? [...s.red, [item.x, item.y]] : s.red;
  if (needsMore(green, red)) return null;
  const points = [...green, ...red];
  const labels = [...green.map(() => 1), ...red.map(() => 0)];
  const clickedAt = s.clickStarts.get(item.cid) ?? performance.now();
  const assignmentId = s.assignment.id;
  s.previewBusy = true;
  return s.preview.decodeClick(points, labels, { clickedAt }).then((local) => {
    s.previewBusy = false;
    if (!local || item.answered || s.queue[0] !== item || !s.assignment || s.assignment.id !== assignmentId) return null;
    item.drawn = true;
    s.previewLate = 0;
    showMask({ mask: local.mask, width: local.width, height: local.height }, { source: "local" });
    return s.preview.shownPayload(local, performance.now());  // RLE + hash after the draw
  }).catch(() => { s.previewBusy = false; return null; });
}

/** The server answered `item`: a local preview still decoding has lost the race. */
function previewAnswered(item) {
  if (!item.local || item.drawn || !s.preview || !s.preview.available) return;  // "off" stays off
  s.previewLate = (s.previewLate || 0) + 1;
  if (s.previewLate >= LATE_LIMIT) app.dataset.preview = "late";
}

/** Send what the browser showed for an answered event (written once on the server; a retry is
 * harmless). A lost report loses only these optional columns, never the event. */
async function reportShown(item, assignmentId) {
  const shown = await item.local;
  if (!shown) return;
  const url = `assignments/${assignmentId}/events/${encodeURIComponent(item.cid)}/shown`;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      await api.post(url, shown);
      return;
    } catch (err) {
      if (err instanceof ApiFailure && err.status >= 400 && err.status < 500) return;  // refused: nothing to retry
      await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
    }
  }
}

async function pump() {
  if (s.sending || s.stalled) return;
  s.sending = true;
  render();
  while (s.queue.length && !s.finished) {
    const item = s.queue[0];
    if (item.seq === undefined) item.seq = s.seq;  // fixed once: a retry sends the same seq
    const body = { client_event_id: item.cid, seq: item.seq, action: item.action, client_ts: item.client_ts };
    if (item.action === "add" || item.action === "remove") Object.assign(body, { mode: item.mode, x: item.x, y: item.y, input: item.input });
    // the event leaves now; the local preview decodes meanwhile and never delays the record
    if (item.local === undefined) item.local = startLocalPreview(item);
    let res;
    try {
      res = await api.post(`assignments/${s.assignment.id}/events`, body);
    } catch (err) {
      s.sending = false;
      await failed(item, err);
      return;
    }
    if (s.queue[0] === item) s.queue.shift();
    item.answered = true;
    previewAnswered(item);
    ui.error.hidden = true;
    applyResult(res, item);
    if (item.local) reportShown(item, s.assignment.id);
    render();
  }
  s.sending = false;
  render();
}

async function failed(item, err) {
  const status = err instanceof ApiFailure ? err.status : 0;
  if (status === 409 && err.data.expected_seq !== undefined) {
    // another tab or a lost answer moved the log on: take the server's state and carry on
    s.queue.length = 0;
    try {
      await loadState(s.assignment);
      showError("This page was behind what is saved (another tab, or an answer that got lost). It now shows your saved points; repeat your last click if it is missing.");
    } catch (e) {
      showError("This page is out of date and could not reload your saved work.", () => resync());
      return;
    }
  } else if (status === 400 || status === 403 || status === 404 || status === 409) {
    s.queue.shift();
    showError(`That action was not accepted: ${err.message}`);
    if (status === 409) s.blocked = true;  // study closed or image finished elsewhere
  } else {
    s.stalled = true;
    const why = status ? err.message : "the server did not answer";  // a 5xx carries words meant for people
    showError(`Your last action could not be saved yet (${why}). It is kept — press Retry.`, () => { s.stalled = false; pump(); });
    render();
    return;
  }
  render();
  pump();
}

async function resync() {
  try { await loadState(s.assignment); ui.error.hidden = true; render(); }
  catch (e) { showError("Your saved work could not be loaded yet.", () => resync()); }
}

// ---------- input ----------

function setMode(mode) { s.mode = mode; render(); announce(ui.announce, mode === "green" ? "Green points" : "Red points"); }
function toggleSize() { s.radius = s.radius === 7 ? 11 : 7; render(); }
/** Ring markers (key v): the point's pixels stay visible, for small objects. */
function toggleHollow() { s.hollow = !s.hollow; render(); announce(ui.announce, s.hollow ? "Ring markers: the image shows through the points." : "Filled markers."); }

function onPointerDown(event) {
  if (event.button !== 0 || event.altKey) return;
  s.down = { x: event.clientX, y: event.clientY, t: performance.now(), id: event.pointerId };
  s.cursor.shown = false;  // the pointer is in use: the keyboard cursor is drawn again at the next key
  clearTimeout(s.restTimer);
  decodeAhead(event.clientX, event.clientY);  // a press lasts ~0.1 s: decode while it lasts
}

/** Decoding ahead (issue 14): the prompt a click at this point would give is decoded in the
 * browser while the pointer is pressed, or rests on the image for REST_MS, and nothing is shown
 * (LocalPreview.decodeAhead); the click then draws that mask as soon as it lands. Under the same
 * conditions as a click's local preview; while an event is still on its way it tries again
 * REST_MS later, as long as the pointer stays put. */
const REST_MS = 50;
function decodeAhead(clientX, clientY) {
  if (!s.preview || s.finished || s.blocked || s.stalled || (s.previewLate || 0) >= LATE_LIMIT) return;
  const view = s.views.image;
  if (!view || view.panning || view.pointers.size > 1) return;
  if (s.queue.length || s.previewBusy) {
    if (!s.down) s.restTimer = setTimeout(() => decodeAhead(clientX, clientY), REST_MS);
    return;
  }
  const point = view.pixelAt(clientX, clientY);
  const green = s.mode === "green" ? [...s.green, point] : s.green;
  const red = s.mode === "red" ? [...s.red, point] : s.red;
  if (needsMore(green, red)) return;
  s.preview.decodeAhead([...green, ...red], [...green.map(() => 1), ...red.map(() => 0)]);
}

function onPointerMove(event) {
  clearTimeout(s.restTimer);
  if (s.decoder && s.decoder.hover_preview) { onHover(event); return; }  // the hover decodes
  if (event.pointerType !== "mouse" || s.down) return;
  const { clientX, clientY } = event;
  s.restTimer = setTimeout(() => decodeAhead(clientX, clientY), REST_MS);
}

function onPointerUp(event) {
  const down = s.down;
  s.down = null;
  const view = s.views.image;
  if (!down || down.id !== event.pointerId || event.button !== 0 || view.panning || view.pointers.size > 1) return;
  if (Math.hypot(event.clientX - down.x, event.clientY - down.y) > 8) return;  // a drag, not a click
  event.preventDefault();
  const [x, y] = view.pixelAt(event.clientX, event.clientY);
  s.cursor.place(x, y);  // the keyboard carries on from the last click
  const item = enqueue("add", { x, y, input: "pointer" });
  if (item) s.clickStarts.set(item.cid, down.t);
}

/** The study's hover preview (option hover_preview, off by default): the mask a green point
 * under the cursor would give, drawn before any click; never logged, never sent. */
async function onHover(event) {
  if (!s.preview || !s.decoder || !s.decoder.hover_preview || s.queue.length || event.pointerType !== "mouse") return;
  const view = s.views.image;
  if (!view || view.panning) return;
  const cursor = view.pixelAt(event.clientX, event.clientY);
  const labels = [...s.green.map(() => 1), ...s.red.map(() => 0)];
  const local = await s.preview.hover([...s.green, ...s.red], labels, cursor).catch(() => null);
  if (local && !s.queue.length) showMask({ mask: local.mask, width: local.width, height: local.height }, { source: "hover" });
}

function onRightClick(event) {
  event.preventDefault();
  const [x, y] = s.views.image.pixelAt(event.clientX, event.clientY);
  const mine = s.mode === "green" ? s.green : s.red;
  if (!mine.length && !s.queue.length) { showBanner(`There is no ${s.mode} point to remove.`, "info"); return; }
  enqueue("remove", { x, y, input: "pointer" });
}

// ---------- the keyboard cursor (docs/workspace.md "Keys") ----------

function moveCursor(direction, fine) {
  s.cursor.move(direction, fine, s.views.image);
  render();
  announce(ui.announce, s.cursor.spoken());
}

/** Enter: a green point at the keyboard cursor; Shift+Enter: a red one (the colour becomes the
 * current one, as g / r would make it). */
function placeAtCursor(mode) {
  if (s.finished || s.blocked) return;
  const t0 = performance.now();
  s.cursor.shown = true;
  if (s.mode !== mode) s.mode = mode;
  const [x, y] = s.cursor.point;
  const item = enqueue("add", { x, y, mode, input: "keyboard" });
  if (!item) return;
  s.clickStarts.set(item.cid, t0);
  announce(ui.announce, `${mode === "green" ? "Green" : "Red"} point at x ${x}, y ${y}. Waiting for the model.`);
}

/** Delete or Backspace: remove the point of the current colour nearest the cursor (the
 * keyboard's right click). */
function removeAtCursor() {
  const mine = s.mode === "green" ? s.green : s.red;
  if (!mine.length && !s.queue.length) { showBanner(`There is no ${s.mode} point to remove.`, "info"); return; }
  s.cursor.shown = true;
  const [x, y] = s.cursor.point;
  enqueue("remove", { x, y, input: "keyboard" });
  announce(ui.announce, `Removing the ${s.mode} point nearest x ${x}, y ${y}.`);
}

function clearPoints() { if (s.green.length || s.red.length || s.queue.length) enqueue("clear"); }
function undo() { if (s.history > 0 || s.queue.length) enqueue("undo"); }
function redo() { if (s.future > 0) enqueue("redo"); }
function setOpacity(v) { s.opacity = Math.min(Math.max(v, 0), 1); ui.opacity.value = String(Math.round(s.opacity * 100)); render(); }

function anyDialogOpen() { return ui.survey.open || ui.confirm.open || ui.help.open; }

function onKey(event) {
  // a focused control (button, slider, field) takes its own keys: Enter and Space press a
  // button like any button, and no shortcut of the page fires meanwhile
  if (anyDialogOpen() || onControl(event)) return;
  const key = event.key;
  if ((event.ctrlKey || event.metaKey) && !event.altKey) {
    if (key === "z" || key === "Z") { event.preventDefault(); if (event.shiftKey) redo(); else undo(); }
    else if (key === "y") { event.preventDefault(); redo(); }
    return;
  }
  if (event.altKey) return;
  const view = s.views.image;
  const k = key.length === 1 ? key.toLowerCase() : key;
  const onImage = event.target === ui.canvas;  // the keys that act at the cursor need the image focused
  const arrow = arrowOf(key);
  if (arrow && view && onImage) { event.preventDefault(); moveCursor(arrow, event.shiftKey); return; }
  // a held Enter or Delete places or removes one point, not one per key repeat
  if (key === "Enter" && onImage) { event.preventDefault(); if (!event.repeat) placeAtCursor(event.shiftKey ? "red" : "green"); return; }
  if ((key === "Delete" || key === "Backspace") && onImage) { event.preventDefault(); if (!event.repeat) removeAtCursor(); return; }
  if (k === "g") setMode("green");
  else if (k === "r") setMode("red");
  else if (k === "u") { if (event.shiftKey) redo(); else undo(); }
  else if (key === " " || event.code === "Space") { event.preventDefault(); clearPoints(); }
  else if (k === "z") toggleSize();
  else if (k === "v") toggleHollow();
  else if (k === "?") ui.help.showModal();
  else if (k === "+" || k === "=") view?.zoomAt(1.25);
  else if (k === "-" || k === "_") view?.zoomAt(0.8);
  else if (k === "0") view?.reset();
  else if (k === "o") { s.style = s.style === "outline" ? "fill" : "outline"; render(); }
  else if (k === "m") { s.maskHidden = !s.maskHidden; render(); }
  else if (k === "[") setOpacity(s.opacity - 0.1);
  else if (k === "]") setOpacity(s.opacity + 0.1);
}

// ---------- finishing, the survey and the sequence of images ----------

function askFinish() {
  if (s.finished || s.blocked) return;
  if (s.timesteps < config.minTimesteps) {
    showBanner(`This image needs at least ${config.minTimesteps} predictions before you can finish it (so far ${s.timesteps}).`, "info");
    return;
  }
  $("confirm-text").textContent = s.timesteps
    ? "You cannot come back to this image afterwards."
    : "The model has not made a prediction for this image yet. You cannot come back to it afterwards.";
  ui.confirm.showModal();
  $("confirm-no").focus();
}

function openSurvey() {
  ui.finish.disabled = true;
  app.dataset.phase = "survey";
  ui.survey.querySelectorAll("button").forEach((b) => { b.disabled = false; });
  if (!ui.survey.open) ui.survey.showModal();
  $("survey-yes").focus();
}

async function answerSurvey(answer) {
  showPending("Saving your answer…");
  const saved = await saveSurveyAnswer(api, ui.survey, s.assignment.id, answer, config.surveyQuestion);
  hidePending();
  if (!saved) {
    showError("Your answer was not saved: the server did not answer.", () => openSurvey());
    return;
  }
  loadFirst();
}

async function loadState(assignment) {
  const st = await api.get(`assignments/${assignment.id}`);
  if (st.config) Object.assign(config, st.config); // a within-participants design: this image's arm
  s.seq = st.next_seq; s.round = st.round; s.timesteps = st.timestep; s.stagnation = st.stagnation ?? 1;
  s.green = st.green; s.red = st.red; s.score = null;
  s.history = st.undo ?? 0; s.future = st.redo ?? 0;
  s.decoder = st.decoder || null;
  s.finished = st.status === "finished";
  const last = st.last;
  const same = last && !last.round_ended && JSON.stringify(last.green) === JSON.stringify(st.green) && JSON.stringify(last.red) === JSON.stringify(st.red);
  if (same && last.mask_rle) { s.score = last.iou; setMaskNote(config.showScore ? "" : "Score hidden in this study."); showMask(last.mask_rle); }
  else { showMask(null); setMaskNote(needsMore(st.green, st.red) || "Change a point to see the model's mask."); }
  return st;
}

const prefetched = new Map();
function fetchImage(url) {
  if (!prefetched.has(url)) prefetched.set(url, loadImage(url));
  return prefetched.get(url);
}

function nextAssignment(index) { return s.assignments[index + 1] || null; }

async function openAssignment(index) {
  const afterPractice = Boolean(s.assignment && s.assignment.practice && !s.assignments[index].practice);
  s.index = index;
  s.assignment = s.assignments[index];
  s.queue.length = 0; s.blocked = false;
  ui.banner.hidden = true; ui.error.hidden = true;
  app.dataset.phase = "loading";
  const a = s.assignment;
  const [image, st] = await Promise.all([fetchImage(a.image_url), loadState(a)]);
  s.image = image;
  if (s.mask) s.maskColor = contrastColor(s.image, s.mask.mask, s.mask.width, s.mask.height);
  s.maskLayers = {};
  s.gtLayer = null;
  if (a.ground_truth_url && config.showGroundTruth) {
    const gt = decodePng(await fetchImage(a.ground_truth_url));
    s.gtLayer = maskCanvas(gt.mask, gt.width, gt.height, COLORS.gt, "fill");
  }
  ui.workspace.hidden = false;
  const kept = s.finished ? [] : takeSavedQueue(a.id);
  savedQueue = "";
  s.cursor.reset(a.width, a.height);
  if (s.views.image) {
    for (const v of Object.values(s.views)) v.setSize(a.width, a.height);
  } else {
    s.views.image = new ZoomView(ui.canvas, a.width, a.height, { interactive: true, onChange: render });
    if ($("canvas-gt")) s.views.gt = new ZoomView($("canvas-gt"), a.width, a.height);
    if ($("canvas-mask")) s.views.mask = new ZoomView($("canvas-mask"), a.width, a.height);
  }
  if (s.decoder && s.decoder.available) {
    // one decoder for the whole study (its model loads once); each image swaps the embedding
    if (!s.preview) s.preview = createLocalPreview(a.id, s.decoder, { numThreads: decoderThreads() });
    app.dataset.preview = "loading";
    const preview = s.preview;
    preview.setAssignment(a.id).then((ok) => {
      if (s.preview === preview && app.dataset.assignment === String(a.id)) {
        app.dataset.preview = !ok ? "off" : (s.previewLate || 0) >= LATE_LIMIT ? "late" : "ready";
        app.dataset.previewThreads = String(ok ? preview.threads : 0);
        app.dataset.previewWhere = (ok && preview.where) || "";
      }
    });
  } else {
    if (s.preview) s.preview.release();
    s.preview = null;
    app.dataset.preview = "off";
  }
  if (s.preview && nextAssignment(index)) s.preview.prefetch(nextAssignment(index).id);
  app.dataset.assignment = String(a.id);
  app.dataset.practice = a.practice ? "1" : "0";
  app.dataset.phase = "annotate";
  if (afterPractice) showBanner("The practice is over: this is the study's first image.", "info");
  else restingBanner();
  if (kept.length) {
    s.queue.push(...kept);
    const n = kept.length;
    showBanner(`${n} action${n === 1 ? "" : "s"} made before the page reloaded ${n === 1 ? "was" : "were"} kept and ${n === 1 ? "is" : "are"} being sent now.`, "info");
    pump();
  }
  layout();
  window.scrollTo(0, 0);
  focusIntoView(ui.canvas);
  announce(ui.announce, progressLabel(s.assignments, a).spoken);
  const nextOne = s.assignments[index + 1];
  if (nextOne) { fetchImage(nextOne.image_url).catch(() => {}); if (nextOne.ground_truth_url) fetchImage(nextOne.ground_truth_url).catch(() => {}); }
  if (s.finished) endImage(st.stop_reason);
}

function decodePng(img) {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, c.width, c.height).data;
  const mask = new Uint8Array(c.width * c.height);
  for (let i = 0; i < mask.length; i++) mask[i] = px[i * 4] > 127 ? 1 : 0;
  return { mask, width: c.width, height: c.height };
}

async function next() {
  const me = await api.get("participants/me");
  s.assignments = workOrder(me.assignments);
  const index = s.assignments.findIndex((a) => !(a.status === "finished" && a.survey_answered));
  if (index < 0) { app.dataset.phase = "done"; window.location.href = config.doneUrl; return; }
  await openAssignment(index);
}

function loadFirst() {
  next().catch((err) => showError("The page could not load your task. Check your connection and press Retry.", loadFirst));
}

function start() {
  const canvas = ui.canvas;
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerleave", () => {
    clearTimeout(s.restTimer);
    if (s.maskSource === "hover") showMask(s.serverMask ?? null);
  });
  canvas.addEventListener("contextmenu", onRightClick);
  document.addEventListener("keydown", onKey);
  window.addEventListener("pagehide", saveQueueNow);
  // tool buttons hand focus back to the image, so the keys act on the image again at once
  const tool = (id, fn) => $(id).addEventListener("click", () => { fn(); canvas.focus({ preventScroll: true }); });
  tool("btn-green", () => setMode("green"));
  tool("btn-red", () => setMode("red"));
  tool("btn-clear", clearPoints);
  tool("btn-undo", undo);
  tool("btn-redo", redo);
  tool("btn-size", toggleSize);
  tool("btn-markers", toggleHollow);
  tool("btn-outline", () => { s.style = s.style === "outline" ? "fill" : "outline"; render(); });
  tool("zoom-in", () => s.views.image?.zoomAt(1.25));
  tool("zoom-out", () => s.views.image?.zoomAt(0.8));
  tool("zoom-fit", () => s.views.image?.reset());
  $("btn-help").addEventListener("click", () => ui.help.showModal());
  $("help-close").addEventListener("click", () => ui.help.close());
  ui.opacity.addEventListener("input", () => setOpacity(Number(ui.opacity.value) / 100));
  ui.finish.addEventListener("click", askFinish);
  $("confirm-yes").addEventListener("click", () => { ui.confirm.close(); enqueue("finish"); });
  $("confirm-no").addEventListener("click", () => { ui.confirm.close(); canvas.focus({ preventScroll: true }); });
  ui.survey.addEventListener("cancel", (e) => e.preventDefault());  // Escape does not skip the question
  $("survey-yes").addEventListener("click", () => answerSurvey("yes"));
  $("survey-no").addEventListener("click", () => answerSurvey("no"));
  new ResizeObserver(() => layout()).observe(ui.stage);
  loadFirst();
}

start();
