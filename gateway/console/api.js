// The console's only way to the server: the REST API on this origin, with the user's JWT.
//
// The token is kept in localStorage under one key, as Swagger UI keeps an authorization it
// persists (persistAuthorization), and sent only as `Authorization: Bearer`, never in a URL.
// Its claims (sub, role, exp) are read for display and for hiding buttons a role may not use;
// the server checks every call anyway.

const TOKEN_KEY = "taskmesh.console.token";
const listeners = new Set();

export function token() {
  return window.localStorage.getItem(TOKEN_KEY);
}

export function claims() {
  const value = token();
  if (!value) return null;
  try {
    const payload = value.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    const parsed = JSON.parse(atob(payload));
    if (typeof parsed.exp === "number" && parsed.exp * 1000 <= Date.now()) return null;
    return parsed;
  } catch {
    return null;
  }
}

/** Roles that may create, change, trigger, cancel (the permission table in the README). */
export function canWrite(current = claims()) {
  const role = String((current && current.role) || "").toLowerCase();
  return role === "operator" || role === "admin";
}

export function onAuthChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function setToken(value) {
  if (value) window.localStorage.setItem(TOKEN_KEY, value);
  else window.localStorage.removeItem(TOKEN_KEY);
  for (const listener of listeners) listener();
}

export function logout() {
  setToken(null);
}

/** An error the API answered: HTTP status, gRPC code, message, and the field it names if any. */
export class ApiError extends Error {
  constructor(status, body) {
    const message = (body && body.message) || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.code = body && body.code;
    // INVALID_ARGUMENT messages start with the field in snake_case: "job.schedule.cron.expression: ..."
    const match = /^([a-z_][a-z0-9_]*(?:\.[a-z0-9_[\]"-]+)*): (.*)$/s.exec(message);
    this.field = status === 400 && match ? match[1] : null;
    this.detail = this.field ? match[2] : message;
  }
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401 && token()) logout();
  return new ApiError(response.status, body);
}

export async function request(method, path, { query, body, signal } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
  }
  const headers = { Accept: "application/json" };
  const current = token();
  if (current) headers.Authorization = `Bearer ${current}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    credentials: "omit",
    cache: "no-store",
  });
  if (!response.ok) throw await errorOf(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

export const get = (path, query, signal) => request("GET", path, { query, signal });
export const post = (path, body = {}) => request("POST", path, { body });
export const patch = (path, body, query) => request("PATCH", path, { body, query });
export const del = (path) => request("DELETE", path);

export async function login(username, password) {
  const answer = await post("/api/auth/login", { username, password });
  setToken(answer.accessToken);
  return answer;
}

/**
 * Follows a server stream answered as newline-delimited JSON (WatchRun through the gateway),
 * calling onMessage with each parsed line, until it ends or `signal` aborts. Resolves when the
 * stream ends; rejects with ApiError when the server refuses it.
 */
export async function stream(path, onMessage, signal) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token()}` };
  const response = await fetch(new URL(path, window.location.origin), {
    headers,
    signal,
    credentials: "omit",
    cache: "no-store",
  });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    // Envoy's transcoder may answer a JSON array ("[{...},\n{...}]") or one object a line: accept both.
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      emit(buffered.slice(0, newline), onMessage);
      buffered = buffered.slice(newline + 1);
    }
  }
  emit(buffered, onMessage);
}

function emit(line, onMessage) {
  let text = line.trim();
  if (text.startsWith("[")) text = text.slice(1);
  if (text.endsWith("]")) text = text.slice(0, -1);
  if (text.startsWith(",")) text = text.slice(1);
  if (text.endsWith(",")) text = text.slice(0, -1);
  text = text.trim();
  if (!text) return;
  const message = JSON.parse(text);
  // A stream that fails midway ends with an error object instead of a message.
  if (message.error || (message.code && message.message && !message.result)) {
    throw new ApiError(500, message.error || message);
  }
  onMessage(message.result || message);
}
