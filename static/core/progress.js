// Live progress on the study page: re-fetch the server-rendered progress tables every few
// seconds (and at once when the tab becomes visible again). Failures are shown, not hidden.
const box = document.getElementById("progress");
const stamp = document.getElementById("progress-updated");
const PERIOD_MS = 3000;

async function refresh() {
  try {
    const response = await fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    box.innerHTML = await response.text();
    stamp.textContent = `updated ${new Date().toLocaleTimeString()}`;
    stamp.classList.remove("error");
  } catch (err) {
    stamp.textContent = `could not update (${err.message}); retrying`;
    stamp.classList.add("error");
  }
}

setInterval(() => { if (!document.hidden) refresh(); }, PERIOD_MS);
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
