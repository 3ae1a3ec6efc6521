// Form fields bound to a form's state object: `f` holds the values by name, `set(name, value)`
// changes one, `error` is the server's last complaint, shown under the field it names (`field`:
// the server's path for it, or a list of them). Each input's id is "f-<name>".
import { FieldError, html, matches } from "./ui.js";

export function Text({ f, set, name, label, error, field, type = "text", hint, ...rest }) {
  const id = `f-${name}`;
  const invalid = Boolean(error && error.field && matches(error.field, field));
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <input id=${id} name=${name} type=${type} value=${f[name]} aria-invalid=${invalid ? "true" : "false"}
      onInput=${(e) => set(name, e.currentTarget.value)} ...${rest} />
    ${hint ? html`<small class="muted">${hint}</small>` : null}
    <${FieldError} error=${error} field=${field} />
  </div>`;
}

export function Area({ f, set, name, label, error, field, hint, rows = 3 }) {
  const id = `f-${name}`;
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <textarea id=${id} name=${name} rows=${rows} onInput=${(e) => set(name, e.currentTarget.value)}>${f[name]}</textarea>
    ${hint ? html`<small class="muted">${hint}</small>` : null}
    <${FieldError} error=${error} field=${field} />
  </div>`;
}

export function Choice({ f, set, name, label, options, error, field }) {
  const id = `f-${name}`;
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <select id=${id} name=${name} value=${f[name]} onChange=${(e) => set(name, e.currentTarget.value)}>
      ${options.map((o) => html`<option value=${o}>${o.endsWith("_UNSPECIFIED") ? "default" : o}</option>`)}
    </select>
    ${field ? html`<${FieldError} error=${error} field=${field} exact=${true} />` : null}
  </div>`;
}
