// Live progress on the study page: re-fetch the server-rendered progress tables every few
// seconds (and at once when the tab becomes visible again), with the page's own search, sort
// and page (location.search). Failures are shown, not hidden. Copy buttons copy a link.
const box = document.getElementById("progress");
const stamp = document.getElementById("progress-updated");
const PERIOD_MS = 3000;

async function refresh() {
  try {
    const response = await fetch(box.dataset.url + location.search, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    box.innerHTML = await response.text();
    stamp.textContent = `updated ${new Date().toLocaleTimeString()}`;
    stamp.classList.remove("error");
  } catch (err) {
    stamp.textContent = `could not update (${err.message}); retrying`;
    stamp.classList.add("error");
  }
}

setInterval(() => { if (!document.hidden && !typing()) refresh(); }, PERIOD_MS);
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });

// A text field being typed in (an exclusion reason) would be wiped by the refresh: wait.
function typing() {
  return box.contains(document.activeElement) && document.activeElement.tagName === "INPUT";
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy-button");
  if (!button) return;
  const text = document.getElementById(button.dataset.target)?.textContent.trim()
    ?? button.dataset.text;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "copied";
  } catch {
    button.textContent = "select and copy";
  }
  setTimeout(() => { button.textContent = "copy"; }, 1500);
});
