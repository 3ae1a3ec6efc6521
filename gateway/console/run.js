// One run: its state and every attempt on a timeline (queued, started, finished, worker,
// error), the live log tail through WatchRun (the gateway's streaming REST route), its output,
// cancel and retry. Fields this page does not know (newer API versions) are listed as JSON.
import * as api from "./api.js";
import { shortId, ago, clock, duration, FINISHED, newerRun, runDuration, time, triggerToStart, waitingCode } from "./format.js";
import { ErrorBox, html, Json, State, useEffect, useRef, useState } from "./ui.js";

const MAX_LINES = 5000;
const KNOWN = new Set(["id", "jobId", "jobName", "state", "attempt", "trigger", "queueTime", "startTime", "finishTime",
  "workerId", "result", "error", "attempts", "slotTime", "retryTime", "idempotencyKey", "retriedFromRunId",
  "cancelTime", "version", "waitingReason", "output", "parameters"]);

const ATTEMPT_KNOWN = new Set(["attempt", "workerId", "startTime", "finishTime", "state", "result", "error"]);

/** The run and its log lines, live: WatchRun sends the current state and earlier lines first. */
function useWatch(id) {
  const [run, setShownRun] = useState(null);
  const setRun = (offered) => setShownRun((shown) => newerRun(shown, offered));
  const [lines, setLines] = useState([]);
  const [error, setError] = useState(null);
  const [live, setLive] = useState(false);
  useEffect(() => {
    let stopped = false;
    let controller = null;
    let finished = false;
    setShownRun(null);
    setLines([]);
    const follow = async () => {
      while (!stopped && !finished) {
        controller = new AbortController();
        const fresh = [];
        let latest = null;
        let flush = null;
        const push = () => {
          flush = null;
          if (latest) setRun(latest);
          const batch = fresh.splice(0);
          if (batch.length) setLines((old) => [...old, ...batch].slice(-MAX_LINES));
        };
        let first = true;
        let finishedBefore = false;
        try {
          setLive(true);
          setLines([]); // a new watch resends every line
          await api.stream(`/api/runs/${encodeURIComponent(id)}/watch`, (event) => {
            if (event.run) {
              latest = event.run;
              if (FINISHED.has(event.run.state)) {
                finished = true;
                finishedBefore = first;
              }
              first = false;
            }
            if (event.log) fresh.push(event.log);
            // Many lines at once render once per frame, not once per line.
            if (!flush) flush = requestAnimationFrame(push);
          }, controller.signal);
          push();
          setError(null);
          // A watch of a finished run sends the run only: its lines come from ListRunLogs.
          if (finishedBefore && !stopped) setLines(await storedLines(id));
        } catch (problem) {
          if (stopped) return;
          push();
          setError(problem);
          if (problem.status === 404 || problem.status === 403) return;
        } finally {
          setLive(false);
        }
        if (!finished && !stopped) await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    };
    follow();
    return () => {
      stopped = true;
      if (controller) controller.abort();
    };
  }, [id]);
  return { run, lines, error, live, setRun };
}

/** The last MAX_LINES lines of a run, oldest first (ListRunLogs pages of 1000). */
async function storedLines(id) {
  let lines = [];
  let pageToken = "";
  for (let pages = 0; pages < 50; pages++) {
    const answer = await api.get(`/api/runs/${encodeURIComponent(id)}/logs`, { pageSize: 1000, pageToken });
    lines = [...lines, ...(answer.lines || [])].slice(-MAX_LINES);
    pageToken = answer.nextPageToken;
    if (!pageToken) break;
  }
  return lines;
}

function Timeline({ run }) {
  const attempts = run.attempts && run.attempts.length ? run.attempts : [];
  const start = time(run.queueTime);
  const end = time(run.finishTime) || new Date();
  const span = start ? Math.max(1, end - start) : 1;
  const pct = (value) => (start && time(value) ? `${Math.max(0, Math.min(100, ((time(value) - start) / span) * 100))}%` : "0%");
  return html`<ol class="timeline">
    <li class="event"><span class="dot"></span><strong>Queued</strong> <time>${clock(run.queueTime)}</time> · ${run.trigger}
      ${run.slotTime && time(run.slotTime) ? html` · slot ${clock(run.slotTime)}` : null}</li>
    ${attempts.map((a) => {
      const left = pct(a.startTime);
      const right = time(a.finishTime) ? pct(a.finishTime) : "100%";
      const width = `calc(${right} - ${left})`;
      return html`<li class="attempt" data-attempt=${a.attempt}>
        <div class="attempt-head">
          <strong>Attempt ${a.attempt}</strong> <${State} state=${a.state} />
          <span class="muted">worker ${a.workerId || "–"}</span>
        </div>
        <div class="bar-track" aria-hidden="true"><div class=${`bar state-${(a.state || "").toLowerCase()}`} style=${{ left, width }}></div></div>
        <div class="muted">started ${clock(a.startTime)} · finished ${clock(a.finishTime)} · ${duration(runDuration(a))}</div>
        ${a.error && a.error.kind ? html`<div class="error-line">${a.error.kind}: ${a.error.message}${a.error.retryable ? " (retryable)" : ""}</div>` : null}
        ${a.result ? html`<${Result} result=${a.result} />` : null}
        ${Object.entries(a)
          .filter(([k, v]) => !ATTEMPT_KNOWN.has(k) && v !== null && !(typeof v === "object" && !Object.keys(v).length))
          .map(([k, v]) => html`<details class="attempt-extra"><summary>${k}</summary><${Json} value=${v} /></details>`)}
      </li>`;
    })}
    ${run.retryTime && time(run.retryTime) && run.state === "RETRY_WAIT"
      ? html`<li class="event"><span class="dot"></span><strong>Next attempt</strong> ${ago(run.retryTime)}</li>`
      : null}
    ${run.cancelTime && time(run.cancelTime) ? html`<li class="event"><span class="dot"></span><strong>Cancel asked</strong> <time>${clock(run.cancelTime)}</time></li>` : null}
    ${time(run.finishTime) ? html`<li class="event"><span class="dot"></span><strong>Finished</strong> <time>${clock(run.finishTime)}</time> <${State} state=${run.state} /></li>` : null}
  </ol>`;
}

function Result({ result }) {
  if (result.http) return html`<div class="result">HTTP ${result.http.statusCode}${result.http.bodyExcerpt ? html`<pre class="excerpt">${result.http.bodyExcerpt}</pre>` : null}</div>`;
  if (result.shell) return html`<div class="result">exit code ${result.shell.exitCode}${result.shell.outputExcerpt ? html`<pre class="excerpt">${result.shell.outputExcerpt}</pre>` : null}</div>`;
  return Object.keys(result).length ? html`<${Json} value=${result} />` : null;
}

function LogTail({ lines, live }) {
  const box = useRef(null);
  const [follow, setFollow] = useState(true);
  useEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines.length, follow]);
  const onScroll = () => {
    const element = box.current;
    setFollow(element.scrollTop + element.clientHeight >= element.scrollHeight - 8);
  };
  return html`<div class="card">
    <header class="card-head"><h2>Log</h2>
      <span class=${live ? "live on" : "live"}>${live ? "● live" : "○ not streaming"}</span>
      <span class="muted">${lines.length} lines${lines.length >= MAX_LINES ? ` (last ${MAX_LINES})` : ""}</span>
    </header>
    <pre class="log" ref=${box} onScroll=${onScroll} tabindex="0" aria-label="run log" aria-live="off">${lines.length ? null : html`<div class="line muted">${live ? "waiting for output…" : "no output"}</div>`}${lines.map(
      (line) => html`<div class="line"><span class="ln-attempt">${line.attempt}</span><span class="ln-time">${(time(line.time) || new Date(0)).toISOString().slice(11, 23)}</span><span class="ln-text">${line.text}</span></div>`,
    )}</pre>
  </div>`;
}

export function RunPage({ id }) {
  const { run, lines, error, live, setRun } = useWatch(id);
  const [actionError, setActionError] = useState(null);
  const [fallback, setFallback] = useState(null);
  const writable = api.canWrite();
  useEffect(() => {
    // Until the stream answers (and if it cannot), the run comes from GetRun.
    api.get(`/api/runs/${encodeURIComponent(id)}`).then(setFallback, setActionError);
  }, [id]);
  const shown = run || fallback;
  if (!shown) return html`<section class="page"><${ErrorBox} error=${actionError || error} /><p class="muted">Loading…</p></section>`;
  const act = async (verb) => {
    setActionError(null);
    try {
      const answer = await api.post(`/api/runs/${encodeURIComponent(id)}:${verb}`);
      if (verb === "retry" && answer.id && answer.id !== id) window.location.hash = `#/runs/${encodeURIComponent(answer.id)}`;
      else setRun(answer);
    } catch (problem) {
      setActionError(problem);
    }
  };
  const finished = FINISHED.has(shown.state);
  const extra = Object.entries(shown).filter(([k]) => !KNOWN.has(k));
  const code = waitingCode(shown.waitingReason);
  return html`<section class="page">
    <nav class="crumbs"><a href="#/jobs">Jobs</a> › <a href=${`#/jobs/${encodeURIComponent(shown.jobId)}`}>${shown.jobName}</a> ›</nav>
    <header class="page-head">
      <h1>Run <code>${shortId(shown.id)}</code> <${State} state=${shown.state} /></h1>
      <div class="toolbar">
        ${writable && !finished && shown.state !== "CANCELLING" ? html`<button type="button" class="danger" data-write onClick=${() => act("cancel")}>Cancel run</button>` : null}
        ${writable && finished ? html`<button type="button" data-write onClick=${() => act("retry")}>Retry</button>` : null}
      </div>
    </header>
    <${ErrorBox} error=${actionError} />
    ${shown.waitingReason ? html`<div class="waiting-banner" role="status">${code ? html`<strong>${code}</strong> ` : null}${code ? shown.waitingReason.slice(code.length + 2) : shown.waitingReason}</div>` : null}
    <div class="columns">
      <div class="card">
        <h2>Attempts</h2>
        <${Timeline} run=${shown} />
      </div>
      <div class="card">
        <h2>Run</h2>
        <dl class="facts compact">
          <dt>Job</dt><dd><a href=${`#/jobs/${encodeURIComponent(shown.jobId)}`}>${shown.jobName}</a></dd>
          <dt>Trigger</dt><dd>${shown.trigger}</dd>
          <dt>Attempt</dt><dd>${shown.attempt}</dd>
          <dt>Trigger → start</dt><dd>${duration(triggerToStart(shown))}</dd>
          <dt>Duration</dt><dd>${duration(runDuration(shown))}</dd>
          <dt>Worker</dt><dd>${shown.workerId || "–"}</dd>
          ${shown.idempotencyKey ? html`<dt>Idempotency key</dt><dd><code>${shown.idempotencyKey}</code></dd>` : null}
          ${shown.retriedFromRunId ? html`<dt>Retry of</dt><dd><a href=${`#/runs/${encodeURIComponent(shown.retriedFromRunId)}`}>${shortId(shown.retriedFromRunId)}</a></dd>` : null}
          ${extra.map(([k, v]) => html`<dt>${k}</dt><dd>${typeof v === "object" ? html`<${Json} value=${v} />` : String(v)}</dd>`)}
        </dl>
        ${shown.error && shown.error.kind ? html`<h3>Error</h3><div class="error-line">${shown.error.kind}: ${shown.error.message}</div>` : null}
        ${shown.parameters && Object.keys(shown.parameters).length ? html`<h3>Parameters</h3><${Json} value=${shown.parameters} />` : null}
        ${shown.output !== undefined && shown.output !== null ? html`<h3>Output</h3><${Json} value=${shown.output} />` : null}
        ${shown.result && Object.keys(shown.result).length ? html`<h3>Result</h3><${Result} result=${shown.result} />` : null}
      </div>
    </div>
    <${ErrorBox} error=${error && !finished ? error : null} />
    <${LogTail} lines=${lines} live=${live} />
  </section>`;
}
