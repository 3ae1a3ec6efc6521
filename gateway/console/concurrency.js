// Concurrency keys in use (ListConcurrencyKeys, GET /api/concurrency-keys): each key with its
// active runs (admitted, not finished), the runs waiting for one of its slots, and its limit;
// filtered by prefix (kept in the address), paged, refreshed every few seconds.
import * as api from "./api.js";
import { ErrorBox, html, Pager, useEffect, usePoll, useState } from "./ui.js";

const PAGE_SIZE = 100;

function readPrefix() {
  return new URLSearchParams(window.location.hash.split("?")[1] || "").get("prefix") || "";
}

/** "full" when every slot is taken and runs wait, "busy" when every slot is taken, else "". */
export function pressure(key) {
  const active = key.active || 0;
  if (!key.limit || active < key.limit) return "";
  return key.waiting ? "full" : "busy";
}

export function ConcurrencyPage() {
  const [prefix, setPrefix] = useState(readPrefix);
  const [applied, setApplied] = useState(prefix);
  const [pages, setPages] = useState([""]);
  const [page, setPage] = useState(0);
  useEffect(() => {
    const timer = setTimeout(() => {
      setApplied(prefix);
      setPages([""]);
      setPage(0);
      const query = prefix ? `?${new URLSearchParams({ prefix })}` : "";
      window.history.replaceState(null, "", `#/concurrency${query}`);
    }, 250);
    return () => clearTimeout(timer);
  }, [prefix]);
  const keys = usePoll(
    () => api.get("/api/concurrency-keys", { pageSize: PAGE_SIZE, pageToken: pages[page], prefix: applied }),
    [applied, page, pages[page]],
    3000,
  );
  const list = (keys.data && keys.data.keys) || [];
  const next = keys.data && keys.data.nextPageToken;
  const waiting = list.reduce((sum, k) => sum + (k.waiting || 0), 0);
  return html`<section class="page">
    <header class="page-head"><h1>Concurrency keys</h1>
      <span class="muted">${list.length} key${list.length === 1 ? "" : "s"} in use${waiting ? `, ${waiting} run${waiting === 1 ? "" : "s"} waiting` : ""}${next ? " on this page" : ""}</span>
    </header>
    <form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
      <label>Key prefix <input type="search" name="prefix" value=${prefix} onInput=${(e) => setPrefix(e.currentTarget.value)} placeholder="tenant-…" /></label>
    </form>
    <${ErrorBox} error=${keys.error} />
    <div class="table-wrap">
      <table class="keys stack">
        <thead><tr><th>Key</th><th>Active</th><th>Waiting</th><th>Limit</th><th>Slots in use</th></tr></thead>
        <tbody>
          ${list.map((k) => html`<tr key=${k.key} data-key=${k.key} class=${pressure(k)}>
            <td><code class="key">${k.key}</code></td>
            <td data-label="Active" class="active">${k.active || 0}</td>
            <td data-label="Waiting" class="waiting-count">${k.waiting || 0}</td>
            <td data-label="Limit" class="limit">${k.limit || "–"}</td>
            <td data-label="Slots in use"><meter min="0" max=${k.limit || 1} high=${k.limit || 1} value=${k.active || 0}
              aria-label=${`${k.active || 0} of ${k.limit || "?"} slots`}></meter></td>
          </tr>`)}
        </tbody>
      </table>
      ${!keys.loading && !list.length && !keys.error
        ? html`<p class="muted empty">No concurrency key has active or waiting runs${applied ? " with this prefix" : ""}.</p>`
        : null}
    </div>
    <${Pager} hasPrevious=${page > 0} hasNext=${Boolean(next)} onPrevious=${() => setPage(page - 1)}
      onNext=${() => { setPages((p) => [...p.slice(0, page + 1), next]); setPage(page + 1); }} />
  </section>`;
}
