// Shared components and hooks. Everything renders through htm/Preact, which sets text and
// attributes through the DOM (never as markup), so job names, labels and log lines that an
// attacker wrote are shown as text.
import { h, render } from "./vendor/preact.mjs";
import { useEffect, useRef, useState, useCallback } from "./vendor/preact-hooks.mjs";
import htm from "./vendor/htm.mjs";
import uPlot from "./vendor/uplot.mjs";

export const html = htm.bind(h);
export { render, useEffect, useRef, useState, useCallback };

/**
 * Calls `load(signal)` now and every `intervalMs` while the page is visible, keeping the last
 * answer; `reload()` asks again at once. Answers of a superseded call are dropped.
 */
export function usePoll(load, deps, intervalMs = 3000) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++generation.current;
    try {
      const data = await load();
      if (mine === generation.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === generation.current) setState((s) => ({ data: s.data, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    // New deps (a filter, a page) keep the last answer on screen until the new one arrives.
    setState((s) => ({ ...s, loading: true }));
    reload();
    if (!intervalMs) return () => generation.current++;
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") reload();
    }, intervalMs);
    return () => {
      clearInterval(timer);
      generation.current++;
    };
  }, [reload, intervalMs]);
  return { ...state, reload };
}

export function State({ state }) {
  const value = state || "NONE";
  return html`<span class=${`state state-${value.toLowerCase()}`}>${value.replace("_", " ")}</span>`;
}

/** Recent runs, oldest first, one square each, linked to the run. */
export function HistoryStrip({ runs }) {
  if (!runs) return html`<span class="strip muted">…</span>`;
  if (!runs.length) return html`<span class="strip muted">no runs</span>`;
  return html`<span class="strip" aria-label="recent runs">
    ${[...runs].reverse().map(
      (run) =>
        html`<a
          href=${`#/runs/${encodeURIComponent(run.id)}`}
          class=${`cell state-${run.state.toLowerCase()}`}
          title=${`${run.state} · ${run.queueTime || ""}`}
          aria-label=${`run ${run.state}`}
        ></a>`,
    )}
  </span>`;
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">${error.status ? `${error.status}: ` : ""}${error.message}</div>`;
}

/** The server's complaint about one field, shown under it. */
export function FieldError({ error, field, exact = false }) {
  if (!error || !error.field || !matches(error.field, field, exact)) return null;
  return html`<div class="field-error" role="alert" data-field=${error.field}>${error.detail}</div>`;
}

/** Whether the server's field path ("job.schedule.cron.expression") names this field or one inside it. */
export function matches(serverField, field, exact = false) {
  const fields = Array.isArray(field) ? field : [field];
  const inside = (f) => !exact && (serverField.startsWith(`${f}.`) || serverField.startsWith(`${f}[`));
  return fields.some((f) => serverField === f || inside(f));
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

/** Tick labels: times of day within two days, dates beyond. */
function timeLabels(u, ticks) {
  const span = ticks.length > 1 ? ticks[ticks.length - 1] - ticks[0] : 0;
  return ticks.map((t) => {
    const at = new Date(t * 1000);
    if (span > 2 * 86400) return at.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    const options = { hour: "2-digit", minute: "2-digit", hour12: false };
    if (span < 180) options.second = "2-digit";
    return at.toLocaleTimeString(undefined, options);
  });
}

/**
 * A time series chart (uPlot). `data` is [xs (unix seconds), ys1, ys2...]; `series` names
 * each y series. Resizes with its container.
 */
export function Chart({ data, series, title, yLabel = "seconds", points = true }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const element = box.current;
    const colors = [cssVar("--accent"), cssVar("--warn"), cssVar("--bad")];
    const width = () => Math.max(240, element.clientWidth);
    const options = {
      width: width(),
      height: 180,
      // One point (or all at one time) would stretch the axis over years: pad it to minutes.
      scales: { x: { time: true, range: (u, min, max) => (max - min < 60 ? [min - 60, max + 60] : [min, max]) } },
      legend: { show: false },
      cursor: { points: { size: 7 } },
      axes: [
        { stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid") }, space: 70, values: timeLabels },
        { label: yLabel, stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid") } },
      ],
      series: [
        {},
        ...series.map((label, i) => ({
          label,
          stroke: colors[i % colors.length],
          width: 1.5,
          points: { show: points, size: 5 },
        })),
      ],
    };
    plot.current = new uPlot(options, data, element);
    const observer = new ResizeObserver(() => plot.current && plot.current.setSize({ width: width(), height: 180 }));
    observer.observe(element);
    return () => {
      observer.disconnect();
      plot.current.destroy();
      plot.current = null;
    };
  }, [series.join("|")]);
  useEffect(() => {
    if (plot.current) plot.current.setData(data);
  }, [data]);
  return html`<figure class="chart">
    <figcaption>${title}</figcaption>
    <div ref=${box} class=${data[0].length ? "chart-box" : "chart-box blank"} title=${title}></div>
    ${data[0].length === 0 ? html`<p class="muted empty">no data yet</p>` : null}
  </figure>`;
}

export function Pager({ hasPrevious, hasNext, onPrevious, onNext }) {
  return html`<div class="pager">
    <button type="button" disabled=${!hasPrevious} onClick=${onPrevious}>‹ Newer</button>
    <button type="button" disabled=${!hasNext} onClick=${onNext}>Older ›</button>
  </div>`;
}

/** Shows any JSON value as indented text: for outputs and fields this console does not know. */
export function Json({ value }) {
  return html`<pre class="json">${JSON.stringify(value, null, 2)}</pre>`;
}
