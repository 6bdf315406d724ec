// A plain prompting page: click -> event -> mask and IoU. The full annotation UI replaces it.
import { decodeRle } from "./rle.js";

const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
const app = document.getElementById("app");
let mode = "green", assignment = null, seq = 0, img = new Image();

async function api(path, body) {
  const opts = body ? { method: "POST", headers: { "Content-Type": "application/json", "X-CSRFToken": csrf }, body: JSON.stringify(body) } : {};
  const r = await fetch(`/api/v1/${path}`, { credentials: "same-origin", ...opts });
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function draw(state, maskRle) {
  const c = document.getElementById("canvas-image"), m = document.getElementById("canvas-mask");
  for (const cv of [c, m]) { cv.width = img.width; cv.height = img.height; cv.getContext("2d").drawImage(img, 0, 0); }
  const ctx = c.getContext("2d");
  for (const [pts, color] of [[state.green, "#0c0"], [state.red, "#e00"]]) {
    ctx.fillStyle = color;
    for (const [x, y] of pts) { ctx.beginPath(); ctx.arc(x, y, 3, 0, 7); ctx.fill(); }
  }
  if (maskRle) {
    const { mask, width, height } = decodeRle(maskRle);
    const mctx = m.getContext("2d"), data = mctx.getImageData(0, 0, width, height);
    for (let i = 0; i < mask.length; i++) if (mask[i]) { data.data[i * 4] = 30; data.data[i * 4 + 1] = 144; data.data[i * 4 + 2] = 255; }
    mctx.putImageData(data, 0, 0);
  }
}

async function next() {
  const me = await api("participants/me");
  const a = me.assignments.find((x) => x.status !== "finished");
  if (!a) { window.location.href = app.dataset.doneUrl; return; }
  assignment = a;
  const st = await api(`assignments/${a.id}`);
  seq = st.next_seq;
  img = new Image();
  img.onload = () => draw(st, st.last && st.last.mask_rle);
  img.src = a.image_url;
  document.getElementById("status").textContent = `Image ${a.order + 1} of ${me.assignments.length}, round ${st.round}`;
}

document.getElementById("canvas-image").addEventListener("click", async (ev) => {
  const rect = ev.target.getBoundingClientRect();
  const x = (ev.clientX - rect.left) * (img.width / rect.width), y = (ev.clientY - rect.top) * (img.height / rect.height);
  const res = await api(`assignments/${assignment.id}/events`, { client_event_id: crypto.randomUUID(), seq, action: "add", mode, x, y, client_ts: Date.now() });
  seq = res.seq + 1;
  draw(res, res.mask_rle);
  document.getElementById("score").textContent = res.iou === null ? "–" : res.iou.toFixed(3);
  if (res.finished) { await api(`assignments/${assignment.id}/survey`, { answers: { suboptimal_gt: "no" } }); next(); }
});
document.addEventListener("keydown", (ev) => {
  if (ev.key === "g" || ev.key === "r") { mode = ev.key === "g" ? "green" : "red"; document.getElementById("mode").textContent = mode; }
});
document.getElementById("finish").addEventListener("click", async () => {
  await api(`assignments/${assignment.id}/finish`, {});
  await api(`assignments/${assignment.id}/survey`, { answers: { suboptimal_gt: "no" } });
  next();
});
next();
