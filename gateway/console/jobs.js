// The jobs list: search and filters (name, label, last run state), paged; each job with its
// executor, schedule, next fire time, last run state and a strip of its recent runs.
import * as api from "./api.js";
import { ago, clock, executorKind, executorText, labelsText, quote, scheduleText, STATES, time } from "./format.js";
import { ErrorBox, HistoryStrip, html, Pager, State, useEffect, usePoll, useRef, useState } from "./ui.js";

const PAGE_SIZE = 50;
const STRIP_RUNS = 12;

/** The ListJobs filter for the form's values; null when a value cannot be expressed. */
export function jobsFilter({ name, label, state }) {
  const terms = [];
  if (name.trim()) terms.push(`name:${quote(name.trim())}`);
  if (label.trim()) {
    const [key, ...rest] = label.trim().split("=");
    if (!/^[A-Za-z0-9_.\/-]+$/.test(key)) return null;
    terms.push(rest.length ? `labels.${key}=${quote(rest.join("="))}` : `labels.${key}:""`);
  }
  if (state) terms.push(`state=${state}`);
  return terms.join(" AND ");
}

/** Runs of each job, fetched a few at a time (the strips of one page of jobs). */
async function recentRuns(jobs, signal) {
  const result = {};
  const queue = [...jobs];
  const worker = async () => {
    while (queue.length) {
      const job = queue.shift();
      try {
        const answer = await api.get(`/api/jobs/${encodeURIComponent(job.id)}/runs`, { pageSize: STRIP_RUNS }, signal);
        result[job.id] = answer.runs || [];
      } catch {
        result[job.id] = null;
      }
    }
  };
  await Promise.all(Array.from({ length: 6 }, worker));
  return result;
}

function readQuery() {
  const params = new URLSearchParams(window.location.hash.split("?")[1] || "");
  return { name: params.get("name") || "", label: params.get("label") || "", state: params.get("state") || "" };
}

function writeQuery(values) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v) params.set(k, v);
  const text = params.toString();
  window.history.replaceState(null, "", `#/jobs${text ? `?${text}` : ""}`);
}

export function JobsPage() {
  const [form, setForm] = useState(readQuery);
  const [applied, setApplied] = useState(form);
  const [pages, setPages] = useState([""]); // page tokens seen: pages[i] opens page i
  const [page, setPage] = useState(0);
  const [busy, setBusy] = useState(null);
  const [actionError, setActionError] = useState(null);
  const writable = api.canWrite();
  const filter = jobsFilter(applied);

  // Type to search: the filter applies 250 ms after the last keystroke.
  useEffect(() => {
    const timer = setTimeout(() => {
      setApplied(form);
      setPages([""]);
      setPage(0);
      writeQuery(form);
    }, 250);
    return () => clearTimeout(timer);
  }, [form.name, form.label, form.state]);

  const jobs = usePoll(
    () =>
      filter === null
        ? Promise.reject(new Error("label filter: KEY or KEY=VALUE"))
        : api.get("/api/jobs", { pageSize: PAGE_SIZE, pageToken: pages[page], filter }).then((answer) => ({ ...answer, filter })),
    [filter, page, pages[page]],
    5000,
  );
  const list = (jobs.data && jobs.data.jobs) || [];
  const ids = list.map((j) => j.id).join(",");
  const strips = usePoll(() => recentRuns(list), [ids], 10000);

  const next = jobs.data && jobs.data.nextPageToken;
  const goNext = () => {
    setPages((p) => [...p.slice(0, page + 1), next]);
    setPage(page + 1);
  };

  const toggle = async (job) => {
    setBusy(job.id);
    setActionError(null);
    try {
      await api.post(`/api/jobs/${encodeURIComponent(job.id)}:${job.paused ? "resume" : "pause"}`);
      await jobs.reload();
    } catch (error) {
      setActionError(error);
    } finally {
      setBusy(null);
    }
  };

  const set = (key) => (event) => setForm({ ...form, [key]: event.currentTarget.value });
  return html`<section class="page">
    <header class="page-head">
      <h1>Jobs</h1>
      ${writable ? html`<a class="button primary" href="#/jobs/new" data-write>New job</a>` : null}
    </header>
    <form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
      <label>Name <input type="search" name="name" value=${form.name} onInput=${set("name")} placeholder="contains…" /></label>
      <label>Label <input type="search" name="label" value=${form.label} onInput=${set("label")} placeholder="team=data" /></label>
      <label
        >Last run
        <select name="state" value=${form.state} onChange=${set("state")}>
          <option value="">any state</option>
          ${STATES.map((s) => html`<option value=${s}>${s}</option>`)}
        </select>
      </label>
    </form>
    <${ErrorBox} error=${jobs.error || actionError} />
    <div class="table-wrap">
      <table class="jobs" data-filter=${jobs.data ? jobs.data.filter : null}>
        <thead>
          <tr>
            <th>Name</th>
            <th>Executor</th>
            <th>Schedule</th>
            <th>Next fire</th>
            <th>Last run</th>
            <th>Recent runs</th>
            ${writable ? html`<th><span class="sr-only">Actions</span></th>` : null}
          </tr>
        </thead>
        <tbody>
          ${list.map((job) => {
            const runs = strips.data && strips.data[job.id];
            const next = (job.nextFireTimes || []).map(time).find(Boolean);
            return html`<tr key=${job.id} data-job=${job.name}>
              <td>
                <a href=${`#/jobs/${encodeURIComponent(job.id)}`} class="job-name">${job.name}</a>
                ${job.paused ? html` <span class="badge">paused</span>` : null}
                ${job.labels && Object.keys(job.labels).length
                  ? html`<div class="labels muted">${labelsText(job.labels)}</div>`
                  : null}
              </td>
              <td data-label="Executor"><span class="kind">${executorKind(job.executor)}</span> <span class="muted ellipsis">${executorText(job.executor)}</span></td>
              <td data-label="Schedule">${scheduleText(job.schedule)}</td>
              <td data-label="Next fire" title=${next ? clock(next.toISOString()) : ""}>${next ? ago(next.toISOString()) : "–"}</td>
              <td data-label="Last run">${runs && runs.length ? html`<${State} state=${runs[0].state} />` : html`<span class="muted">–</span>`}</td>
              <td data-label="Recent"><${HistoryStrip} runs=${runs} /></td>
              ${writable
                ? html`<td class="actions">
                    <button type="button" data-write disabled=${busy === job.id} onClick=${() => toggle(job)}>
                      ${job.paused ? "Resume" : "Pause"}
                    </button>
                  </td>`
                : null}
            </tr>`;
          })}
        </tbody>
      </table>
      ${!jobs.loading && !list.length && !jobs.error ? html`<p class="muted empty">No jobs match.</p>` : null}
      ${jobs.loading && !list.length ? html`<p class="muted empty">Loading…</p>` : null}
    </div>
    <${Pager}
      hasPrevious=${page > 0}
      hasNext=${Boolean(next)}
      onPrevious=${() => setPage(page - 1)}
      onNext=${goNext}
    />
  </section>`;
}
