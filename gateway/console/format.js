// Pure formatting helpers: times, durations, states. Nothing here touches the DOM.

export const STATES = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "RETRY_WAIT", "CANCELLING", "CANCELLED"];
export const FINISHED = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);
const EPOCH = "1970-01-01T00:00:00Z";

/** A timestamp the API printed, or null when unset (unset fields print as the epoch). */
export function time(value) {
  if (!value || value === EPOCH || value.startsWith("1970-01-01T00:00:00")) return null;
  const parsed = new Date(value);
  return Number.isNaN(parsed.getTime()) ? null : parsed;
}

export function ago(value, now = Date.now()) {
  const at = time(value);
  if (!at) return "–";
  const seconds = Math.round((at.getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs === 0) return "now"; // within half a second, either way (clocks differ a little)
  const text =
    abs < 60 ? `${abs}s` : abs < 3600 ? `${Math.round(abs / 60)}m` : abs < 86400 ? `${Math.round(abs / 3600)}h` : `${Math.round(abs / 86400)}d`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

export function clock(value) {
  const at = time(value);
  return at ? at.toLocaleString(undefined, { hour12: false }) : "–";
}

/** "1.5s" (a protobuf Duration in JSON) to seconds; null when absent. */
export function seconds(duration) {
  if (typeof duration !== "string" || !duration.endsWith("s")) return null;
  const value = Number(duration.slice(0, -1));
  return Number.isFinite(value) ? value : null;
}

export function duration(totalSeconds) {
  if (totalSeconds === null || totalSeconds === undefined || !Number.isFinite(totalSeconds)) return "–";
  if (totalSeconds < 1) return `${Math.round(totalSeconds * 1000)} ms`;
  if (totalSeconds < 60) return `${totalSeconds.toFixed(1)} s`;
  const minutes = Math.floor(totalSeconds / 60);
  if (minutes < 60) return `${minutes}m ${Math.round(totalSeconds % 60)}s`;
  return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

export function between(from, to) {
  const a = time(from);
  const b = time(to);
  return a && b ? (b.getTime() - a.getTime()) / 1000 : null;
}

/** The run to show: `offered` unless `shown` is a later version of it (an action's answer can
 * arrive after the watch already sent a later change). */
export function newerRun(shown, offered) {
  return shown && offered && Number(shown.version || 0) > Number(offered.version || 0) ? shown : offered;
}

export function runDuration(run) {
  return between(run.startTime, run.finishTime);
}

export function triggerToStart(run) {
  return between(run.queueTime, run.startTime);
}

export function scheduleText(schedule) {
  if (!schedule) return "manual";
  if (schedule.cron) return `cron ${schedule.cron.expression}${schedule.cron.timezone ? ` (${schedule.cron.timezone})` : ""}`;
  if (schedule.interval) return `every ${duration(seconds(schedule.interval.every))}`;
  if (schedule.once) return `once at ${clock(schedule.once.at)}`;
  return "manual";
}

export function executorKind(executor) {
  return Object.keys(executor || {})[0] || "?";
}

export function executorText(executor) {
  const kind = executorKind(executor);
  const spec = (executor || {})[kind] || {};
  if (kind === "http") return `${spec.method || "GET"} ${spec.url || ""}`;
  if (kind === "shell") return (spec.argv || []).join(" ");
  if (kind === "sleep") return `sleep ${spec.seconds || 0} s`;
  if (kind === "python") return spec.task || "python";
  return kind;
}

/** The code of a waiting reason ("CONCURRENCY_LIMIT: key ... " -> "CONCURRENCY_LIMIT"), if it has one. */
export function waitingCode(reason) {
  const match = /^([A-Z][A-Z_]+): /.exec(reason || "");
  return match ? match[1] : null;
}

export function labelsText(labels) {
  return Object.entries(labels || {})
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}

/** A ListJobs/ListRuns filter string quoting a user's text safely. */
export function quote(text) {
  return `"${String(text).replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** A short form of an id for display: the tail, which differs between ids made at the same
 * moment (UUIDv7 ids share their leading, time-ordered digits). */
export function shortId(id) {
  return String(id || "").slice(-8);
}

/** Non-empty trimmed lines of a text box. */
export const lines = (text) => text.split("\n").map((l) => l.trim()).filter(Boolean);
/** "key=value" lines to a map (a line without "=" maps its key to ""). */
export const pairs = (text) =>
  Object.fromEntries(
    lines(text).map((line) => {
      const at = line.indexOf("=");
      return at < 0 ? [line, ""] : [line.slice(0, at).trim(), line.slice(at + 1).trim()];
    }),
  );
/** A map as "key=value" lines. */
export const pairsText = (map) => Object.entries(map || {}).map(([k, v]) => `${k}=${v}`).join("\n");
