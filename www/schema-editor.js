// The entity-type table: edit, add, remove, reorder, duplicate; presets, JSON import and
// export; kept in localStorage. Validation is the engine's own (`invalid_schema`).

import { SCHEMA_STORE } from './config.js';

const list = (s) => s.split(';').map((x) => x.trim()).filter(Boolean);

export class SchemaEditor {
  constructor({ rows, description, rules, error, onChange }) {
    Object.assign(this, { rows, description, rules, error, onChange });
    this.schema = { description: '', span_rules: '', labels: [] };
    this.recognizers = []; // [{name, description}] from the engine (setRecognizers)
    description.addEventListener('input', () => this.#edited({ description: description.value }));
    rules.addEventListener('input', () => this.#edited({ span_rules: rules.value }));
  }

  /** The recognizers a type may name, as the engine lists them. Until they arrive, a
   *  type's menu holds only its own recognizer. */
  setRecognizers(list) {
    this.recognizers = list;
    this.#render();
  }

  /** The saved schema, if any (first visit: none). */
  restore() {
    try {
      const saved = JSON.parse(localStorage.getItem(SCHEMA_STORE));
      if (saved?.labels) return this.set(saved), true;
    } catch { /* a broken entry is replaced by the preset */ }
    return false;
  }

  set(schema) {
    this.schema = {
      description: schema.description ?? '',
      span_rules: schema.span_rules ?? '',
      labels: (schema.labels ?? []).map((t) => ({ ...t })),
    };
    this.description.value = this.schema.description;
    this.rules.value = this.schema.span_rules;
    this.#render();
    this.#save();
  }

  /** The label's guideline, for tooltips. */
  guideline(label) {
    return this.schema.labels.find((t) => t.label === label)?.description ?? '';
  }

  /** A new type at the end, its label focused and selected for typing. */
  add() {
    this.schema.labels.push({ label: `TYPE_${this.schema.labels.length + 1}`, description: '' });
    this.#changed();
    const label = this.rows.lastElementChild.querySelector('[data-testid=schema-label]');
    label.scrollIntoView({ block: 'nearest' });
    label.focus();
    label.select();
  }

  showError(message) {
    this.error.textContent = message;
  }

  #edited(fields) {
    Object.assign(this.schema, fields);
    this.#save();
  }

  #save() {
    localStorage.setItem(SCHEMA_STORE, JSON.stringify(this.schema));
    this.onChange(this.schema);
  }

  #changed() {
    this.#render();
    this.#save();
  }

  #render() {
    this.rows.replaceChildren(...this.schema.labels.map((t, i) => this.#row(t, i)));
  }

  #row(t, i) {
    const tr = document.createElement('tr');
    tr.dataset.testid = 'schema-row';
    const cell = (el) => { const td = document.createElement('td'); td.append(el); tr.append(td); return el; };
    const input = (value, set, label, multiline = false) => {
      const el = document.createElement(multiline ? 'textarea' : 'input');
      el.value = value;
      el.setAttribute('aria-label', label);
      if (multiline) el.rows = 2;
      el.addEventListener('input', () => { set(el.value); this.#save(); });
      return cell(el);
    };
    // Kept as the engine keeps labels (schema::normalize_label), so lookups by label match;
    // the row's other controls are named after the label, so they are renamed with it.
    const named = [];
    const rename = () => {
      for (const [el, what] of named) {
        el.setAttribute('aria-label', `${what} ${t.label}`);
        if (el.tagName === 'BUTTON') el.title = `${what} ${t.label}`;
      }
    };
    input(t.label, (v) => { t.label = v.trim().replace(/\s+/g, ' ').normalize('NFC'); rename(); }, `label of type ${i + 1}`).dataset.testid = 'schema-label';
    named.push([input(t.description ?? '', (v) => { t.description = v; }, '', true), 'guideline of']);
    named.push([input((t.examples ?? []).join('; '), (v) => { t.examples = list(v); }, ''), 'examples of']);
    named.push([input((t.counter_examples ?? []).join('; '), (v) => { t.counter_examples = list(v); }, ''), 'counter-examples of']);
    const rec = document.createElement('select');
    named.push([rec, 'recognizer of']);
    const known = this.recognizers.map((r) => r.name);
    const names = ['', ...known, ...(t.recognizer && !known.includes(t.recognizer) ? [t.recognizer] : [])];
    for (const name of names) {
      const option = new Option(name || '—', name, false, (t.recognizer ?? '') === name);
      option.title = this.recognizers.find((r) => r.name === name)?.description ?? '';
      rec.append(option);
    }
    rec.addEventListener('change', () => { if (rec.value) t.recognizer = rec.value; else delete t.recognizer; this.#save(); });
    cell(rec);
    const actions = document.createElement('td');
    actions.className = 'actions';
    const L = this.schema.labels;
    for (const [text, title, act] of [
      ['↑', 'move up', () => i > 0 && L.splice(i - 1, 2, L[i], L[i - 1])],
      ['↓', 'move down', () => i < L.length - 1 && L.splice(i, 2, L[i + 1], L[i])],
      ['+', 'duplicate', () => L.splice(i + 1, 0, { ...structuredClone(t), label: `${t.label}_COPY` })],
      ['✕', 'remove', () => L.splice(i, 1)],
    ]) {
      const b = document.createElement('button');
      b.className = 'icon';
      b.textContent = text;
      named.push([b, title]);
      b.addEventListener('click', () => { act(); this.#changed(); });
      actions.append(b);
    }
    tr.append(actions);
    rename();
    return tr;
  }
}
