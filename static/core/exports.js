// The export list of an analysis page refreshes itself while a job is queued or running:
// it polls GET /api/v1/studies/<id>/exports and redraws the list; it stops when every job
// has ended. Failures are shown, not hidden.
const list = document.getElementById("export-list");
const stamp = document.getElementById("export-updated");
const PERIOD_MS = 1500;
let timer = null;

function busy() {
  return [...list.querySelectorAll("li[data-status]")].some(
    (li) => li.dataset.status === "queued" || li.dataset.status === "running",
  );
}

function item(job) {
  const li = document.createElement("li");
  li.dataset.status = job.status;
  li.append(`#${job.id} ${job.format}: `);
  const status = document.createElement("span");
  status.className = `status ${job.status}`;
  status.textContent = job.status;
  li.append(status, ` (${job.progress.toFixed(2)}) `);
  if (job.download_url) {
    const a = document.createElement("a");
    a.href = job.download_url;
    a.textContent = "download";
    li.append(a);
  }
  if (job.error) {
    const err = document.createElement("span");
    err.className = "error";
    err.textContent = ` ${job.error}`;
    li.append(err);
  }
  return li;
}

async function refresh() {
  try {
    const response = await fetch(list.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const { exports } = await response.json();
    list.replaceChildren(...exports.slice(0, 10).map(item));
    stamp.textContent = `updated ${new Date().toLocaleTimeString()}`;
    stamp.classList.remove("error");
  } catch (err) {
    stamp.textContent = `could not update (${err.message}); retrying`;
    stamp.classList.add("error");
  }
  schedule();
}

function schedule() {
  clearTimeout(timer);
  if (busy()) timer = setTimeout(refresh, PERIOD_MS);
}

schedule();
