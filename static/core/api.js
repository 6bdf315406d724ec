// The participants' JSON API from the browser: same-origin session + CSRF, JSON in and out, and
// retries with backoff for failures that a retry can fix (network errors, 5xx, 429). A retried
// POST is sent byte for byte again (same client_event_id and seq), which the server answers
// idempotently. Errors are thrown as ApiFailure with the HTTP status and the server's message.

export class ApiFailure extends Error {
  constructor(message, status, data) {
    super(message);
    this.status = status;  // 0 = no answer (network)
    this.data = data || {};
  }
  get retryable() { return this.status === 0 || this.status === 429 || this.status >= 500; }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function csrfToken() {
  const input = document.querySelector("[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

export class Api {
  /** @param {{base?: string, delaysMs?: number[], onRetry?: (attempt: number, total: number, err: ApiFailure) => void}} opts */
  constructor(opts = {}) {
    this.base = opts.base || "/api/v1/";
    this.delaysMs = opts.delaysMs || [500, 1000, 2000, 4000];
    this.onRetry = opts.onRetry || (() => {});
  }

  async once(path, body) {
    const init = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRFToken"] = csrfToken();
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(this.base + path, init);
    } catch (err) {
      throw new ApiFailure(`no answer from the server (${err.message})`, 0);
    }
    let data = {};
    try { data = await response.json(); } catch (_) { data = {}; }
    if (!response.ok) throw new ApiFailure(data.error || `${response.status} ${response.statusText}`, response.status, data);
    return data;
  }

  /** GET (body undefined) or POST, retried with backoff while the failure is retryable. */
  async call(path, body) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(path, body);
      } catch (err) {
        if (!(err instanceof ApiFailure) || !err.retryable || attempt >= this.delaysMs.length) throw err;
        this.onRetry(attempt + 1, this.delaysMs.length, err);
        await sleep(this.delaysMs[attempt]);
      }
    }
  }

  get(path) { return this.call(path); }
  post(path, body) { return this.call(path, body); }
}
