// Create and edit a job: executor, schedule (with the server's preview of the next fire times),
// retry policy. The server validates; its INVALID_ARGUMENT is shown on the field it names.
// Fields this form does not know (added by later versions of the API: parameters, pool,
// priority...) are kept in the "More fields (JSON)" box, so editing never drops them.
import * as api from "./api.js";
import { clock, lines, pairs, pairsText, seconds } from "./format.js";
import { Area, Choice, Text } from "./fields.js";
import { ErrorBox, html, useEffect, useState } from "./ui.js";

const KNOWN = [
  "name", "description", "executor", "labels", "schedule", "retryPolicy", "attemptTimeout", "parameters", "parameterSchema",
];
const OUTPUT_ONLY = ["id", "createTime", "updateTime", "paused", "nextFireTimes", "lastFireTime"];
const EXECUTORS = ["noop", "sleep", "http", "shell"];
const MISFIRE = ["MISFIRE_POLICY_UNSPECIFIED", "FIRE_ONCE", "SKIP", "FIRE_ALL"];
const OVERLAP = ["OVERLAP_POLICY_UNSPECIFIED", "ALLOW", "FORBID", "REPLACE"];

const dur = (text) => (String(text).trim() === "" ? undefined : `${Number(text)}s`);
const num = (text) => (String(text).trim() === "" ? undefined : Number(text));
const ints = (text) => lines(text.replaceAll(",", "\n")).map(Number);
const secs = (d) => (seconds(d) === null ? "" : String(seconds(d)));
// A datetime-local input's value ("2030-01-01T10:00") for an RFC 3339 time, in local time.
const localInput = (text) => {
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) return "";
  return new Date(at.getTime() - at.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};
const jsonText = (value) => (value && Object.keys(value).length ? JSON.stringify(value, null, 2) : "");
const jsonValue = (text) => (text.trim() ? JSON.parse(text) : undefined);
const snake = (name) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The form's state for a job (an empty one for a new job). */
export function formOf(job = {}) {
  const kind = Object.keys(job.executor || {})[0] || "shell";
  const spec = (job.executor || {})[kind] || {};
  const schedule = job.schedule || {};
  const scheduleKind = schedule.cron ? "cron" : schedule.interval ? "interval" : schedule.once ? "once" : "none";
  const retry = job.retryPolicy || {};
  const extra = Object.fromEntries(
    Object.entries(job).filter(([k]) => !KNOWN.includes(k) && !OUTPUT_ONLY.includes(k)),
  );
  return {
    name: job.name || "",
    description: job.description || "",
    labels: pairsText(job.labels),
    kind: EXECUTORS.includes(kind) ? kind : "json",
    executorJson: JSON.stringify(job.executor || {}, null, 2),
    sleepSeconds: String(spec.seconds ?? "1"),
    httpMethod: spec.method || "GET",
    httpUrl: spec.url || "",
    httpHeaders: pairsText(spec.headers),
    httpBody: spec.body || "",
    argv: (spec.argv || []).join("\n"),
    env: pairsText(spec.env),
    executorTimeout: secs(spec.timeout),
    scheduleKind,
    cron: (schedule.cron && schedule.cron.expression) || "",
    timezone: (schedule.cron && schedule.cron.timezone) || "",
    every: schedule.interval ? secs(schedule.interval.every) : "60",
    anchor: (schedule.interval && schedule.interval.anchorTime) || "",
    onceAt: schedule.once ? localInput(schedule.once.at) : "",
    jitter: secs(schedule.jitter),
    misfire: schedule.misfirePolicy || MISFIRE[0],
    overlap: schedule.overlapPolicy || OVERLAP[0],
    catchUp: secs(schedule.catchUpWindow),
    maxAttempts: retry.maxAttempts ? String(retry.maxAttempts) : "",
    initialBackoff: secs(retry.initialBackoff),
    multiplier: retry.backoffMultiplier ? String(retry.backoffMultiplier) : "",
    maxBackoff: secs(retry.maxBackoff),
    nonRetryableExitCodes: (retry.nonRetryableExitCodes || []).join(", "),
    nonRetryableHttpStatuses: (retry.nonRetryableHttpStatuses || []).join(", "),
    attemptTimeout: secs(job.attemptTimeout),
    parameters: jsonText(job.parameters),
    parameterSchema: jsonText(job.parameterSchema),
    extra: Object.keys(extra).length ? JSON.stringify(extra, null, 2) : "",
  };
}

function executorOf(f) {
  const timeout = dur(f.executorTimeout);
  switch (f.kind) {
    case "noop":
      return { noop: {} };
    case "sleep":
      return { sleep: { seconds: Number(f.sleepSeconds) } };
    case "http":
      return { http: { method: f.httpMethod, url: f.httpUrl.trim(), headers: pairs(f.httpHeaders), body: f.httpBody, timeout } };
    case "shell":
      return { shell: { argv: f.argv.split("\n").filter((a) => a !== ""), env: pairs(f.env), timeout } };
    default:
      return JSON.parse(f.executorJson || "{}");
  }
}

export function scheduleOf(f) {
  if (f.scheduleKind === "none") return undefined;
  const common = {
    jitter: dur(f.jitter),
    misfirePolicy: f.misfire === MISFIRE[0] ? undefined : f.misfire,
    overlapPolicy: f.overlap === OVERLAP[0] ? undefined : f.overlap,
    catchUpWindow: dur(f.catchUp),
  };
  if (f.scheduleKind === "cron") return { cron: { expression: f.cron, timezone: f.timezone.trim() }, ...common };
  if (f.scheduleKind === "interval")
    return { interval: { every: dur(f.every), anchorTime: f.anchor.trim() || undefined }, ...common };
  const at = f.onceAt ? new Date(f.onceAt) : null;
  return { once: { at: at && !Number.isNaN(at.getTime()) ? at.toISOString() : f.onceAt }, ...common };
}

/** The Job message for the form; throws SyntaxError when a JSON box does not parse. */
export function jobOf(f) {
  const retryPolicy = {
    maxAttempts: num(f.maxAttempts),
    initialBackoff: dur(f.initialBackoff),
    backoffMultiplier: num(f.multiplier),
    maxBackoff: dur(f.maxBackoff),
    nonRetryableExitCodes: ints(f.nonRetryableExitCodes),
    nonRetryableHttpStatuses: ints(f.nonRetryableHttpStatuses),
  };
  const retrySet = Object.values(retryPolicy).some((v) => v !== undefined && !(Array.isArray(v) && !v.length));
  return {
    name: f.name.trim(),
    description: f.description,
    labels: pairs(f.labels),
    executor: executorOf(f),
    schedule: scheduleOf(f),
    retryPolicy: retrySet ? retryPolicy : undefined,
    attemptTimeout: dur(f.attemptTimeout),
    parameters: jsonValue(f.parameters),
    parameterSchema: jsonValue(f.parameterSchema),
    ...(f.extra.trim() ? JSON.parse(f.extra) : {}),
  };
}

/** The server's previews of the schedule as it is typed (PreviewSchedule), or its complaint. */
function usePreview(schedule) {
  const [preview, setPreview] = useState({ times: [], error: null });
  const key = JSON.stringify(schedule || null);
  useEffect(() => {
    if (!schedule) {
      setPreview({ times: [], error: null });
      return undefined;
    }
    let live = true;
    const timer = setTimeout(async () => {
      try {
        const answer = await api.post("/api/schedules:preview", { schedule, count: 5 });
        if (live) setPreview({ times: answer.fireTimes || [], error: null });
      } catch (error) {
        if (live) setPreview({ times: [], error });
      }
    }, 300);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [key]);
  return preview;
}

export function JobFormPage({ id }) {
  const editing = Boolean(id);
  const [f, setF] = useState(editing ? null : formOf());
  const [loadError, setLoadError] = useState(null);
  const [error, setError] = useState(null);
  const [saving, setSaving] = useState(false);
  useEffect(() => {
    if (!editing) return;
    api.get(`/api/jobs/${encodeURIComponent(id)}`).then((job) => setF(formOf(job)), setLoadError);
  }, [id]);
  let schedule;
  try {
    schedule = f ? scheduleOf(f) : undefined;
  } catch {
    schedule = undefined;
  }
  const preview = usePreview(schedule);
  if (loadError) return html`<section class="page"><${ErrorBox} error=${loadError} /></section>`;
  if (!f) return html`<section class="page"><p class="muted">Loading…</p></section>`;
  const set = (name, value) => {
    setF((old) => ({ ...old, [name]: value }));
    setError(null); // the server's last complaint is about the form as it was
  };
  const p = { f, set, error };
  // The server names job.<field> (CreateJob/UpdateJob) or schedule.<field> (PreviewSchedule).
  const j = (path) => `job.${path}`;
  const previewError = preview.error && preview.error.field
    ? { ...preview.error, field: `job.${preview.error.field}` }
    : preview.error;
  const sp = { f, set, error: error || previewError };

  const save = async (event) => {
    event.preventDefault();
    setError(null);
    let job;
    try {
      job = jobOf(f);
    } catch (problem) {
      setError({ message: `a JSON box does not parse: ${problem.message}`, field: null });
      return;
    }
    setSaving(true);
    try {
      let saved;
      if (editing) {
        const paths = [...new Set([...KNOWN, ...Object.keys(job)])].map(snake);
        saved = await api.patch(`/api/jobs/${encodeURIComponent(id)}`, job, { updateMask: paths.join(",") });
      } else {
        saved = await api.post("/api/jobs", job);
      }
      window.location.hash = `#/jobs/${encodeURIComponent(saved.id)}`;
    } catch (problem) {
      setError(problem);
      // Bring the first field the server named into view.
      setTimeout(() => {
        const shown = document.querySelector(".field-error");
        if (shown) shown.parentElement.querySelector("input,textarea,select")?.focus();
      });
    } finally {
      setSaving(false);
    }
  };

  return html`<section class="page">
    <header class="page-head"><h1>${editing ? `Edit ${f.name}` : "New job"}</h1></header>
    <form class="job-form" onSubmit=${save} novalidate>
      ${error && !error.field ? html`<${ErrorBox} error=${error} />` : null}
      ${error && error.field ? html`<div class="error" role="alert">Please fix ${error.field}: ${error.detail}</div>` : null}
      <fieldset>
        <legend>Job</legend>
        <${Text} ...${p} name="name" label="Name" field=${j("name")} required />
        <${Text} ...${p} name="description" label="Description" field=${j("description")} />
        <${Area} ...${p} name="labels" label="Labels" field=${j("labels")} hint="one key=value a line" rows="2" />
      </fieldset>
      <fieldset>
        <legend>Executor</legend>
        <${Choice} ...${p} name="kind" label="Kind" options=${[...EXECUTORS, "json"]} field=${j("executor")} />
        ${f.kind === "sleep" ? html`<${Text} ...${p} name="sleepSeconds" label="Seconds" type="number" field=${j("executor.sleep")} />` : null}
        ${f.kind === "http"
          ? html`<${Choice} ...${p} name="httpMethod" label="Method" options=${["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]} />
              <${Text} ...${p} name="httpUrl" label="URL" field=${j("executor.http.url")} />
              <${Area} ...${p} name="httpHeaders" label="Headers" hint="one name=value a line; values are write-only" field=${j("executor.http.headers")} />
              <${Area} ...${p} name="httpBody" label="Body" field=${j("executor.http.body")} />`
          : null}
        ${f.kind === "shell"
          ? html`<${Area} ...${p} name="argv" label="Command (argv)" hint="one argument a line; run directly, not through a shell" field=${j("executor.shell.argv")} rows="4" />
              <${Area} ...${p} name="env" label="Environment" hint="one NAME=value a line; values are write-only" field=${j("executor.shell.env")} rows="2" />`
          : null}
        ${f.kind === "http" || f.kind === "shell"
          ? html`<${Text} ...${p} name="executorTimeout" label="Timeout (s)" type="number" field=${[j("executor.http.timeout"), j("executor.shell.timeout")]} />`
          : null}
        ${f.kind === "json"
          ? html`<${Area} ...${p} name="executorJson" label="Executor (JSON)" field=${j("executor")} rows="6" />`
          : null}
      </fieldset>
      <fieldset>
        <legend>Schedule</legend>
        <${Choice} ...${sp} name="scheduleKind" label="Kind" options=${["none", "cron", "interval", "once"]} field=${j("schedule")} />
        ${f.scheduleKind === "cron"
          ? html`<${Text} ...${sp} name="cron" label="Cron expression" field=${j("schedule.cron.expression")} hint="5 fields, or 6 with seconds first; @daily, @hourly…" />
              <${Text} ...${sp} name="timezone" label="Time zone" field=${j("schedule.cron.timezone")} placeholder="UTC" />`
          : null}
        ${f.scheduleKind === "interval"
          ? html`<${Text} ...${sp} name="every" label="Every (s)" type="number" field=${j("schedule.interval.every")} />
              <${Text} ...${sp} name="anchor" label="Anchor time (RFC 3339)" field=${j("schedule.interval.anchor_time")} placeholder="creation time" />`
          : null}
        ${f.scheduleKind === "once"
          ? html`<${Text} ...${sp} name="onceAt" label="At" type="datetime-local" field=${j("schedule.once.at")} />`
          : null}
        ${f.scheduleKind !== "none"
          ? html`<div class="grid">
                <${Text} ...${sp} name="jitter" label="Jitter (s)" type="number" field=${j("schedule.jitter")} />
                <${Choice} ...${sp} name="misfire" label="Misfire policy" options=${MISFIRE} field=${j("schedule.misfire_policy")} />
                <${Choice} ...${sp} name="overlap" label="Overlap policy" options=${OVERLAP} field=${j("schedule.overlap_policy")} />
                <${Text} ...${sp} name="catchUp" label="Catch-up window (s)" type="number" field=${j("schedule.catch_up_window")} />
              </div>
              <div class="preview" aria-live="polite">
                <strong>Next fire times (server):</strong>
                ${preview.times.length
                  ? html`<ol>${preview.times.map((t) => html`<li><time datetime=${t}>${clock(t)}</time></li>`)}</ol>`
                  : html`<span class="muted"> ${preview.error ? "—" : "…"}</span>`}
              </div>`
          : null}
      </fieldset>
      <fieldset>
        <legend>Retries and timeout</legend>
        <div class="grid">
          <${Text} ...${p} name="maxAttempts" label="Max attempts" type="number" field=${j("retry_policy.max_attempts")} placeholder="1" />
          <${Text} ...${p} name="initialBackoff" label="Initial backoff (s)" type="number" field=${j("retry_policy.initial_backoff")} />
          <${Text} ...${p} name="multiplier" label="Backoff multiplier" type="number" field=${j("retry_policy.backoff_multiplier")} />
          <${Text} ...${p} name="maxBackoff" label="Max backoff (s)" type="number" field=${j("retry_policy.max_backoff")} />
          <${Text} ...${p} name="nonRetryableExitCodes" label="Non-retryable exit codes" field=${j("retry_policy.non_retryable_exit_codes")} />
          <${Text} ...${p} name="nonRetryableHttpStatuses" label="Non-retryable HTTP statuses" field=${j("retry_policy.non_retryable_http_statuses")} />
          <${Text} ...${p} name="attemptTimeout" label="Attempt timeout (s)" type="number" field=${j("attempt_timeout")} />
        </div>
      </fieldset>
      <fieldset>
        <legend>Parameters</legend>
        <${Area} ...${p} name="parameters" label="Default parameters (JSON object)" field=${j("parameters")} rows="3"
          hint="merged under a trigger's parameters; templates read them as {{ params.NAME }}" />
        <${Area} ...${p} name="parameterSchema" label="Parameter schema (JSON Schema)" field=${j("parameter_schema")} rows="4"
          hint="checks every run's parameters; the trigger form is generated from its properties" />
      </fieldset>
      <details open=${Boolean(f.extra)}>
        <summary>More fields (JSON)</summary>
        <${Area} ...${p} name="extra" label="Other job fields" hint="merged into the job as sent: fields of newer API versions (pool, priority…)" field=${[]} rows="5" />
      </details>
      <div class="form-actions">
        <button type="submit" class="primary" disabled=${saving} data-write>${editing ? "Save" : "Create job"}</button>
        <a class="button" href=${editing ? `#/jobs/${encodeURIComponent(id)}` : "#/jobs"}>Cancel</a>
      </div>
    </form>
  </section>`;
}
