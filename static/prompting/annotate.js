// The prompting annotation page (docs/design.md "Prompting protocol"): three panels, keys g / r /
// space / z, left click adds, right click removes the nearest point of the current mode.
// The server is the source of truth: the page sends actions, one at a time in `seq` order, and
// draws the point sets, round, mask and score the answers carry. Clicks made while a request is
// out are queued and shown as pending; failed requests are retried with the same
// client_event_id and seq, then reported with a Retry button. Re-opening resumes from
// GET /api/v1/assignments/<id> (next_seq, points, last result).
import { Api, ApiFailure } from "../core/api.js";
import { COLORS, View, displayScale, loadImage, pngMaskLayer, rleLayer } from "../core/canvas_view.js";

const config = JSON.parse(document.getElementById("annotate-config").textContent);
const $ = (id) => document.getElementById(id);
const app = $("app");

const ui = {
  progress: $("progress"), round: $("round"), mode: $("mode"), counts: $("counts"), pending: $("pending"),
  banner: $("banner"), error: $("error"), errorText: $("error-text"), retry: $("retry"), score: $("score"),
  maskNote: $("mask-note"), finish: $("finish"), survey: $("survey"), workspace: $("workspace"), timestep: $("timestep"),
};

const api = new Api({
  onRetry: (attempt, total, err) => showPending(`Connection problem (${err.message}): retrying ${attempt}/${total}…`),
});

const s = {
  assignments: [], index: 0, assignment: null, image: null, gtLayer: null, maskLayer: null,
  views: {}, mode: "green", radius: 5, seq: 0, round: 1, timesteps: 0, green: [], red: [],
  score: null, queue: [], sending: false, stalled: false, finished: false, blocked: false,
};

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// ---------- rendering ----------

function render() {
  const pending = s.queue.filter((q) => q.action === "add" || q.action === "remove");
  const pts = { green: s.green, red: s.red, pending, radius: s.radius };
  s.views.image?.draw({ image: s.image, ...pts });
  s.views.gt?.draw({ image: s.image, dim: 0.45, layers: [s.gtLayer], ...pts });
  s.views.mask?.draw({ image: s.image, layers: [s.maskLayer], ...pts });
  ui.mode.textContent = s.mode === "green" ? "GREEN · on the object" : "RED · not the object";
  ui.mode.className = `mode ${s.mode}`;
  app.dataset.mode = s.mode;
  ui.round.textContent = `Round ${s.round} of ${config.maxRounds}`;
  ui.progress.textContent = `Image ${s.index + 1} of ${s.assignments.length}`;
  ui.counts.textContent = `${s.green.length} green · ${s.red.length} red`;
  ui.timestep.textContent = `${s.timesteps} prediction${s.timesteps === 1 ? "" : "s"}`;
  if (ui.score) ui.score.textContent = s.score === null ? "–" : s.score.toFixed(3);
  app.dataset.seq = String(s.seq);
  app.dataset.round = String(s.round);
  app.dataset.timesteps = String(s.timesteps);
  app.dataset.green = String(s.green.length);
  app.dataset.red = String(s.red.length);
  app.dataset.queue = String(s.queue.length);
  ui.finish.disabled = s.finished || s.blocked;
  if (s.stalled) showPending("Not saved yet — press Retry.");
  else if (!s.queue.length && !s.sending) hidePending();
  else showPending(s.queue.length > 1 ? `Waiting for the model… (${s.queue.length} actions queued)` : "Waiting for the model…");
}

function showPending(text) { ui.pending.textContent = text; ui.pending.hidden = false; app.dataset.busy = "1"; }
function hidePending() { ui.pending.hidden = true; app.dataset.busy = "0"; }

function showBanner(text, kind = "info") {
  ui.banner.textContent = text;
  ui.banner.className = `banner ${kind}`;
  ui.banner.hidden = false;
}

function showError(text, onRetry) {
  ui.errorText.textContent = text;
  ui.error.hidden = false;
  ui.retry.hidden = !onRetry;
  ui.retry.onclick = onRetry ? () => { ui.error.hidden = true; onRetry(); } : null;
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

function applyResult(res) {
  s.seq = res.seq + 1;
  s.green = res.green; s.red = res.red;
  if (res.timestep !== null && res.timestep !== undefined) {
    s.timesteps = res.timestep + 1;
    s.maskLayer = res.mask_rle ? rleLayer(res.mask_rle, COLORS.mask) : null;
    s.score = res.iou;
    setMaskNote(config.showScore ? "" : "Score hidden in this study.");
  } else if (res.action !== "finish") {
    s.maskLayer = null; s.score = null;
    setMaskNote(needsMore(res.green, res.red) || "No prediction for this change.");
  }
  if (res.round_ended && !res.finished) {
    showBanner(`Round ${res.round} ended: the mask did not improve for several predictions. All points were cleared — round ${res.next_round} of ${config.maxRounds} starts now.`, "reset");
    s.round = res.next_round; s.green = []; s.red = []; s.maskLayer = null; s.score = null;
    s.queue.length = 0;  // clicks queued before the reset belong to the old round: drop them
    setMaskNote(needsMore([], []));
  } else if (ui.banner.classList.contains("info") || (ui.banner.classList.contains("reset") && res.timestep !== null)) {
    ui.banner.hidden = true;  // hints go with the next action, the reset notice with the next mask
  }
  if (res.finished) endImage(res.stop_reason);
}

function endImage(reason) {
  s.finished = true;
  s.queue.length = 0;
  const why = reason === "stagnation" ? "The last round ended without further improvement, so this image is done." : "You finished this image.";
  showBanner(why, "done");
  openSurvey();
}

// ---------- sending actions ----------

function enqueue(action, extra = {}) {
  if (s.finished || s.blocked || s.queue.some((q) => q.action === "finish")) return;
  s.queue.push({ cid: newId(), action, mode: s.mode, client_ts: Date.now(), ...extra });
  render();
  pump();
}

async function pump() {
  if (s.sending || s.stalled) return;
  s.sending = true;
  render();
  while (s.queue.length && !s.finished) {
    const item = s.queue[0];
    if (item.seq === undefined) item.seq = s.seq;  // fixed once: a retry sends the same seq
    const body = { client_event_id: item.cid, seq: item.seq, action: item.action, client_ts: item.client_ts };
    if (item.action === "add" || item.action === "remove") Object.assign(body, { mode: item.mode, x: item.x, y: item.y });
    let res;
    try {
      res = await api.post(`assignments/${s.assignment.id}/events`, body);
    } catch (err) {
      s.sending = false;
      await failed(item, err);
      return;
    }
    if (s.queue[0] === item) s.queue.shift();
    ui.error.hidden = true;
    applyResult(res);
    render();
  }
  s.sending = false;
  render();
}

async function failed(item, err) {
  const status = err instanceof ApiFailure ? err.status : 0;
  if (status === 409 && err.data.expected_seq !== undefined) {
    // another tab or a lost answer moved the log on: take the server's state and drop the queue
    s.queue.length = 0;
    await loadState(s.assignment);
    showError(`Your view was out of date (${err.message}); it now shows what the server has stored.`);
  } else if (status === 400 || status === 403 || status === 404 || status === 409) {
    s.queue.shift();
    showError(`This action was not accepted: ${err.message}`);
    if (status === 409) s.blocked = true;  // study closed or image finished elsewhere
  } else {
    s.stalled = true;
    showError(`Your action could not be saved after several tries (${err.message}). It is kept: press Retry.`, () => { s.stalled = false; pump(); });
    render();
    return;
  }
  render();
  pump();
}

// ---------- input ----------

function setMode(mode) { s.mode = mode; render(); }

function onLeftClick(event) {
  event.preventDefault();
  const [x, y] = s.views.image.pixelAt(event);
  enqueue("add", { x, y });
}

function onRightClick(event) {
  event.preventDefault();
  const [x, y] = s.views.image.pixelAt(event);
  const mine = s.mode === "green" ? s.green : s.red;
  if (!mine.length && !s.queue.length) { showBanner(`There is no ${s.mode} point to remove.`, "info"); return; }
  enqueue("remove", { x, y });
}

function onKey(event) {
  if (event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement || event.ctrlKey || event.metaKey || event.altKey) return;
  if (!ui.survey.hidden) return;
  const key = event.key.toLowerCase();
  if (key === "g") setMode("green");
  else if (key === "r") setMode("red");
  else if (key === " " || event.code === "Space") {
    event.preventDefault();
    if (s.green.length || s.red.length || s.queue.length) enqueue("clear");
  } else if (key === "z") { s.radius = s.radius === 5 ? 9 : 5; render(); }
}

// ---------- the survey and the sequence of images ----------

function openSurvey() {
  ui.finish.disabled = true;
  ui.survey.hidden = false;
  app.dataset.phase = "survey";
  ui.survey.querySelectorAll("button").forEach((b) => { b.disabled = false; });
}

async function answerSurvey(answer) {
  ui.survey.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  showPending("Saving your answer…");
  try {
    await api.post(`assignments/${s.assignment.id}/survey`, { answers: { answer, question: config.surveyQuestion } });
  } catch (err) {
    hidePending();
    showError(`Your answer was not saved (${err.message}).`, () => answerSurvey(answer));
    return;
  }
  hidePending();
  ui.survey.hidden = true;
  loadFirst();
}

async function loadState(assignment) {
  const st = await api.get(`assignments/${assignment.id}`);
  s.seq = st.next_seq; s.round = st.round; s.timesteps = st.timestep;
  s.green = st.green; s.red = st.red; s.maskLayer = null; s.score = null;
  s.finished = st.status === "finished";
  const last = st.last;
  const same = last && !last.round_ended && JSON.stringify(last.green) === JSON.stringify(st.green) && JSON.stringify(last.red) === JSON.stringify(st.red);
  if (same && last.mask_rle) { s.maskLayer = rleLayer(last.mask_rle, COLORS.mask); s.score = last.iou; setMaskNote(""); }
  else setMaskNote(needsMore(st.green, st.red) || "Change a point to see the model's mask.");
  return st;
}

async function openAssignment(index) {
  s.index = index;
  s.assignment = s.assignments[index];
  s.queue.length = 0; s.blocked = false;
  ui.banner.hidden = true; ui.error.hidden = true; ui.survey.hidden = true;
  app.dataset.phase = "loading";
  const a = s.assignment;
  const [image, st] = await Promise.all([loadImage(a.image_url), loadState(a)]);
  s.image = image;
  s.gtLayer = a.ground_truth_url ? pngMaskLayer(await loadImage(a.ground_truth_url), COLORS.gt) : null;
  const scale = displayScale(a.width, a.height);
  s.views.image = new View($("canvas-image"), a.width, a.height, scale);
  if (config.showGroundTruth && $("canvas-gt")) s.views.gt = new View($("canvas-gt"), a.width, a.height, scale);
  s.views.mask = new View($("canvas-mask"), a.width, a.height, scale);
  app.dataset.assignment = String(a.id);
  app.dataset.phase = "annotate";
  ui.workspace.hidden = false;
  render();
  if (s.finished) endImage(st.stop_reason);
}

async function next() {
  const me = await api.get("participants/me");
  s.assignments = me.assignments.slice().sort((a, b) => a.order - b.order);
  const index = s.assignments.findIndex((a) => !(a.status === "finished" && a.survey_answered));
  if (index < 0) { app.dataset.phase = "done"; window.location.href = config.doneUrl; return; }
  await openAssignment(index);
}

function loadFirst() {
  next().catch((err) => showError(`The page could not load your task (${err.message}).`, loadFirst));
}

function start() {
  const canvas = $("canvas-image");
  canvas.addEventListener("click", onLeftClick);
  canvas.addEventListener("contextmenu", onRightClick);
  document.addEventListener("keydown", onKey);
  $("btn-green").addEventListener("click", () => setMode("green"));
  $("btn-red").addEventListener("click", () => setMode("red"));
  $("btn-clear").addEventListener("click", () => onKey({ key: " ", code: "Space", target: document.body, preventDefault() {} }));
  $("btn-size").addEventListener("click", () => { s.radius = s.radius === 5 ? 9 : 5; render(); });
  ui.finish.addEventListener("click", () => enqueue("finish"));
  $("survey-yes").addEventListener("click", () => answerSurvey("yes"));
  $("survey-no").addEventListener("click", () => answerSurvey("no"));
  loadFirst();
}

start();
