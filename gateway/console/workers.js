// Workers and queues: overall health from /actuator/health; pools and workers from ListWorkers
// (GET /api/workers, any role): each pool's workers, slots and busy slots, and each worker's
// pools, executors, Python tasks, slots, busy slots and connect time, filtered by pool; from the
// aggregated metrics (/actuator/prometheus: the schedulers' view) the connected workers' slots,
// queue depths (work and dead-letter queues), the outbox backlog and active leases.
import * as api from "./api.js";
import { ago, clock } from "./format.js";
import { ErrorBox, html, usePoll, useState } from "./ui.js";

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

/** Per pool: workers, slots and busy slots, ordered by pool name. */
export function poolsOf(workers) {
  const pools = {};
  for (const worker of workers) {
    for (const pool of worker.pools || []) {
      const entry = (pools[pool] = pools[pool] || { pool, workers: 0, slots: 0, busy: 0 });
      entry.workers += 1;
      entry.slots += worker.slots || 0;
      entry.busy += worker.busySlots || 0;
    }
  }
  return Object.values(pools).sort((a, b) => a.pool.localeCompare(b.pool));
}

function Chips({ items, max = 8 }) {
  const list = items || [];
  if (!list.length) return html`<span class="muted">–</span>`;
  const shown = list.slice(0, max).map((item) => html`<span class="chip">${item}</span>`);
  if (list.length <= max) return shown;
  return html`${shown}<details class="more"><summary>${list.length - max} more</summary>
    ${list.slice(max).map((item) => html`<span class="chip">${item}</span>`)}</details>`;
}

function Pools({ workers, pool, setPool }) {
  const pools = poolsOf(workers);
  return html`<div class="card">
    <header class="card-head"><h2>Pools</h2></header>
    <div class="table-wrap">
      <table class="compact-table pools stack">
        <thead><tr><th>Pool</th><th>Workers</th><th>Slots</th><th>Busy</th><th>Use</th></tr></thead>
        <tbody>
          ${pools.map((p) => html`<tr data-pool=${p.pool} class=${p.pool === pool ? "selected" : ""}>
            <td><button type="button" class="link" aria-pressed=${p.pool === pool ? "true" : "false"}
              onClick=${() => setPool(p.pool === pool ? "" : p.pool)}>${p.pool}</button></td>
            <td data-label="Workers">${p.workers}</td><td data-label="Slots">${p.slots}</td><td data-label="Busy">${p.busy}</td>
            <td data-label="Use"><meter min="0" max=${p.slots || 1} value=${p.busy} aria-label=${`${p.busy} of ${p.slots} slots busy`}></meter></td>
          </tr>`)}
        </tbody>
      </table>
      ${!pools.length ? html`<p class="muted empty">No worker connected.</p>` : null}
    </div>
  </div>`;
}

function WorkerList({ workers, pool, setPool }) {
  const pools = poolsOf(workers).map((p) => p.pool);
  const shown = pool ? workers.filter((w) => (w.pools || []).includes(pool)) : workers;
  return html`<div class="card">
    <header class="card-head"><h2>Workers</h2>
      <form class="filters inline" onSubmit=${(e) => e.preventDefault()}>
        <label>Pool <select name="pool" value=${pool} onChange=${(e) => setPool(e.currentTarget.value)}>
          <option value="">every pool</option>${pools.map((p) => html`<option value=${p}>${p}</option>`)}
        </select></label>
      </form>
    </header>
    <div class="table-wrap">
      <table class="listed-workers stack">
        <thead><tr><th>Worker</th><th>Pools</th><th>Executors</th><th>Python tasks</th><th>Slots</th><th>Busy</th><th>Connected</th></tr></thead>
        <tbody>
          ${shown.map((w) => html`<tr key=${w.workerId} data-worker=${w.workerId}>
            <td><code>${w.workerId}</code>${w.consuming === false
              ? html` <span class="badge" title="its RabbitMQ consumer is down: it takes no work">not consuming</span>` : null}</td>
            <td data-label="Pools"><${Chips} items=${w.pools} /></td>
            <td data-label="Executors"><${Chips} items=${w.executors} /></td>
            <td data-label="Python tasks"><${Chips} items=${w.tasks} max=${4} /></td>
            <td data-label="Slots" class="slots">${w.slots || 0}</td>
            <td data-label="Busy" class="busy">${w.busySlots || 0}
              <meter min="0" max=${w.slots || 1} value=${w.busySlots || 0} aria-label=${`${w.busySlots || 0} of ${w.slots || 0} slots busy`}></meter></td>
            <td data-label="Connected" title=${clock(w.connectTime)}>${ago(w.connectTime)}</td>
          </tr>`)}
        </tbody>
      </table>
      ${!shown.length ? html`<p class="muted empty">No worker${pool ? " serves this pool" : " connected"}.</p>` : null}
    </div>
  </div>`;
}

export function WorkersPage() {
  const status = usePoll(health, [], 3000);
  const samples = usePoll(metrics, [], 3000);
  const workers = usePoll(listWorkers, [], 3000);
  const [pool, setPool] = useState("");
  const listed = (workers.data && workers.data.workers) || [];
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
    <${ErrorBox} error=${workers.error} />
    ${workers.data
      ? html`<${Pools} workers=${listed} pool=${pool} setPool=${setPool} /><${WorkerList} workers=${listed} pool=${pool} setPool=${setPool} />`
      : null}
    <div class="columns">
      <div class="card">
        <h2>Connected workers (metrics)</h2>
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
  </section>`;
}
