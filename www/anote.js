// A small client for the engine worker, shared by the page and (later) the widget.
// Every request returns a Promise; progress and streamed tokens arrive through callbacks.
export class AnoteClient {
  constructor(workerUrl = new URL('./worker.js', import.meta.url)) {
    this.worker = new Worker(workerUrl, { type: 'module' });
    this.pending = new Map();
    this.cancelFlags = new Map();
    this.nextId = 1;
    this.onprogress = () => {};
    this.worker.onmessage = ({ data }) => this.#receive(data);
    this.worker.onerror = (e) => this.#rejectAll({ code: 'worker_failed', message: e.message || 'the engine worker failed to start' });
  }

  #receive(msg) {
    if (msg.type === 'progress') return this.onprogress(msg);
    const key = msg.id ?? 'load';
    const p = this.pending.get(key);
    if (!p) return;
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

  /** Loads a model from a URL (cached in Cache Storage) or from an ArrayBuffer. */
  load(source) {
    const msg = typeof source === 'string' ? { type: 'load', url: source } : { type: 'load', bytes: source };
    return this.#request('load', msg, {}, typeof source === 'string' ? [] : [source]);
  }

  /** Entities of `schema` (an object or JSON) in `text`, streamed to `onEntity` as found;
   *  resolves to `{entities, windows}` with UTF-16 offsets. `cancel()` stops it (the promise
   *  rejects with code `cancelled`); that needs a cross-origin isolated page (COOP/COEP). */
  extract(text, schema, onEntity) {
    const id = this.nextId++;
    const json = typeof schema === 'string' ? schema : JSON.stringify(schema);
    const cancel = self.crossOriginIsolated ? new Int32Array(new SharedArrayBuffer(4)) : undefined;
    this.cancelFlags.set(id, cancel);
    const done = this.#request(id, { type: 'extract', id, text, schema: json, cancel }, { onEntity });
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
