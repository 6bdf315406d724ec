// Session replay: scrub through an assignment's logged events; each shows the point sets after
// the event, the mask of the timestep in force, and its place on the IoU-per-timestep curve
// (round boundaries dashed, the stop reason at the end). Everything drawn comes from the log.
import { COLORS, View, displayScale, loadImage, pngMaskLayer, rleLayer } from "../core/canvas_view.js";

const data = JSON.parse(document.getElementById("replay-data").textContent);
const $ = (id) => document.getElementById(id);
const events = data.events;
const timesteps = events.filter((e) => e.timestep !== null);
const layers = new Map();  // seq -> decoded mask layer (decoded once, on demand)
let image, gtLayer, view, index = events.length - 1, timer = null;

const samePoints = (a, b) => JSON.stringify(a.green) === JSON.stringify(b.green) && JSON.stringify(a.red) === JSON.stringify(b.red);

/** The timestep event whose mask is on screen after event i (none once the points changed). */
function maskEvent(i) {
  for (let j = i; j >= 0; j--) {
    const e = events[j];
    if (e.timestep !== null) return samePoints(e, events[i]) ? e : null;
  }
  return null;
}

function layerOf(e) {
  if (!e || !e.mask_rle) return null;
  if (!layers.has(e.seq)) layers.set(e.seq, rleLayer(e.mask_rle, COLORS.mask));
  return layers.get(e.seq);
}

const fmt = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(3));

function show(i) {
  index = Math.max(0, Math.min(events.length - 1, i));
  const e = events[index];
  const m = maskEvent(index);
  const showGt = $("show-gt").checked;
  view.draw({ image, layers: [showGt ? gtLayer : null, layerOf(m)], green: e.green, red: e.red, radius: 5 });
  $("scrub").value = String(index);
  $("ev-seq").textContent = `${e.seq + 1} of ${events.length}`;
  const where = e.action === "add" || e.action === "remove" ? ` ${e.mode} at (${e.x}, ${e.y})` : "";
  let action = `${e.action}${where}`;
  if (e.round_ended && !e.finished) action += " — round ended, points cleared";
  if (e.finished) action += ` — image ended (${e.stop_reason})`;
  $("ev-action").textContent = action;
  $("ev-round").textContent = String(e.round);
  $("ev-timestep").textContent = e.timestep === null ? (m ? `– (mask of ${m.timestep})` : "– (no prediction)") : String(e.timestep);
  $("ev-points").textContent = `${e.green.length} green, ${e.red.length} red`;
  $("ev-iou").textContent = fmt(m && m.iou);
  $("ev-piou").textContent = fmt(m && m.predicted_iou);
  $("ev-time").textContent = `${e.t_s.toFixed(1)} s`;
  drawCurve(m);
}

function drawCurve(current) {
  const c = $("curve"), ctx = c.getContext("2d");
  const W = c.width, H = c.height, L = 36, R = 12, T = 10, B = 28;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = "#667085"; ctx.strokeStyle = "#c7ccd6"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, H - B); ctx.lineTo(W - R, H - B); ctx.stroke();
  for (const v of [0, 0.5, 1]) { const y = H - B - v * (H - B - T); ctx.fillText(v.toFixed(1), 8, y + 4); }
  const n = timesteps.length;
  if (!n) { ctx.fillText("no timesteps", L + 10, T + 20); return; }
  const x = (t) => L + (n === 1 ? (W - L - R) / 2 : (t / (n - 1)) * (W - L - R));
  const y = (v) => H - B - (v || 0) * (H - B - T);
  ctx.fillText(`timestep (0–${n - 1})`, W / 2 - 40, H - 8);
  // round boundaries
  ctx.setLineDash([4, 4]); ctx.strokeStyle = "#e0a020";
  for (let k = 1; k < n; k++) if (timesteps[k].round !== timesteps[k - 1].round) {
    const bx = (x(k - 1) + x(k)) / 2;
    ctx.beginPath(); ctx.moveTo(bx, T); ctx.lineTo(bx, H - B); ctx.stroke();
    ctx.fillStyle = "#b07000"; ctx.fillText(`round ${timesteps[k].round}`, bx + 3, T + 10);
  }
  ctx.setLineDash([]);
  ctx.strokeStyle = "#1e90ff"; ctx.lineWidth = 2; ctx.beginPath();
  timesteps.forEach((e, k) => { if (k && timesteps[k].round !== timesteps[k - 1].round) ctx.moveTo(x(k), y(e.iou)); else if (k) ctx.lineTo(x(k), y(e.iou)); else ctx.moveTo(x(k), y(e.iou)); });
  ctx.stroke();
  let best = timesteps[0];
  for (const e of timesteps) if ((e.iou || 0) > (best.iou || 0)) best = e;
  for (const e of timesteps) { ctx.fillStyle = e === best ? "#10b020" : "#1e90ff"; ctx.beginPath(); ctx.arc(x(e.timestep), y(e.iou), e === best ? 4.5 : 2.5, 0, 7); ctx.fill(); }
  if (current) { ctx.strokeStyle = "#1d2330"; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(x(current.timestep), y(current.iou), 7, 0, 7); ctx.stroke(); }
  if (data.stop_reason) { ctx.fillStyle = "#1d2330"; ctx.textAlign = "right"; ctx.fillText(`stop: ${data.stop_reason}`, W - R, T + 10); ctx.textAlign = "left"; }
}

function play() {
  if (timer) { clearInterval(timer); timer = null; $("play").textContent = "▶ play"; return; }
  if (index >= events.length - 1) show(0);
  $("play").textContent = "❚❚ pause";
  timer = setInterval(() => { if (index >= events.length - 1) play(); else show(index + 1); }, 500);
}

async function start() {
  const [img, gt] = await Promise.all([loadImage(data.image_url), loadImage(data.mask_url)]);
  image = img; gtLayer = pngMaskLayer(gt, COLORS.gt);
  view = new View($("replay-canvas"), data.width, data.height, displayScale(data.width, data.height, 420));
  $("scrub").addEventListener("input", (ev) => show(Number(ev.target.value)));
  $("prev").addEventListener("click", () => show(index - 1));
  $("next").addEventListener("click", () => show(index + 1));
  $("play").addEventListener("click", play);
  $("show-gt").addEventListener("change", () => show(index));
  document.addEventListener("keydown", (ev) => {
    if (ev.target instanceof HTMLInputElement) return;  // the focused slider steps by itself
    if (ev.key === "ArrowLeft") show(index - 1);
    if (ev.key === "ArrowRight") show(index + 1);
  });
  show(index);
  document.getElementById("replay").dataset.ready = "1";
}

start();
