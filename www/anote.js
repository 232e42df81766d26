// A small client for the engine worker, shared by the page and the widget (widget.js).
// Every request returns a Promise; progress and streamed tokens arrive through callbacks.
// The protocol is defined at the top of worker.js.
export class AnoteClient {
  /** `threads`: Web Workers that share the engine's work where the page is cross-origin
   *  isolated (default: all cores but one, both of two, at most 8); fixed for the client's life. */
  constructor({ threads } = {}) {
    // Written out in full so that bundlers (Vite) see the worker and bundle it.
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    if (threads !== undefined) this.worker.postMessage({ type: 'start', threads });
    this.pending = new Map();
    this.cancelFlags = new Map();
    this.nextId = 1;
    this.onprogress = () => {};
    this.onready = () => {}; // the engine moved (a lost GPU: now on the CPU)
    this.worker.onmessage = ({ data }) => this.#receive(data);
    this.worker.onerror = (e) => this.#rejectAll({ code: 'worker_failed', message: e.message || 'the engine worker failed to start' });
  }

  #receive(msg) {
    if (msg.type === 'progress' && msg.id === undefined) return this.onprogress(msg);
    const key = msg.id ?? 'load';
    if (msg.type === 'ready' && !this.pending.has(key)) return this.onready(msg);
    const p = this.pending.get(key);
    if (!p) return;
    if (msg.type === 'progress') return p.onProgress?.(msg);
    if (msg.type === 'token') return p.onToken?.(msg);
    if (msg.type === 'entity') return p.onEntity?.(msg.entity);
    this.pending.delete(key);
    if (msg.type === 'error') p.reject(Object.assign(new Error(msg.message), { code: msg.code }));
    else p.resolve(msg.type === 'done' ? msg.result : msg);
  }

  #rejectAll(err) {
    for (const p of this.pending.values()) p.reject(Object.assign(new Error(err.message), { code: err.code }));
    this.pending.clear();
  }

  #request(key, msg, extra = {}, transfer = []) {
    return new Promise((resolve, reject) => {
      this.pending.set(key, { resolve, reject, ...extra });
      this.worker.postMessage(msg, transfer);
    });
  }

  /** Loads a model from a URL (cached in the origin private file system), a Blob/File or an ArrayBuffer. With a
   *  URL, the shipped fine-tuning adapter is applied unless `{adapter: false}`. `backend`:
   *  `auto` (WebGPU where the browser has it, else the CPU), `webgpu` or `cpu`. Resolves to
   *  `{backend, device, threads: {count, why}, model, adapter, …}`; `device` names the GPU,
   *  or says why the CPU runs; `threads` how many share the CPU's work, and why. */
  load(source, { adapter = true, backend = 'auto' } = {}) {
    const msg = typeof source === 'string' ? { type: 'load', url: source, adapter, backend } : { type: 'load', bytes: source, backend };
    return this.#request('load', msg, {}, source instanceof ArrayBuffer ? [source] : []);
  }

  /** Runs every WebGPU kernel against its CPU twin on this browser's adapter. Resolves to
   *  `{adapter, checks: [{kernel, case, max_rel_diff, tolerance}]}`; rejects with code `gpu`
   *  when there is no WebGPU. */
  checkKernels() {
    return this.#call('check-kernels', {});
  }

  /** Runs our simd128 CPU kernels: the Q8 activation quantization against the plain loop,
   *  the matrix products against f32 references. Resolves to `[[case, difference]]`; a
   *  difference above 1e-5 is a bug. */
  checkCpuKernels() {
    return this.#call('check-cpu-kernels', {});
  }

  #call(type, fields, extra) {
    const id = this.nextId++;
    return this.#request(id, { type, id, ...fields }, extra);
  }

  /** Switches the shipped adapter on or off; resolves to `{adapter}` (its sha256 or null). */
  setAdapter(enabled) {
    return this.#call('adapter', { enabled });
  }

  /** Redacts `text`: `entities` as `extract` returns them, `operators` maps labels (or `*`)
   *  to `replace`, `mask[:C[:N]]`, `hash` or `pseudonym`; `key` (at least 16 characters) is
   *  the secret of `hash` and `pseudonym`. Resolves to `{text, replacements}`, without any
   *  original value. Needs no model. */
  redact(text, entities, operators, key) {
    return this.#call('redact', { text, entities: entities.map(({ label, start, end }) => ({ label, start, end })), operators, key });
  }

  /** Redacts the text of the last completed `extract` with its entities, as the engine
   *  holds them (nothing is sent back); `operators` and `key` as for `redact`. Rejects with
   *  code `bad_input` when no extraction has completed. */
  redactLast(operators, key) {
    return this.#call('redact-last', { operators, key });
  }

  /** The last completed `extract` as a line of the eval JSONL files (what `anote extract`
   *  writes): `{text, entities: [{label, start, end, text, score, source}]}`, offsets in
   *  code points, only entities scoring at least `minScore`. Rejects with code `bad_input`
   *  when no extraction has completed. */
  exportLast(minScore = 0) {
    return this.#call('export-last', { minScore });
  }

  /** The built-in recognizers a schema type may name: `[{name, description}]`. Needs no model. */
  recognizers() {
    return this.#call('recognizers', {});
  }

  /** Resolves if the schema is valid; rejects with code `invalid_schema` and the reason. */
  validate(schema) {
    return this.#call('validate', { schema: typeof schema === 'string' ? schema : JSON.stringify(schema) });
  }

  /** Checks `schema` and reads its prompt into the engine's cache, so that the next `extract`
   *  with it starts at the text (call it while the user is still writing or pasting).
   *  Resolves to `{tokens, stored}`: the prompt's length in tokens, and whether its cache
   *  was read from the browser's file store (kept from an earlier visit) instead of the
   *  model; rejects like `validate`. Requests sent meanwhile wait for it. */
  prepare(schema) {
    return this.#call('prepare', { schema: typeof schema === 'string' ? schema : JSON.stringify(schema) });
  }

  /** Extracts over a gold JSONL file and scores it; `onProgress({loaded, total})`. Resolves
   *  to `{scores, broken: [{line, message}], documents: [{id, predicted, missed, spurious}]}`,
   *  spans `{start, end, label, text}` in code points (as in the gold file). */
  evaluate(gold, schema, onProgress) {
    const json = typeof schema === 'string' ? schema : JSON.stringify(schema);
    const cancel = self.crossOriginIsolated ? new Int32Array(new SharedArrayBuffer(4)) : undefined;
    const id = this.nextId++;
    this.cancelFlags.set(id, cancel);
    const done = this.#request(id, { type: 'evaluate', id, gold, schema: json, cancel }, { onProgress });
    return done.finally(() => this.cancelFlags.delete(id));
  }

  /** Entities of `schema` (an object or JSON) in `text`, streamed to `onEntity` as found;
   *  `onProgress({loaded, total, share})`: windows done of a long text, and the estimated
   *  share of the work done, after every decoding step. Resolves to
   *  `{entities, windows}` with UTF-16 offsets. `cancel()` stops it (the promise rejects
   *  with code `cancelled`); that needs a cross-origin isolated page (COOP/COEP).
   *  `batch`: windows decoded at once (default 8; the same entities whatever it is). */
  extract(text, schema, onEntity, onProgress, { batch } = {}) {
    const id = this.nextId++;
    const json = typeof schema === 'string' ? schema : JSON.stringify(schema);
    const cancel = self.crossOriginIsolated ? new Int32Array(new SharedArrayBuffer(4)) : undefined;
    this.cancelFlags.set(id, cancel);
    const done = this.#request(id, { type: 'extract', id, text, schema: json, cancel, batch }, { onEntity, onProgress });
    return done.finally(() => this.cancelFlags.delete(id));
  }

  /** Stops every running extraction. */
  cancel() {
    for (const flag of this.cancelFlags.values()) if (flag) Atomics.store(flag, 0, 1);
  }

  /** Greedy generation; `onToken({token, text})` sees each new token. */
  generate(prompt, maxTokens, onToken) {
    const id = this.nextId++;
    return this.#request(id, { type: 'generate', id, prompt, maxTokens }, { onToken });
  }
}
