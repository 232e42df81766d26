// The embeddable extractor: an ES-module API and the <anote-extractor> custom element.
//
//   import { Anote } from './widget.js';
//   const anote = new Anote();                 // one engine worker
//   anote.addEventListener('progress', (e) => console.log(e.detail));
//   await anote.load();                        // default model + adapter (cached after the first visit)
//   const { entities } = await anote.extract(text, schema);   // UTF-16 offsets
//   const { text: safe } = await anote.redact(text, entities, { '*': 'replace' });
//
//   <anote-extractor model="models/gemma-3-270m-q4_k_m.gguf" schema="presets/pii.json" mode="redact"></anote-extractor>
//
// Types: anote.d.ts. Nothing the user types leaves the page: the engine runs in a worker.
import { AnoteClient } from './anote.js';
import { DEFAULT_MODEL_PATH } from './config.js';
import { countEntities, renderHighlights, setPalette } from './view.js';

// The model is the site's to host (it is not in the npm package): by default beside the page.
export const DEFAULT_MODEL = new URL(DEFAULT_MODEL_PATH, document.baseURI).href;

export class Anote extends EventTarget {
  #client;

  /** `threads`: Web Workers that share the CPU's work (see AnoteClient). */
  constructor({ threads } = {}) {
    super();
    this.#client = new AnoteClient({ threads });
    this.#client.onprogress = (p) => this.dispatchEvent(new CustomEvent('progress', { detail: p }));
  }

  /** Loads a GGUF (URL, Blob/File or ArrayBuffer; default: the shipped model with its adapter). */
  async load(model = DEFAULT_MODEL, options = {}) {
    const info = await this.#client.load(typeof model === 'string' ? new URL(model, location.href).href : model, options);
    this.dispatchEvent(new CustomEvent('ready', { detail: info }));
    return info;
  }

  /** Entities of `schema` (object or JSON) in `text`; an `entity` event per entity as it is found. */
  extract(text, schema) {
    return this.#client.extract(text, schema, (e) => this.dispatchEvent(new CustomEvent('entity', { detail: e })));
  }

  /** Reads `schema`'s prompt ahead (or its cache from the browser's file store), so that
   *  the next `extract` with it starts at the text; resolves to `{tokens, stored}`. */
  prepare(schema) {
    return this.#client.prepare(schema);
  }

  /** `options.key`: the secret of `hash` and `pseudonym` (at least 16 characters). */
  redact(text, entities, operators = { '*': 'replace' }, options = {}) {
    return this.#client.redact(text, entities, operators, options.key);
  }

  /** The built-in recognizers a schema type may name (`recognizer`): `[{name, description}]`. */
  recognizers() {
    return this.#client.recognizers();
  }

  cancel() {
    this.#client.cancel();
  }
}

/** `<anote-extractor model schema mode>`: a text box, an Extract button and the result
 *  (highlights, or redacted text with mode="redact"). `schema`: a URL or inline JSON. */
export class AnoteExtractor extends HTMLElement {
  static observedAttributes = ['model', 'schema', 'mode'];
  #anote = new Anote();
  #loaded = null;

  connectedCallback() {
    if (this.shadowRoot) return;
    const root = this.attachShadow({ mode: 'open' });
    const style = document.createElement('link');
    style.rel = 'stylesheet';
    style.href = new URL('./widget.css', import.meta.url).href;
    const status = Object.assign(document.createElement('div'), { className: 'status' });
    status.dataset.testid = 'widget-status';
    const input = Object.assign(document.createElement('textarea'), { rows: 4 });
    input.dataset.testid = 'widget-input';
    input.setAttribute('aria-label', 'Text to analyse');
    const button = Object.assign(document.createElement('button'), { textContent: 'Extract', disabled: true });
    button.dataset.testid = 'widget-extract';
    const out = Object.assign(document.createElement('div'), { className: 'out' });
    out.dataset.testid = 'widget-output';
    root.append(style, status, input, button, out);
    this.#anote.addEventListener('progress', ({ detail: p }) => {
      status.textContent = p.total ? `Loading model… ${Math.floor((100 * p.loaded) / p.total)}%` : 'Loading model…';
    });
    this.#loaded = this.#anote.load(this.getAttribute('model') ?? DEFAULT_MODEL).then(
      (info) => {
        status.textContent = `${info.model} ready (runs in this tab)`;
        button.disabled = false;
        // While the user writes, the schema's prompt is read: Extract then starts at the text.
        this.#schema().then((schema) => this.#anote.prepare(schema)).catch(() => {});
      },
      (e) => { status.textContent = `Model failed to load: ${e.message}`; },
    );
    button.addEventListener('click', async () => {
      button.disabled = true;
      status.textContent = 'Extracting…';
      try {
        const text = input.value;
        const schema = await this.#schema();
        setPalette(JSON.parse(schema).labels.map((t) => t.label));
        const { entities } = await this.#anote.extract(text, schema);
        if (this.getAttribute('mode') === 'redact') {
          out.textContent = (await this.#anote.redact(text, entities)).text;
        } else {
          renderHighlights(out, text, entities);
        }
        status.textContent = countEntities(entities.length);
        this.dispatchEvent(new CustomEvent('entities', { detail: entities }));
      } catch (e) {
        status.textContent = `Error: ${e.message}`;
      } finally {
        button.disabled = false;
      }
    });
  }

  /** Resolves once the model is ready. */
  get ready() {
    return this.#loaded;
  }

  async #schema() {
    const s = this.getAttribute('schema') ?? new URL('./presets/pii.json', import.meta.url).href;
    return s.trim().startsWith('{') ? s : (await fetch(new URL(s, location.href))).text();
  }
}

customElements.define('anote-extractor', AnoteExtractor);
