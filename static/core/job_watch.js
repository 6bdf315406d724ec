// Live progress of a page's background jobs (baselines, per-image analyses): each element with
// data-job-url and a queued or running data-status polls its job's JSON state every few
// seconds and redraws its status, count, bar and error; once every watched job has ended the
// page reloads, so the results it draws server-side appear. Failures to fetch are shown.
const PERIOD_MS = 2000;
const LIVE = new Set(["queued", "running"]);
const watched = [...document.querySelectorAll("[data-job-url]")].filter((el) => LIVE.has(el.dataset.status));

function draw(el, state) {
  el.dataset.status = state.status;
  const status = el.querySelector(".job-status");
  if (status) {
    status.textContent = el.dataset.labels === "display" ? state.label : state.status;
    status.className = `job-status status ${state.status}`;
  }
  const count = el.querySelector(".job-count");
  if (count) count.textContent = `${state.done}/${state.total}`;
  const bar = el.querySelector(".job-bar > span");
  if (bar) bar.style.width = `${Math.round(state.progress * 100)}%`;
  const error = el.querySelector(".job-error");
  if (error) error.textContent = state.error;
}

async function refresh() {
  let failed = null;
  for (const el of watched.filter((w) => LIVE.has(w.dataset.status))) {
    try {
      const response = await fetch(el.dataset.jobUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      draw(el, await response.json());
    } catch (err) {
      failed = err;
    }
  }
  for (const stamp of document.querySelectorAll(".job-updated")) {
    stamp.textContent = failed ? `could not update (${failed.message}); retrying` : `updated ${new Date().toLocaleTimeString()}`;
    stamp.classList.toggle("error", Boolean(failed));
  }
  if (!failed && watched.every((w) => !LIVE.has(w.dataset.status))) window.location.reload();
  else setTimeout(refresh, failed ? PERIOD_MS * 2 : PERIOD_MS);
}

if (watched.length) setTimeout(refresh, PERIOD_MS);
