// The console's shell: hash routes (#/jobs, #/jobs/ID, #/runs/ID, #/workers, #/concurrency,
// #/notifications/TAB...), the login page, the header with the user, the role, logout and the theme switch.
import * as api from "./api.js";
import { ConcurrencyPage } from "./concurrency.js";
import { JobPage } from "./job.js";
import { JobFormPage } from "./jobform.js";
import { JobsPage } from "./jobs.js";
import { NotificationsPage } from "./notifications.js";
import { RunPage } from "./run.js";
import { ErrorBox, html, render, useEffect, useState } from "./ui.js";
import { WorkersPage } from "./workers.js";

const THEME_KEY = "taskmesh.console.theme";

function route(hash) {
  const path = hash.replace(/^#/, "").split("?")[0] || "/jobs";
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "jobs" && parts[1] === "new") return { page: "new" };
  if (parts[0] === "jobs" && parts[1] && parts[2] === "edit") return { page: "edit", id: parts[1] };
  if (parts[0] === "jobs" && parts[1]) return { page: "job", id: parts[1] };
  if (parts[0] === "runs" && parts[1]) return { page: "run", id: parts[1] };
  if (parts[0] === "workers") return { page: "workers" };
  if (parts[0] === "concurrency") return { page: "concurrency" };
  if (parts[0] === "notifications") return { page: "notifications", id: parts[1] || "deliveries" };
  return { page: "jobs" };
}

function applyTheme(theme) {
  if (theme === "dark" || theme === "light") document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

function Login() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.login(username, password);
    } catch (problem) {
      setError(problem);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login">
    <form class="card login-card" onSubmit=${submit}>
      <h1><span class="logo" aria-hidden="true">◆</span> Taskmesh</h1>
      <label for="username">Username</label>
      <input id="username" name="username" autocomplete="username" value=${username} onInput=${(e) => setUsername(e.currentTarget.value)} autofocus required />
      <label for="password">Password</label>
      <input id="password" name="password" type="password" autocomplete="current-password" value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} required />
      <${ErrorBox} error=${error} />
      <button type="submit" class="primary" disabled=${busy}>Log in</button>
    </form>
  </main>`;
}

function Shell({ claims }) {
  const [where, setWhere] = useState(route(window.location.hash));
  const [theme, setTheme] = useState(window.localStorage.getItem(THEME_KEY) || "auto");
  useEffect(() => {
    const onHash = () => setWhere(route(window.location.hash));
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  useEffect(() => {
    applyTheme(theme);
    window.localStorage.setItem(THEME_KEY, theme);
  }, [theme]);
  useEffect(() => {
    // Move focus to the new page's heading, so keyboard and screen reader users land on it.
    const heading = document.querySelector("main h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  }, [where.page, where.id]);
  const writable = api.canWrite(claims);
  let page;
  if (where.page === "job") page = html`<${JobPage} id=${where.id} key=${where.id} />`;
  else if (where.page === "run") page = html`<${RunPage} id=${where.id} key=${where.id} />`;
  else if (where.page === "workers") page = html`<${WorkersPage} />`;
  else if (where.page === "concurrency") page = html`<${ConcurrencyPage} />`;
  else if (where.page === "notifications") page = html`<${NotificationsPage} tab=${where.id} key=${where.id} />`;
  else if (where.page === "new") page = writable ? html`<${JobFormPage} />` : html`<${ErrorBox} error=${{ message: "Your role may not create jobs." }} />`;
  else if (where.page === "edit") page = writable ? html`<${JobFormPage} id=${where.id} key=${where.id} />` : html`<${ErrorBox} error=${{ message: "Your role may not edit jobs." }} />`;
  else page = html`<${JobsPage} />`;
  const nav = (name, href, active) => html`<a href=${href} aria-current=${active ? "page" : undefined}>${name}</a>`;
  const themes = ["auto", "light", "dark"];
  return html`<div class="app">
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById("main").focus(); }}>Skip to content</a>
    <header class="topbar">
      <a class="brand" href="#/jobs"><span class="logo" aria-hidden="true">◆</span> Taskmesh</a>
      <nav aria-label="main">
        ${nav("Jobs", "#/jobs", ["jobs", "job", "new", "edit", "run"].includes(where.page))}
        ${nav("Workers", "#/workers", where.page === "workers")}
        ${nav("Concurrency", "#/concurrency", where.page === "concurrency")}
        ${nav("Notifications", "#/notifications", where.page === "notifications")}
        <a href="/swagger-ui/index.html">API</a>
      </nav>
      <div class="user">
        <button type="button" class="ghost" title="theme" aria-label=${`theme: ${theme}`}
          onClick=${() => setTheme(themes[(themes.indexOf(theme) + 1) % themes.length])}>${theme === "dark" ? "☾" : theme === "light" ? "☀" : "◐"}</button>
        <span class="who">${claims.sub} <span class="role" data-role=${claims.role}>${claims.role}</span></span>
        <button type="button" class="ghost" onClick=${() => api.logout()}>Log out</button>
      </div>
    </header>
    <main id="main" tabindex="-1">${page}</main>
  </div>`;
}

function App() {
  const [claims, setClaims] = useState(api.claims());
  useEffect(() => api.onAuthChange(() => setClaims(api.claims())), []);
  useEffect(() => {
    // A token that expires while the page is open logs the page out.
    const timer = setInterval(() => {
      if (claims && !api.claims()) api.logout();
    }, 10000);
    return () => clearInterval(timer);
  }, [claims]);
  return claims ? html`<${Shell} claims=${claims} />` : html`<${Login} />`;
}

applyTheme(window.localStorage.getItem(THEME_KEY) || "auto");
render(html`<${App} />`, document.getElementById("app"));
