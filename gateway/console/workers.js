// Workers and queues: overall health from /actuator/health, and from the aggregated metrics
// (/actuator/prometheus: the schedulers' view) the connected workers with their slots and busy
// slots, queue depths (work and dead-letter queues), the outbox backlog and active leases.
// When ListWorkers exists (GET /api/workers), its answer is listed too.
import * as api from "./api.js";
import { ErrorBox, html, Json, usePoll } from "./ui.js";

/** Samples of a Prometheus text exposition: [{name, labels, value}]. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]] = pair[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

async function metrics() {
  const response = await fetch("/actuator/prometheus", {
    headers: { Authorization: `Bearer ${api.token()}` },
    credentials: "omit",
    cache: "no-store",
  });
  if (!response.ok) throw new api.ApiError(response.status, { message: `metrics: HTTP ${response.status}` });
  return parseMetrics(await response.text());
}

async function health() {
  const response = await fetch("/actuator/health", { credentials: "omit", cache: "no-store" });
  // 503 (DOWN) still carries the components.
  return response.json();
}

async function listWorkers() {
  try {
    return await api.get("/api/workers");
  } catch (error) {
    if (error.status === 404 || error.status === 501) return null; // not in this version of the API
    throw error;
  }
}

function Components({ data }) {
  const components = Object.entries((data && data.components) || {});
  return html`<div class="components">
    ${components.map(([name, c]) => html`<div class=${`component ${c.status === "UP" ? "up" : "down"}`} data-component=${name}>
      <div class="component-head"><strong>${name}</strong> <span class="status">${c.status}</span></div>
      ${c.details ? html`<dl class="facts compact">${Object.entries(c.details).map(([k, v]) => html`<dt>${k}</dt><dd>${typeof v === "object" ? JSON.stringify(v) : String(v)}</dd>`)}</dl>` : null}
    </div>`)}
  </div>`;
}

export function WorkersPage() {
  const status = usePoll(health, [], 3000);
  const samples = usePoll(metrics, [], 3000);
  const workers = usePoll(listWorkers, [], 5000);
  const all = samples.data || [];
  const pick = (name) => all.filter((s) => s.name === name);
  const busy = Object.fromEntries(pick("taskmesh_connected_worker_busy_slots").map((s) => [s.labels.worker, s.value]));
  const slots = pick("taskmesh_connected_worker_slots");
  const queues = pick("taskmesh_queue_messages");
  const consumers = Object.fromEntries(pick("taskmesh_queue_consumers").map((s) => [s.labels.queue, s.value]));
  const single = (name) => {
    const found = pick(name);
    return found.length ? found.reduce((sum, s) => sum + s.value, 0) : "–";
  };
  const overall = status.data && status.data.status;
  return html`<section class="page">
    <header class="page-head"><h1>Workers and queues</h1>
      <span class=${`overall ${overall === "UP" ? "up" : "down"}`} data-overall=${overall || ""}>Mesh ${overall || "…"}</span>
    </header>
    <div class="card"><h2>Health</h2><${ErrorBox} error=${status.error} /><${Components} data=${status.data} /></div>
    <div class="columns">
      <div class="card">
        <h2>Connected workers</h2>
        ${samples.error ? html`<p class="muted">Metrics are not readable with this token (${samples.error.message}).</p>` : null}
        <table class="compact-table workers">
          <thead><tr><th>Worker</th><th>Slots</th><th>Busy</th><th>Use</th></tr></thead>
          <tbody>
            ${slots.map((s) => {
              const used = busy[s.labels.worker] || 0;
              return html`<tr><td><code>${s.labels.worker}</code></td><td>${s.value}</td><td>${used}</td>
                <td><meter min="0" max=${s.value || 1} value=${used}></meter></td></tr>`;
            })}
          </tbody>
        </table>
        ${!samples.error && samples.data && !slots.length ? html`<p class="muted">No worker connected.</p>` : null}
      </div>
      <div class="card">
        <h2>Queues</h2>
        <table class="compact-table queues">
          <thead><tr><th>Queue</th><th>Messages</th><th>Consumers</th></tr></thead>
          <tbody>
            ${queues.map((q) => html`<tr class=${q.labels.queue.endsWith(".dead") ? "dead" : ""}>
              <td><code>${q.labels.queue}</code>${q.labels.queue.endsWith(".dead") ? " (dead letters)" : ""}</td>
              <td>${q.value}</td><td>${consumers[q.labels.queue] ?? "–"}</td></tr>`)}
          </tbody>
        </table>
        <dl class="facts compact">
          <dt>Outbox backlog</dt><dd>${single("taskmesh_outbox_backlog")}</dd>
          <dt>Active leases</dt><dd>${single("taskmesh_active_leases")}</dd>
          <dt>Workers connected</dt><dd>${single("taskmesh_workers_connected")}</dd>
        </dl>
      </div>
    </div>
    ${workers.data ? html`<div class="card"><h2>Workers (ListWorkers)</h2><${Json} value=${workers.data} /></div>` : null}
  </section>`;
}
