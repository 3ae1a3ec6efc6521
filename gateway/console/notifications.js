// Notifications, three tabs (#/notifications/deliveries, /rules, /channels): deliveries (each
// event posted to a channel: state, attempts, last answer and error, live), rules (which events
// of one job, or of the jobs a label selector picks, go to which channel) and channels (webhooks).
// Viewers read deliveries and rules; channels only operators and admins, who also write (a
// webhook URL may be a credential itself, so the server refuses channels to viewers).
//
// Secrets: a channel's secret is write-only. The server reads it back as "<redacted>", which
// the console never renders; the secret input is a password field emptied after each save.
// The one exception is a secret the console generated itself ("Generate"): it is shown once,
// right after the channel is created, so that it can be copied to the receiver, and forgotten
// when that notice is closed or the page is left.
import * as api from "./api.js";
import { ago, clock, pairs, pairsText, seconds, shortId } from "./format.js";
import { Area, Choice, Text } from "./fields.js";
import { ErrorBox, FieldError, html, Pager, State, useEffect, usePoll, useRef, useState } from "./ui.js";

export const EVENTS = ["RUN_FAILED", "JOB_RECOVERED", "SLOT_MISFIRED", "SLOT_SKIPPED", "RUN_STUCK", "RUN_FINISHED"];
const DELIVERY_STATES = ["PENDING", "DELIVERED", "FAILED"];
const FORMATS = ["GENERIC", "SLACK"];
const TARGETS = [["job", "one job"], ["labels", "jobs with labels"], ["all", "every job"]];
const TABS = [["deliveries", "Deliveries"], ["rules", "Rules"], ["channels", "Channels"]];
const PAGE_SIZE = 50;
const CHANNELS = "/api/notification-channels";
const RULES = "/api/notification-rules";
const DELIVERIES = "/api/notification-deliveries";

/** A random signing secret: 32 bytes, base64url (43 characters; the server takes 16-512). */
export function generateSecret() {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** The ListNotificationDeliveries filter for the filter form's values. */
export function deliveriesFilter({ state, eventType, channelId }) {
  const terms = [];
  if (state) terms.push(`state=${state}`);
  if (eventType) terms.push(`event_type=${eventType}`);
  if (channelId) terms.push(`channel_id="${channelId}"`);
  return terms.join(" AND ");
}

/** Page tokens seen so far (pages[i] opens page i), reset when `deps` change. */
function usePages(deps) {
  const [pages, setPages] = useState([""]);
  const [page, setPage] = useState(0);
  useEffect(() => {
    setPages([""]);
    setPage(0);
  }, deps);
  const pager = (next) => html`<${Pager} hasPrevious=${page > 0} hasNext=${Boolean(next)}
    onPrevious=${() => setPage(page - 1)}
    onNext=${() => { setPages((p) => [...p.slice(0, page + 1), next]); setPage(page + 1); }} />`;
  return { token: pages[page], page, pager };
}

/** Channels by id, for names; null when this role may not read them (a viewer: 403). */
function useChannels() {
  const refused = useRef(false); // a role refused once is not asked again every 5 s
  const answer = usePoll(
    () => refused.current
      ? Promise.resolve({ forbidden: true })
      : api.get(CHANNELS, { pageSize: 1000 }).catch((error) => {
        if (error.status !== 403) throw error;
        refused.current = true;
        return { forbidden: true };
      }),
    [],
    5000,
  );
  const data = answer.data || {};
  const list = data.channels || [];
  return { ...answer, list, forbidden: Boolean(data.forbidden), byId: Object.fromEntries(list.map((c) => [c.id, c])) };
}

function ChannelName({ id, channels }) {
  const channel = channels.byId[id];
  return channel ? html`<span>${channel.name}</span>` : html`<code title=${id}>${shortId(id)}</code>`;
}

export function NotificationsPage({ tab }) {
  const current = TABS.some(([name]) => name === tab) ? tab : "deliveries";
  const channels = useChannels();
  let body;
  if (current === "rules") body = html`<${RulesTab} channels=${channels} />`;
  else if (current === "channels") body = html`<${ChannelsTab} channels=${channels} />`;
  else body = html`<${DeliveriesTab} channels=${channels} />`;
  return html`<section class="page notifications">
    <header class="page-head"><h1>Notifications</h1></header>
    <nav class="tabs" aria-label="notifications">
      ${TABS.map(([name, label]) => html`<a href=${`#/notifications/${name}`} aria-current=${name === current ? "page" : undefined}>${label}</a>`)}
    </nav>
    ${body}
  </section>`;
}

// --- deliveries ---

function DeliveriesTab({ channels }) {
  const [form, setForm] = useState({ state: "", eventType: "", channelId: "" });
  const filter = deliveriesFilter(form);
  const pages = usePages([filter]);
  const deliveries = usePoll(
    () => api.get(DELIVERIES, { pageSize: PAGE_SIZE, pageToken: pages.token, filter }),
    [filter, pages.token],
    3000,
  );
  const list = (deliveries.data && deliveries.data.deliveries) || [];
  const jobs = useJobNames(list.map((d) => d.jobId));
  const set = (key) => (event) => setForm({ ...form, [key]: event.currentTarget.value });
  return html`<div class="card">
    <header class="card-head">
      <h2>Deliveries</h2>
      <form class="filters inline" onSubmit=${(e) => e.preventDefault()}>
        <label>State <select name="delivery-state" value=${form.state} onChange=${set("state")}>
          <option value="">any</option>${DELIVERY_STATES.map((s) => html`<option value=${s}>${s}</option>`)}
        </select></label>
        <label>Event <select name="delivery-event" value=${form.eventType} onChange=${set("eventType")}>
          <option value="">any</option>${[...EVENTS, "TEST"].map((s) => html`<option value=${s}>${s}</option>`)}
        </select></label>
        ${channels.list.length
          ? html`<label>Channel <select name="delivery-channel" value=${form.channelId} onChange=${set("channelId")}>
              <option value="">any</option>${channels.list.map((c) => html`<option value=${c.id}>${c.name}</option>`)}
            </select></label>`
          : null}
      </form>
    </header>
    <${ErrorBox} error=${deliveries.error} />
    <div class="table-wrap">
      <table class="deliveries stack">
        <thead><tr><th>Event</th><th>State</th><th>Channel</th><th>Job / run</th><th>Attempts</th><th>Last answer</th><th>Created</th><th>Next / delivered</th></tr></thead>
        <tbody>${list.map((d) => html`<${DeliveryRow} key=${d.id} delivery=${d} channels=${channels} jobs=${jobs} />`)}</tbody>
      </table>
      ${!deliveries.loading && !list.length && !deliveries.error ? html`<p class="muted empty">No deliveries${filter ? " match" : " yet: a rule's events appear here"}.</p>` : null}
    </div>
    ${pages.pager(deliveries.data && deliveries.data.nextPageToken)}
  </div>`;
}

function DeliveryRow({ delivery: d, channels, jobs }) {
  const name = jobs[d.jobId];
  const when = d.state === "DELIVERED" ? d.deliverTime : d.state === "PENDING" ? d.nextAttemptTime : d.lastAttemptTime;
  return html`<tr data-delivery=${d.id} data-state=${d.state} data-event=${d.eventType}>
    <td><span class="kind">${d.eventType}</span> <code class="muted" title=${`event ${d.eventId}`}>${shortId(d.eventId)}</code></td>
    <td data-label="State"><${State} state=${d.state} /></td>
    <td data-label="Channel"><${ChannelName} id=${d.channelId} channels=${channels} /></td>
    <td data-label="Job / run">
      ${d.jobId ? html`<a href=${`#/jobs/${encodeURIComponent(d.jobId)}`} class="job-name">${name || shortId(d.jobId)}</a>` : "–"}
      ${d.runId ? html`<div><a href=${`#/runs/${encodeURIComponent(d.runId)}`}>run <code>${shortId(d.runId)}</code></a></div>` : null}
    </td>
    <td data-label="Attempts" class="attempts">${d.attempts || 0}</td>
    <td data-label="Last answer" class="last-answer">
      ${d.lastStatusCode ? html`<span class="chip">HTTP ${d.lastStatusCode}</span>` : null}
      ${d.lastError ? html`<div class="error-line">${d.lastError}</div>` : null}
      ${d.responseExcerpt ? html`<div class="muted ellipsis" title=${d.responseExcerpt}>${d.responseExcerpt}</div>` : null}
      ${!d.lastStatusCode && !d.lastError ? html`<span class="muted">–</span>` : null}
    </td>
    <td data-label="Created" title=${clock(d.createTime)}>${ago(d.createTime)}</td>
    <td data-label=${d.state === "DELIVERED" ? "Delivered" : d.state === "PENDING" ? "Next attempt" : "Last attempt"} title=${clock(when)}>${ago(when)}</td>
  </tr>`;
}

// --- job names (deliveries and rules show them) ---

// Job names by id, kept for the page's life: names are shown for the jobs a page lists, each
// read once (GetJob), not with a listing of every job.
const jobNames = new Map(); // id -> Promise of its name (null: deleted or not readable)

function nameOf(id) {
  if (!jobNames.has(id)) {
    const read = api.get(`/api/jobs/${encodeURIComponent(id)}`).then(
      (job) => job.name,
      (error) => {
        if (error.status !== 404) jobNames.delete(id); // asked again next time
        return null;
      },
    );
    jobNames.set(id, read);
  }
  return jobNames.get(id);
}

/** Names of these jobs ({id: name}), filled in as they arrive. */
function useJobNames(ids) {
  const wanted = [...new Set(ids.filter(Boolean))];
  const key = wanted.join(",");
  const [names, setNames] = useState({});
  useEffect(() => {
    let live = true;
    Promise.all(wanted.map(async (id) => [id, await nameOf(id)])).then((pairs) => {
      if (live) setNames(Object.fromEntries(pairs));
    });
    return () => {
      live = false;
    };
  }, [key]);
  return names;
}

// --- rules ---

/** Jobs to pick a rule's job from: one page of 1000, read when the rule form opens. */
function useJobChoices() {
  const [list, setList] = useState([]);
  useEffect(() => {
    api.get("/api/jobs", { pageSize: 1000 }).then((answer) => setList(answer.jobs || []), () => setList([]));
  }, []);
  return list;
}

function targetOf(rule, jobs) {
  if (rule.jobId) {
    return html`job <a href=${`#/jobs/${encodeURIComponent(rule.jobId)}`}>${jobs[rule.jobId] || shortId(rule.jobId)}</a>`;
  }
  const selector = Object.entries(rule.labelSelector || {});
  if (!selector.length) return html`<span class="muted">every job</span>`;
  return html`labels ${selector.map(([k, v]) => html`<span class="chip">${k}=${v}</span>`)}`;
}

function RulesTab({ channels }) {
  const writable = api.canWrite();
  const pages = usePages([]);
  const rules = usePoll(() => api.get(RULES, { pageSize: PAGE_SIZE, pageToken: pages.token }), [pages.token], 5000);
  const [editing, setEditing] = useState(null); // null, "new", or a rule
  const [actionError, setActionError] = useState(null);
  const list = (rules.data && rules.data.rules) || [];
  const jobs = useJobNames(list.map((r) => r.jobId));
  const act = async (action) => {
    setActionError(null);
    try {
      await action();
      await rules.reload();
    } catch (error) {
      setActionError(error);
    }
  };
  const toggle = (rule) => act(() => api.patch(`${RULES}/${encodeURIComponent(rule.id)}`, { disabled: !rule.disabled }, { updateMask: "disabled" }));
  const remove = (rule) => act(async () => {
    if (window.confirm(`Delete rule ${rule.name}?`)) await api.del(`${RULES}/${encodeURIComponent(rule.id)}`);
  });
  return html`<div class="card">
    <header class="card-head">
      <h2>Rules</h2>
      ${writable && !editing ? html`<button type="button" class="primary" data-write onClick=${() => setEditing("new")}>New rule</button>` : null}
    </header>
    ${editing
      ? html`<${RuleForm} key=${editing === "new" ? "new" : editing.id} rule=${editing === "new" ? null : editing} channels=${channels}
          jobName=${editing !== "new" && jobs[editing.jobId]}
          onDone=${() => { setEditing(null); rules.reload(); }} onCancel=${() => setEditing(null)} />`
      : null}
    <${ErrorBox} error=${rules.error || actionError} />
    <div class="table-wrap">
      <table class="rules stack">
        <thead><tr><th>Name</th><th>Channel</th><th>Jobs</th><th>Events</th><th>Status</th>${writable ? html`<th><span class="sr-only">Actions</span></th>` : null}</tr></thead>
        <tbody>
          ${list.map((rule) => html`<tr key=${rule.id} data-rule=${rule.name}>
            <td><strong>${rule.name}</strong></td>
            <td data-label="Channel"><${ChannelName} id=${rule.channelId} channels=${channels} /></td>
            <td data-label="Jobs">${targetOf(rule, jobs)}</td>
            <td data-label="Events">${(rule.events || []).map((e) => html`<span class="chip">${e}</span>`)}
              ${(rule.events || []).includes("RUN_STUCK") ? html`<span class="muted"> after ${seconds(rule.stuckAfter) ?? 300} s</span>` : null}</td>
            <td data-label="Status">${rule.disabled ? html`<span class="badge">disabled</span>` : "enabled"}</td>
            ${writable
              ? html`<td class="actions">
                  <button type="button" data-write onClick=${() => setEditing(rule)}>Edit</button>
                  <button type="button" data-write onClick=${() => toggle(rule)}>${rule.disabled ? "Enable" : "Disable"}</button>
                  <button type="button" class="danger" data-write onClick=${() => remove(rule)}>Delete</button>
                </td>`
              : null}
          </tr>`)}
        </tbody>
      </table>
      ${!rules.loading && !list.length && !rules.error ? html`<p class="muted empty">No rules.</p>` : null}
    </div>
    ${pages.pager(rules.data && rules.data.nextPageToken)}
  </div>`;
}

/** The NotificationRule message for the rule form's values. */
export function ruleOf(f) {
  const rule = { name: f.name.trim(), channelId: f.channelId, events: f.events, disabled: f.disabled };
  if (f.target === "job") rule.jobId = f.jobId;
  if (f.target === "labels") rule.labelSelector = pairs(f.labels);
  if (f.events.includes("RUN_STUCK") && String(f.stuckAfter).trim()) rule.stuckAfter = `${Number(f.stuckAfter)}s`;
  return rule;
}

/** The rule form's values for a rule (a new one's when null). */
function ruleForm(rule) {
  if (!rule) {
    return { name: "", channelId: "", target: "job", jobId: "", labels: "", events: ["RUN_FAILED"], stuckAfter: "", disabled: false };
  }
  const selector = rule.labelSelector || {};
  return {
    name: rule.name,
    channelId: rule.channelId,
    target: rule.jobId ? "job" : Object.keys(selector).length ? "labels" : "all",
    jobId: rule.jobId || "",
    labels: pairsText(selector),
    events: rule.events || [],
    stuckAfter: rule.stuckAfter ? String(seconds(rule.stuckAfter)) : "",
    disabled: Boolean(rule.disabled),
  };
}

// Every updatable field: an edit sends the whole rule as the form has it.
const RULE_MASK = "name,channel_id,job_id,label_selector,events,stuck_after,disabled";

function RuleForm({ rule, jobName, channels, onDone, onCancel }) {
  const listed = useJobChoices();
  const choices = rule && rule.jobId && !listed.some((j) => j.id === rule.jobId)
    ? [{ id: rule.jobId, name: jobName || rule.jobId }, ...listed]
    : listed;
  const [f, setF] = useState(() => ruleForm(rule));
  const [error, setError] = useState(null);
  const [saving, setSaving] = useState(false);
  const channelId = f.channelId || (channels.list[0] && channels.list[0].id) || "";
  const jobId = f.jobId || (choices[0] && choices[0].id) || "";
  const set = (name, value) => {
    setF((old) => ({ ...old, [name]: value }));
    setError(null);
  };
  const p = { f, set, error };
  const toggleEvent = (event) => set("events", f.events.includes(event) ? f.events.filter((e) => e !== event) : [...f.events, event]);
  const save = async (event) => {
    event.preventDefault();
    setSaving(true);
    try {
      const body = ruleOf({ ...f, channelId, jobId });
      if (rule) await api.patch(`${RULES}/${encodeURIComponent(rule.id)}`, body, { updateMask: RULE_MASK });
      else await api.post(RULES, body);
      onDone();
    } catch (problem) {
      setError(problem);
    } finally {
      setSaving(false);
    }
  };
  return html`<form class="job-form inline-form rule-form" onSubmit=${save} novalidate aria-label=${rule ? `edit rule ${rule.name}` : "new rule"}>
    ${error && !error.field ? html`<${ErrorBox} error=${error} />` : null}
    <fieldset>
      <legend>${rule ? `Edit ${rule.name}` : "New rule"}</legend>
      <div class="grid">
        <${Text} ...${p} name="name" label="Name" field="rule.name" required />
        <div class="field">
          <label for="f-channelId">Channel</label>
          <select id="f-channelId" value=${channelId} onChange=${(e) => set("channelId", e.currentTarget.value)}>
            ${channels.list.map((c) => html`<option value=${c.id}>${c.name}</option>`)}
          </select>
          ${!channels.list.length ? html`<small class="muted">create a channel first</small>` : null}
          <${FieldError} error=${error} field="rule.channel_id" />
        </div>
        <div class="field">
          <label for="f-target">Jobs</label>
          <select id="f-target" value=${f.target} onChange=${(e) => set("target", e.currentTarget.value)}>
            ${TARGETS.map(([value, text]) => html`<option value=${value}>${text}</option>`)}
          </select>
        </div>
      </div>
      ${f.target === "job"
        ? html`<div class="field">
            <label for="f-jobId">Job</label>
            <select id="f-jobId" value=${jobId} onChange=${(e) => set("jobId", e.currentTarget.value)}>
              ${choices.map((j) => html`<option value=${j.id}>${j.name}</option>`)}
            </select>
            ${!choices.length ? html`<small class="muted">no job yet</small>` : null}
            <${FieldError} error=${error} field="rule.job_id" />
          </div>`
        : null}
      ${f.target === "labels"
        ? html`<${Area} ...${p} name="labels" label="Label selector" field="rule.label_selector" rows="2" hint="one key=value a line: the jobs whose labels include all of them" />`
        : null}
      <div class="field">
        <span class="label" id="rule-events">Events</span>
        <div class="checks" role="group" aria-labelledby="rule-events">
          ${EVENTS.map((name) => html`<label class="check"><input type="checkbox" name="events" value=${name} checked=${f.events.includes(name)} onChange=${() => toggleEvent(name)} /> ${name}</label>`)}
        </div>
        <${FieldError} error=${error} field="rule.events" />
      </div>
      ${f.events.includes("RUN_STUCK")
        ? html`<${Text} ...${p} name="stuckAfter" label="Stuck after (s)" type="number" field="rule.stuck_after" placeholder="300" />`
        : null}
      <label class="check"><input type="checkbox" checked=${f.disabled} onChange=${(e) => set("disabled", e.currentTarget.checked)} /> disabled</label>
    </fieldset>
    <div class="form-actions">
      <button type="submit" class="primary" disabled=${saving} data-write>${rule ? "Save rule" : "Create rule"}</button>
      <button type="button" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

// --- channels ---

function ChannelsTab({ channels }) {
  const writable = api.canWrite();
  const [editing, setEditing] = useState(null); // null, "new", or a channel
  const [generated, setGenerated] = useState(null); // {name, secret}: shown once
  const [actionError, setActionError] = useState(null);
  const [tested, setTested] = useState(null);
  useEffect(() => () => setGenerated(null), []);
  if (channels.forbidden) {
    return html`<div class="card"><h2>Channels</h2>
      <p class="muted forbidden">Channels are shown to operators and admins only: a webhook URL may be a credential itself.</p></div>`;
  }
  const act = async (action) => {
    setActionError(null);
    try {
      await action();
      await channels.reload();
    } catch (error) {
      setActionError(error);
    }
  };
  const path = (c) => `${CHANNELS}/${encodeURIComponent(c.id)}`;
  const toggle = (c) => act(() => api.patch(path(c), { disabled: !c.disabled }, { updateMask: "disabled" }));
  const test = (c) => act(async () => {
    const delivery = await api.post(`${path(c)}:test`);
    setTested({ channel: c.name, eventId: delivery.eventId });
  });
  const remove = (c) => act(async () => {
    if (window.confirm(`Delete channel ${c.name}? Its rules and deliveries are deleted too.`)) await api.del(path(c));
  });
  const saved = (channel, secret) => {
    setEditing(null);
    setGenerated(secret ? { name: channel.name, secret } : null);
    channels.reload();
  };
  return html`<div class="card">
    <header class="card-head">
      <h2>Channels</h2>
      ${writable && !editing ? html`<button type="button" class="primary" data-write onClick=${() => { setGenerated(null); setEditing("new"); }}>New channel</button>` : null}
    </header>
    ${generated ? html`<${SecretOnce} ...${generated} onClose=${() => setGenerated(null)} />` : null}
    ${editing ? html`<${ChannelForm} channel=${editing === "new" ? null : editing} onDone=${saved} onCancel=${() => setEditing(null)} />` : null}
    ${tested ? html`<p class="notice" role="status">A TEST event was queued for ${tested.channel}: see <a href="#/notifications/deliveries">Deliveries</a> (event <code>${shortId(tested.eventId)}</code>).</p>` : null}
    <${ErrorBox} error=${channels.error || actionError} />
    <div class="table-wrap">
      <table class="channels stack">
        <thead><tr><th>Name</th><th>URL</th><th>Format</th><th>Secret</th><th>Status</th><th>Updated</th>${writable ? html`<th><span class="sr-only">Actions</span></th>` : null}</tr></thead>
        <tbody>
          ${channels.list.map((c) => html`<tr key=${c.id} data-channel=${c.name}>
            <td><strong>${c.name}</strong>${c.description ? html`<div class="muted">${c.description}</div>` : null}</td>
            <td data-label="URL"><code class="url">${c.url}</code></td>
            <td data-label="Format">${c.format || "GENERIC"}</td>
            <td data-label="Secret"><span class="muted" title="write-only: never read back">set · write-only</span></td>
            <td data-label="Status">${c.disabled ? html`<span class="badge">disabled</span>` : "enabled"}</td>
            <td data-label="Updated" title=${clock(c.updateTime)}>${ago(c.updateTime)}</td>
            ${writable
              ? html`<td class="actions">
                  <button type="button" data-write onClick=${() => test(c)}>Test</button>
                  <button type="button" data-write onClick=${() => { setGenerated(null); setEditing(c); }}>Edit</button>
                  <button type="button" data-write onClick=${() => toggle(c)}>${c.disabled ? "Enable" : "Disable"}</button>
                  <button type="button" class="danger" data-write onClick=${() => remove(c)}>Delete</button>
                </td>`
              : null}
          </tr>`)}
        </tbody>
      </table>
      ${!channels.loading && !channels.list.length && !channels.error ? html`<p class="muted empty">No channels.</p>` : null}
    </div>
  </div>`;
}

/** A secret the console generated, shown this once so that it can be given to the receiver. */
function SecretOnce({ name, secret, onClose }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied(true);
    } catch {
      setCopied(false);
    }
  };
  return html`<div class="notice secret-once" role="status">
    <p><strong>Copy the signing secret of ${name} now.</strong> It is write-only: Taskmesh never shows it again.</p>
    <div class="secret-row">
      <input readonly aria-label="generated secret" value=${secret} onFocus=${(e) => e.currentTarget.select()} />
      <button type="button" onClick=${copy}>${copied ? "Copied" : "Copy"}</button>
      <button type="button" onClick=${onClose}>Done</button>
    </div>
  </div>`;
}

function channelForm(channel) {
  return {
    name: channel ? channel.name : "",
    url: channel ? channel.url : "",
    secret: "",
    format: (channel && channel.format) || "GENERIC",
    description: (channel && channel.description) || "",
    disabled: Boolean(channel && channel.disabled),
  };
}

/** The update mask and fields of an edit: what changed (the secret only when one was typed). */
export function channelChanges(before, after) {
  const changes = {};
  for (const key of ["name", "url", "format", "description", "disabled"]) {
    if (before[key] !== after[key]) changes[key] = key === "name" || key === "url" ? after[key].trim() : after[key];
  }
  if (after.secret) changes.secret = after.secret;
  return changes;
}

function ChannelForm({ channel, onDone, onCancel }) {
  const initial = channelForm(channel);
  const [f, setF] = useState(initial);
  const [generatedSecret, setGeneratedSecret] = useState(null);
  const [error, setError] = useState(null);
  const [saving, setSaving] = useState(false);
  const set = (name, value) => {
    setF((old) => ({ ...old, [name]: value }));
    if (name === "secret") setGeneratedSecret(null);
    setError(null);
  };
  const p = { f, set, error };
  const generate = () => {
    const secret = generateSecret();
    setF((old) => ({ ...old, secret }));
    setGeneratedSecret(secret);
  };
  const save = async (event) => {
    event.preventDefault();
    setSaving(true);
    try {
      let saved;
      if (channel) {
        const changes = channelChanges(initial, f);
        const mask = Object.keys(changes).join(",");
        saved = mask ? await api.patch(`${CHANNELS}/${encodeURIComponent(channel.id)}`, changes, { updateMask: mask }) : channel;
      } else {
        saved = await api.post(CHANNELS, { ...f, name: f.name.trim(), url: f.url.trim() });
      }
      const shown = generatedSecret && f.secret === generatedSecret ? generatedSecret : null;
      setF((old) => ({ ...old, secret: "" }));
      onDone(saved, shown);
    } catch (problem) {
      setError(problem);
    } finally {
      setSaving(false);
    }
  };
  const secretHint = channel
    ? "leave empty to keep the current one (a URL on another origin needs it again)"
    : "16-512 characters; the receiver verifies the signature with it";
  return html`<form class="job-form inline-form channel-form" onSubmit=${save} novalidate aria-label=${channel ? `edit channel ${channel.name}` : "new channel"}>
    ${error && !error.field ? html`<${ErrorBox} error=${error} />` : null}
    <fieldset>
      <legend>${channel ? `Edit ${channel.name}` : "New channel"}</legend>
      <div class="grid">
        <${Text} ...${p} name="name" label="Name" field="channel.name" required />
        <${Choice} ...${p} name="format" label="Format" options=${FORMATS} field="channel.format" />
      </div>
      <${Text} ...${p} name="url" label="Webhook URL" field="channel.url" type="url" placeholder="https://hooks.example.com/taskmesh" />
      <div class="field">
        <label for="f-secret">Signing secret ${channel ? "(new)" : ""}</label>
        <div class="secret-row">
          <input id="f-secret" name="secret" type="password" autocomplete="new-password" value=${f.secret}
            aria-invalid=${error && error.field === "channel.secret" ? "true" : "false"}
            onInput=${(e) => set("secret", e.currentTarget.value)} />
          <button type="button" onClick=${generate}>Generate</button>
        </div>
        <small class="muted">${generatedSecret ? "generated: shown once after saving, to copy to the receiver" : secretHint}</small>
        <${FieldError} error=${error} field="channel.secret" />
      </div>
      <${Text} ...${p} name="description" label="Description" field="channel.description" />
      <label class="check"><input type="checkbox" checked=${f.disabled} onChange=${(e) => set("disabled", e.currentTarget.checked)} /> disabled</label>
    </fieldset>
    <div class="form-actions">
      <button type="submit" class="primary" disabled=${saving} data-write>${channel ? "Save channel" : "Create channel"}</button>
      <button type="button" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}
