// One job: its definition, schedule health (fire lag, misfired and skipped slots), charts of
// run durations and trigger-to-start latency, its runs (paged, filterable) and a trigger with a
// parameters form generated from the job's parameter schema where it has one.
import * as api from "./api.js";
import {
  shortId,
  ago, clock, duration, executorText, labelsText, runDuration, scheduleText, seconds, STATES, time, triggerToStart, between,
} from "./format.js";
import { Chart, ErrorBox, FieldError, HistoryStrip, html, Json, Pager, State, useEffect, usePoll, useState } from "./ui.js";

const RUNS_PAGE = 25;
const CHART_RUNS = 200;
const TRIGGERS = ["MANUAL", "SCHEDULE", "RETRY"];

function chartData(runs, ...measures) {
  const points = runs
    .map((run) => ({ at: time(run.queueTime), values: measures.map((m) => m(run)) }))
    .filter((p) => p.at && p.values.some((v) => v !== null))
    .sort((a, b) => a.at - b.at);
  return [points.map((p) => p.at.getTime() / 1000), ...measures.map((_, i) => points.map((p) => p.values[i]))];
}

const fireLag = (run) => (run.trigger === "SCHEDULE" ? between(run.slotTime, run.queueTime) : null);

/** Inputs for a JSON schema's top-level properties; values typed by the schema. */
function ParametersForm({ schema, values, setValues, defaults, error }) {
  const properties = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  return html`<div class="parameters">
    ${Object.entries(properties).map(([name, spec]) => {
      const id = `param-${name}`;
      const value = values[name] ?? "";
      const fallback = (defaults || {})[name] ?? spec.default;
      const placeholder = fallback === undefined ? "" : `default: ${typeof fallback === "string" ? fallback : JSON.stringify(fallback)}`;
      const set = (v) => setValues({ ...values, [name]: v });
      let input;
      if (Array.isArray(spec.enum)) {
        input = html`<select id=${id} value=${String(value)} onChange=${(e) => set(spec.enum[e.currentTarget.selectedIndex])}>
          ${spec.enum.map((option) => html`<option value=${String(option)}>${String(option)}</option>`)}
        </select>`;
      } else if (spec.type === "boolean") {
        input = html`<input id=${id} type="checkbox" checked=${Boolean(value)} onChange=${(e) => set(e.currentTarget.checked)} />`;
      } else if (spec.type === "number" || spec.type === "integer") {
        input = html`<input id=${id} type="number" step=${spec.type === "integer" ? 1 : "any"} value=${value} placeholder=${placeholder}
          onInput=${(e) => set(e.currentTarget.value === "" ? undefined : Number(e.currentTarget.value))} />`;
      } else if (spec.type === "object" || spec.type === "array") {
        input = html`<textarea id=${id} rows="3" onInput=${(e) => { try { set(JSON.parse(e.currentTarget.value)); } catch { /* kept until it parses */ } }}>${typeof value === "string" ? value : JSON.stringify(value)}</textarea>`;
      } else {
        input = html`<input id=${id} type="text" value=${value} placeholder=${placeholder} onInput=${(e) => set(e.currentTarget.value === "" ? undefined : e.currentTarget.value)} />`;
      }
      return html`<div class="field">
        <label for=${id}>${spec.title || name}${required.has(name) ? " *" : ""}</label>
        ${input}
        ${spec.description ? html`<small class="muted">${spec.description}</small>` : null}
        <${FieldError} error=${error} field=${`parameters.${name}`} />
      </div>`;
    })}
  </div>`;
}

function TriggerPanel({ job, onDone }) {
  const schema = job.parameterSchema && Object.keys(job.parameterSchema).length ? job.parameterSchema : null;
  const [open, setOpen] = useState(false);
  const [values, setValues] = useState({});
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const trigger = async (event) => {
    if (event) event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = schema ? { parameters: Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) } : {};
      const run = await api.post(`/api/jobs/${encodeURIComponent(job.id)}/trigger`, body);
      onDone(run);
    } catch (problem) {
      setError(problem);
    } finally {
      setBusy(false);
    }
  };
  if (!schema) {
    return html`<span>
      <button type="button" class="primary" data-write disabled=${busy} onClick=${() => trigger()}>Trigger</button>
      <${ErrorBox} error=${error} />
    </span>`;
  }
  return html`<span>
    <button type="button" class="primary" data-write aria-expanded=${open} onClick=${() => setOpen(!open)}>Trigger…</button>
    ${open
      ? html`<form class="trigger-form card" onSubmit=${trigger}>
          <h3>Parameters</h3>
          <${ParametersForm} schema=${schema} values=${values} setValues=${(v) => { setValues(v); setError(null); }} defaults=${job.parameters} error=${error} />
          <${ErrorBox} error=${error} />
          <button type="submit" class="primary" disabled=${busy} data-write>Trigger run</button>
        </form>`
      : null}
  </span>`;
}

function Definition({ job }) {
  const known = new Set(["id", "name", "description", "executor", "labels", "createTime", "updateTime", "schedule",
    "retryPolicy", "attemptTimeout", "paused", "nextFireTimes", "lastFireTime"]);
  const extra = Object.entries(job).filter(([k, v]) => !known.has(k) && v !== null && v !== "" && !(typeof v === "object" && !Object.keys(v).length));
  const retry = job.retryPolicy || {};
  return html`<dl class="facts">
    <dt>Executor</dt><dd><code>${executorText(job.executor)}</code></dd>
    <dt>Schedule</dt><dd>${scheduleText(job.schedule)}</dd>
    <dt>Next fire times</dt><dd>${(job.nextFireTimes || []).filter(time).map((t) => html`<span class="chip">${clock(t)}</span>`)}${(job.nextFireTimes || []).filter(time).length ? null : "–"}</dd>
    <dt>Retries</dt><dd>${retry.maxAttempts ? `up to ${retry.maxAttempts} attempts, backoff ${retry.initialBackoff || "default"} ×${retry.backoffMultiplier || 2}` : "default"}</dd>
    <dt>Attempt timeout</dt><dd>${job.attemptTimeout ? duration(seconds(job.attemptTimeout)) : "–"}</dd>
    <dt>Labels</dt><dd>${labelsText(job.labels) || "–"}</dd>
    ${job.description ? html`<dt>Description</dt><dd>${job.description}</dd>` : null}
    ${extra.map(([k, v]) => html`<dt>${k}</dt><dd>${typeof v === "object" ? html`<${Json} value=${v} />` : String(v)}</dd>`)}
  </dl>`;
}

function Health({ status, slots }) {
  const health = (status && status.scheduleHealth) || {};
  return html`<div class="health">
    <dl class="facts compact">
      <dt>Next fire</dt><dd>${ago(health.nextFireTime)}</dd>
      <dt>Last fire</dt><dd>${ago(health.lastFireTime)}</dd>
      <dt>Last fire lag</dt><dd>${health.lastFireLag ? duration(seconds(health.lastFireLag)) : "–"}</dd>
      <dt>Misfired slots</dt><dd>${health.misfiredSlots || "0"}</dd>
      <dt>Skipped slots</dt><dd>${health.skippedSlots || "0"}</dd>
    </dl>
    ${slots && slots.length
      ? html`<table class="compact-table">
          <caption>Skipped slots</caption>
          <thead><tr><th>Slot</th><th>Reason</th><th>Recorded</th><th>Active run</th></tr></thead>
          <tbody>
            ${slots.map((s) => html`<tr>
              <td>${clock(s.slotTime)}</td><td>${s.reason}</td><td>${ago(s.recordTime)}</td>
              <td>${s.activeRunId ? html`<a href=${`#/runs/${encodeURIComponent(s.activeRunId)}`}>${shortId(s.activeRunId)}</a>` : "–"}</td>
            </tr>`)}
          </tbody>
        </table>`
      : html`<p class="muted">No skipped slots.</p>`}
  </div>`;
}

export function JobPage({ id }) {
  const path = `/api/jobs/${encodeURIComponent(id)}`;
  const writable = api.canWrite();
  const [stateFilter, setStateFilter] = useState("");
  const [triggerFilter, setTriggerFilter] = useState("");
  const [pages, setPages] = useState([""]);
  const [page, setPage] = useState(0);
  const [actionError, setActionError] = useState(null);
  useEffect(() => { setPages([""]); setPage(0); }, [stateFilter, triggerFilter]);
  const filter = [stateFilter && `state=${stateFilter}`, triggerFilter && `trigger=${triggerFilter}`].filter(Boolean).join(" AND ");

  const job = usePoll(() => api.get(path), [id], 5000);
  const status = usePoll(() => api.get(`${path}/status`).catch(() => null), [id], 5000);
  const slots = usePoll(() => api.get(`${path}/skipped-slots`, { pageSize: 20 }), [id], 10000);
  const runs = usePoll(() => api.get(`${path}/runs`, { pageSize: RUNS_PAGE, pageToken: pages[page], filter }), [id, filter, page, pages[page]], 3000);
  const recent = usePoll(() => api.get(`${path}/runs`, { pageSize: CHART_RUNS }), [id], 10000);

  if (job.error && !job.data) return html`<section class="page"><${ErrorBox} error=${job.error} /></section>`;
  if (!job.data) return html`<section class="page"><p class="muted">Loading…</p></section>`;
  const j = job.data;
  const recentRuns = (recent.data && recent.data.runs) || [];
  const list = (runs.data && runs.data.runs) || [];
  const next = runs.data && runs.data.nextPageToken;

  const act = async (action) => {
    setActionError(null);
    try {
      await action();
      job.reload();
      runs.reload();
    } catch (error) {
      setActionError(error);
    }
  };
  const remove = () =>
    act(async () => {
      if (!window.confirm(`Delete job ${j.name}? Its runs are deleted too.`)) return;
      await api.del(path);
      window.location.hash = "#/jobs";
    });

  return html`<section class="page">
    <nav class="crumbs"><a href="#/jobs">Jobs</a> ›</nav>
    <header class="page-head">
      <h1>${j.name} ${j.paused ? html`<span class="badge">paused</span>` : null}</h1>
      <div class="toolbar">
        ${writable
          ? html`<${TriggerPanel} job=${j} onDone=${(run) => { window.location.hash = `#/runs/${encodeURIComponent(run.id)}`; }} />
              <button type="button" data-write onClick=${() => act(() => api.post(`${path}:${j.paused ? "resume" : "pause"}`))}>${j.paused ? "Resume" : "Pause"}</button>
              <a class="button" data-write href=${`#/jobs/${encodeURIComponent(id)}/edit`}>Edit</a>
              <button type="button" class="danger" data-write onClick=${remove}>Delete</button>`
          : null}
      </div>
    </header>
    <${ErrorBox} error=${actionError} />
    <div class="columns">
      <div class="card"><h2>Definition</h2><${Definition} job=${j} /></div>
      <div class="card"><h2>Schedule health</h2><${Health} status=${status.data} slots=${slots.data && slots.data.skippedSlots} /></div>
    </div>
    <div class="charts">
      <${Chart} title="Run duration" series=${["duration"]} data=${chartData(recentRuns, runDuration)} />
      <${Chart} title="Trigger to start" series=${["trigger→start"]} data=${chartData(recentRuns, triggerToStart)} />
      <${Chart} title="Fire lag (scheduled runs)" series=${["fire lag"]} data=${chartData(recentRuns, fireLag)} />
    </div>
    <div class="card">
      <header class="card-head">
        <h2>Runs</h2>
        <${HistoryStrip} runs=${recentRuns.slice(0, 30)} />
        <form class="filters inline" onSubmit=${(e) => e.preventDefault()}>
          <label>State <select name="run-state" value=${stateFilter} onChange=${(e) => setStateFilter(e.currentTarget.value)}>
            <option value="">any</option>${STATES.map((s) => html`<option value=${s}>${s}</option>`)}
          </select></label>
          <label>Trigger <select name="run-trigger" value=${triggerFilter} onChange=${(e) => setTriggerFilter(e.currentTarget.value)}>
            <option value="">any</option>${TRIGGERS.map((s) => html`<option value=${s}>${s}</option>`)}
          </select></label>
        </form>
      </header>
      <${ErrorBox} error=${runs.error} />
      <div class="table-wrap">
        <table class="runs">
          <thead><tr><th>Run</th><th>State</th><th>Trigger</th><th>Queued</th><th>Trigger→start</th><th>Duration</th><th>Attempt</th><th>Worker / waiting</th></tr></thead>
          <tbody>
            ${list.map((run) => html`<tr key=${run.id}>
              <td><a href=${`#/runs/${encodeURIComponent(run.id)}`}><code>${shortId(run.id)}</code></a></td>
              <td data-label="State"><${State} state=${run.state} /></td>
              <td data-label="Trigger">${run.trigger}</td>
              <td data-label="Queued" title=${clock(run.queueTime)}>${ago(run.queueTime)}</td>
              <td data-label="Trigger→start">${duration(triggerToStart(run))}</td>
              <td data-label="Duration">${duration(runDuration(run))}</td>
              <td data-label="Attempt">${run.attempt}</td>
              <td data-label="Worker" class="ellipsis">${run.waitingReason ? html`<span class="waiting">${run.waitingReason}</span>` : run.workerId || "–"}</td>
            </tr>`)}
          </tbody>
        </table>
        ${!runs.loading && !list.length ? html`<p class="muted empty">No runs.</p>` : null}
      </div>
      <${Pager} hasPrevious=${page > 0} hasNext=${Boolean(next)} onPrevious=${() => setPage(page - 1)}
        onNext=${() => { setPages((p) => [...p.slice(0, page + 1), next]); setPage(page + 1); }} />
    </div>
  </section>`;
}
