// Live progress of a trust evaluation: poll its small JSON state every few seconds while it is
// queued or running, and reload the page once it is done or failed (the summary, plots and
// downloads are drawn server-side). Failures to fetch are shown, not hidden.
const box = document.getElementById("trust-progress");
const PERIOD_MS = 2000;
const FINAL = new Set(["done", "failed"]);

async function refresh() {
  const stamp = document.getElementById("trust-updated");
  try {
    const response = await fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const state = await response.json();
    const status = document.getElementById("trust-status");
    status.textContent = state.status;
    status.className = `status ${state.status}`;
    document.getElementById("trust-count").textContent = `${state.done}/${state.total} images`;
    document.getElementById("trust-bar").style.width = `${Math.round(state.progress * 100)}%`;
    document.getElementById("trust-error").textContent = state.error;
    stamp.textContent = `updated ${new Date().toLocaleTimeString()}`;
    stamp.classList.remove("error");
    if (FINAL.has(state.status)) window.location.reload();
    else setTimeout(refresh, PERIOD_MS);
  } catch (err) {
    stamp.textContent = `could not update (${err.message}); retrying`;
    stamp.classList.add("error");
    setTimeout(refresh, PERIOD_MS * 2);
  }
}

if (box && !FINAL.has(box.dataset.status)) setTimeout(refresh, PERIOD_MS);
