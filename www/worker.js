// The engine's Web Worker: owns the wasm module and the model, so the page never blocks.
// Protocol (the only place it is defined; anote.js speaks it for the page):
//   page → worker  {type:'start', threads}                before anything else, if at all: the threads to use
//                                                         (default: all cores but one, both of two, at most 8)
//                  {type:'load', url, adapter?, backend?}  fetch (or read from the file store, OPFS) and load a GGUF;
//                                                         adapter (default true): apply the shipped fine-tuning
//                                                         adapter when the model is the base it was trained on;
//                                                         backend: 'auto' (default) | 'webgpu' | 'cpu'
//                  {type:'load', bytes, backend?}         load a GGUF from an ArrayBuffer or a Blob (a local file)
//                  {type:'check-kernels', id}             every WebGPU kernel against its CPU twin
//                  {type:'check-cpu-kernels', id}         our simd128 matrix kernel against an f32 reference
//                  {type:'adapter', id, enabled}          switch the shipped adapter on or off
//                  {type:'generate', id, prompt, maxTokens}
//                  {type:'extract', id, text, schema, cancel?, batch?}  schema: JSON string; cancel: Int32Array
//                                                             on a SharedArrayBuffer, 1 = stop; batch: windows decoded at once
//                  {type:'evaluate', id, gold, schema, cancel?} gold: JSONL text (code-point offsets); done:
//                                                         {scores, broken, documents: [{id, predicted, missed, spurious}]}
//                  {type:'redact', id, text, entities, operators, key?}  key: the secret of hash and pseudonym
//                  {type:'redact-last', id, operators, key?}  the last completed extraction, as the engine holds it
//                  {type:'export-last', id, minScore}    that extraction as an eval JSONL line (code points)
//                  {type:'recognizers', id}              the built-in recognizers: [{name, description}] (no model needed)
//                  {type:'validate', id, schema}             with a model loaded, its prompt must fit the context
//                  {type:'prepare', id, schema}           check the schema and read its prompt into the model's cache,
//                                                         so that the next extraction with it starts at the text;
//                                                         done: {tokens, stored}: the prompt's length in tokens, and
//                                                         whether its cache was read from the file store instead of
//                                                         the model. Later requests wait for it (the engine takes
//                                                         one request at a time)
//   worker → page  {type:'progress', id?, phase:'download'|'load'|'adapter'|'extract'|'evaluate', loaded, total}
//                                                         (loading, in this order: the model's bytes downloaded, its
//                                                         weights read and prepared, the adapter's bytes downloaded;
//                                                         with an id: windows of an extraction, with `share`, the
//                                                         estimated share of its work done, after every decoding
//                                                         step; documents of an evaluation)
//                  {type:'ready', backend, device, threads: {count, why}, model, adapter, loadMs, fromCache, cached, bytes, wasmBytes}
//                                                         (sent again if a lost GPU moves the engine to the CPU)
//                  {type:'token', id, token, text}
//                  {type:'entity', id, entity}                offsets in UTF-16 units
//                  {type:'done', id, result}
//                  {type:'error', id?, code, message}
import { MODEL_DIR, PROMPT_DIR } from './config.js';

// The engine comes in two builds (`cargo xtask build-web`): `pkg-threads` shares each
// matrix product and the attention among a pool of Web Workers over one shared memory,
// which needs a cross-origin isolated page (COOP/COEP); `pkg` runs on this thread alone,
// anywhere. The page's first message ('start') says how many threads it wants; the build
// is chosen once, when the engine is first needed.
// All cores but one leave the page a core of its own; on two cores both threads extract 1.6×
// as fast as one (docs/benchmarks.md) and the page still answers, so both are used there.
const cores = navigator.hardwareConcurrency ?? 1;
let threadsWanted = Math.min(8, Math.max(2, cores - 1), cores);
let started = null;
const wasm = () => (started ??= startEngine(threadsWanted));

async function startEngine(threads) {
  if (threads > 1 && self.crossOriginIsolated) {
    const pkg = await import('./pkg-threads/anote_ner.js');
    const exports = await pkg.default();
    await pkg.initThreadPool(threads - 1); // helpers of the engine's own thread
    return { pkg, exports, threads: { count: threads, why: `${threads} threads (the page is cross-origin isolated)` } };
  }
  const pkg = await import('./pkg/anote_ner.js');
  const why = threads > 1 ? 'one thread: threads need a cross-origin isolated page (COOP/COEP headers)' : 'one thread';
  return { pkg, exports: await pkg.default(), threads: { count: 1, why } };
}

let engine = null;
let adapterBytes = null; // the shipped adapter, once fetched (7.6 MB)
// Linear memory never shrinks, so its size is the engine's peak (what the benchmark reports).
const wasmBytes = async () => (await wasm()).exports.memory.buffer.byteLength;

function post(msg) { self.postMessage(msg); }

function fail(id, e) {
  post({ type: 'error', id, code: e?.code ?? 'internal', message: String(e?.message ?? e) });
}

// Yields a body's chunks, read through one reused 1 MB buffer where the stream allows it
// (a BYOB reader), so a download leaves no garbage behind for the collector.
async function* chunksOf(body) {
  let reader = null;
  try { reader = body.getReader({ mode: 'byob' }); } catch { /* not a byte stream */ }
  if (!reader) {
    for (const plain = body.getReader(); ;) {
      const { done, value } = await plain.read();
      if (done) return;
      yield value;
    }
  }
  for (let buffer = new ArrayBuffer(1 << 20); ;) {
    const { done, value } = await reader.read(new Uint8Array(buffer));
    if (done) return;
    yield value;
    buffer = value.buffer;
  }
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw Object.assign(new Error(`cannot fetch ${url}: HTTP ${response.status}`), { code: 'fetch_failed' });
  return response;
}

// Streams a download into `write(chunk, at)` with progress; a body shorter than its
// Content-Length (a dropped connection) is an error, never a silently short model.
async function download(url, phase, write) {
  const response = await fetchOk(url);
  const total = Number(response.headers.get('content-length')) || 0;
  let loaded = 0, lastPost = 0;
  for await (const chunk of chunksOf(response.body)) {
    write(chunk, loaded);
    loaded += chunk.length;
    const now = performance.now();
    if (now - lastPost > 100) { post({ type: 'progress', phase, loaded, total }); lastPost = now; }
  }
  if (total && loaded !== total) throw Object.assign(new Error(`${url}: the download stopped at ${loaded} of ${total} bytes`), { code: 'fetch_failed' });
  post({ type: 'progress', phase, loaded, total: total || loaded });
  return loaded;
}

// Outside a secure context there is no file store: the whole file is held in memory.
async function downloadToMemory(url, phase) {
  let bytes = new Uint8Array(0);
  const size = await download(url, phase, (chunk, at) => {
    if (at + chunk.length > bytes.length) {
      const grown = new Uint8Array(Math.max(2 * bytes.length, at + chunk.length, 1 << 20));
      grown.set(bytes.subarray(0, at));
      bytes = grown;
    }
    bytes.set(chunk, at);
  });
  return bytes.subarray(0, size);
}

// Model and adapter files are kept in the origin private file system (OPFS), one file per
// URL, so a reload reads them from disk. A download is written to `NAME.part` and renamed
// when complete, so a broken one is never taken for the model. The engine reads the file
// through a synchronous access handle straight into wasm memory, a tensor at a time: no
// JavaScript copy of the model exists, so no dead copy waits for the garbage collector
// beside the weights (with Cache Storage and a Blob that cost ≈ 100–200 MB of peak memory).
// On the CPU the engine keeps the handle, to read the embedding's rows as it looks them up
// (178 MB of the default model that never enter wasm memory), and closes it when freed.
const modelDir = async () => (await navigator.storage.getDirectory()).getDirectoryHandle(MODEL_DIR, { create: true });

// `phase` names the download in its progress messages (`download`: the model, `adapter`).
async function fetchModel(url, phase = 'download') {
  if (!navigator.storage?.getDirectory) return { bytes: await downloadToMemory(url, phase), fromCache: false };
  const dir = await modelDir();
  const name = encodeURIComponent(url).slice(-200);
  let file = await dir.getFileHandle(name).catch(() => null);
  const fromCache = Boolean(file);
  if (!file) {
    const written = await writeFile(dir, name, (out) => download(url, phase, (chunk, at) => out.write(chunk, { at })));
    // Another tab is downloading the same file: load from memory.
    if (!written) return { bytes: await downloadToMemory(url, phase), fromCache: false };
    file = await dir.getFileHandle(name);
  }
  // Read-only handles let several tabs load the same file at once.
  return { bytes: await file.createSyncAccessHandle({ mode: 'read-only' }), fromCache };
}

// Writes file `name` of `dir` through `write(handle)` into `NAME.part`, renamed when complete,
// so that a broken write is never taken for the file. False if another tab is writing it
// (a sync access handle is exclusive).
async function writeFile(dir, name, write) {
  const part = await dir.getFileHandle(`${name}.part`, { create: true });
  const out = await part.createSyncAccessHandle().catch(() => null);
  if (!out) return false;
  try {
    out.truncate(0);
    await write(out);
    out.flush();
  } catch (e) {
    out.close();
    await dir.removeEntry(`${name}.part`);
    throw e;
  }
  out.close();
  await dir.removeEntry(name).catch(() => {}); // a stored prompt that the engine refused
  await part.move(name);
  return true;
}

// A file's whole content (the 7.6 MB adapter), however fetchModel returned it.
function readWhole(bytes) {
  if (!(bytes instanceof FileSystemSyncAccessHandle)) return bytes;
  try {
    const out = new Uint8Array(bytes.getSize());
    bytes.read(out, { at: 0 });
    return out;
  } finally {
    bytes.close();
  }
}

// The shipped adapter comes with the engine (models/ beside this file, in the site and in the
// npm package; written out so that bundlers emit it). It is cached like the model and checked
// against the sha256 built into the engine. A model it was not trained on (or a site served
// without it) runs as it is.
const ADAPTER_URL = new URL('./models/anote-ner-lora.safetensors', import.meta.url);

async function applyAdapter() {
  const shipped = (await wasm()).pkg.defaultAdapter();
  if (!shipped) return;
  try {
    if (!adapterBytes) {
      adapterBytes = readWhole((await fetchModel(ADAPTER_URL.href, 'adapter')).bytes);
    }
    engine.setAdapter(adapterBytes, shipped.sha256);
  } catch (e) {
    if (e.code !== 'foreign_adapter' && e.code !== 'fetch_failed') throw e;
  }
}

let modelUrl = null;
let lastLoad = null; // what to reload on the CPU if the GPU is lost
let localFile = null; // a local file (Blob or bytes), kept only while the engine runs on the GPU

async function load(msg) {
  const { pkg, threads } = await wasm();
  engine?.free();
  engine = null;
  const { bytes, fromCache } = msg.url
    ? await fetchModel(msg.url)
    : { bytes: msg.bytes instanceof Blob ? msg.bytes : new Uint8Array(msg.bytes), fromCache: false };
  const size = bytes.getSize?.() ?? bytes.size ?? bytes.length;
  post({ type: 'progress', phase: 'load', loaded: 0, total: size });
  const t0 = performance.now();
  const reading = (loaded, total) => post({ type: 'progress', phase: 'load', loaded, total });
  // A file handle is the engine's now: it closes it when done with it.
  engine = await pkg.Engine.load(bytes, msg.backend ?? 'auto', reading).catch((e) => {
    bytes.close?.();
    throw e;
  });
  modelUrl = msg.url ?? null;
  lastLoad = { ...msg, bytes: undefined };
  localFile = !msg.url && engine.backend() === 'webgpu' ? msg.bytes : null;
  if (modelUrl && msg.adapter !== false) await applyAdapter();
  const loadMs = performance.now() - t0;
  post({ type: 'ready', backend: engine.backend(), device: engine.device(), threads, model: engine.modelName(), adapter: engine.adapter() ?? null, loadMs, fromCache, cached: Boolean(navigator.storage?.getDirectory), bytes: size, wasmBytes: await wasmBytes() });
}

// A GPU that fails mid-run (device lost, out of memory) is reported with code `gpu`: the
// engine moves to the CPU, tells the page, and runs the request again there.
async function onGpuLoss(run) {
  try {
    return await run();
  } catch (e) {
    if (e?.code !== 'gpu' || engine?.backend() !== 'webgpu') throw e;
    const adapter = engine.adapter() !== undefined;
    await load({ ...lastLoad, bytes: localFile, backend: 'cpu', adapter });
    return run();
  }
}

function loaded() {
  if (!engine) throw Object.assign(new Error('no model is loaded'), { code: 'not_loaded' });
  return engine;
}

async function setAdapter(msg) {
  if (msg.enabled && modelUrl) await applyAdapter();
  else loaded().setAdapter(undefined, undefined);
  post({ type: 'done', id: msg.id, result: { adapter: loaded().adapter() ?? null } });
}

// Scores the engine on a gold JSONL file, as `anote eval` does (each line checked by the
// same parser); broken lines are listed, and the rest is still scored.
// The engine's evaluation loop (the one `anote eval` runs): lines, scores and each
// document's misses, code-point offsets.
async function evaluate(msg) {
  const progress = (loaded, total) => post({ type: 'progress', id: msg.id, phase: 'evaluate', loaded, total });
  const result = await onGpuLoss(() => loaded().evaluate(msg.gold, msg.schema, msg.cancel, progress));
  post({ type: 'done', id: msg.id, result });
}

async function generate(msg) {
  const result = await onGpuLoss(() => loaded().generate(msg.prompt, msg.maxTokens, (token, text) => post({ type: 'token', id: msg.id, token, text })));
  post({ type: 'done', id: msg.id, result: { ...result, wasmBytes: await wasmBytes() } });
}

// The schema's prompt being read ahead ('prepare'): requests that use the engine wait for it.
let preparing = Promise.resolve();

async function prepare(msg) {
  const run = preparing.then(() => onGpuLoss(() => prepareStored(msg.schema)));
  preparing = run.catch(() => {});
  post({ type: 'done', id: msg.id, result: await run });
}

// A schema's prompt cache is kept in OPFS too (PROMPT_DIR), so that a reload, or the next
// page with the widget, does not read the prompt again (the PII preset's: seconds of work,
// 25 MB of keys and values). A file is named by its prompt key, a hash of everything that
// made it (prompt, model, adapter, backend, engine build), and the engine refuses one made
// otherwise; the newest PROMPTS_KEPT stay. A cache the GPU holds is not kept.
const PROMPTS_KEPT = 4;

async function prepareStored(schema) {
  const e = loaded();
  const key = navigator.storage?.getDirectory ? e.promptKey(schema) : undefined;
  if (!key) return { tokens: await e.prepare(schema), stored: false };
  const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(PROMPT_DIR, { create: true });
  const file = await dir.getFileHandle(key).catch(() => null);
  // Another tab may hold the file: then the prompt is read from the model.
  const handle = await file?.createSyncAccessHandle({ mode: 'read-only' }).catch(() => null);
  if (handle) {
    try {
      return { tokens: e.loadPrepared(schema, handle), stored: true };
    } catch (err) {
      if (err.code !== 'stored_prompt' && err.code !== 'io') throw err;
    } finally {
      handle.close();
    }
  }
  const tokens = await e.prepare(schema);
  // A full disk or a busy file: the prompt is read, only not kept.
  await storePrompt(dir, key, schema).catch(() => {});
  return { tokens, stored: false };
}

async function storePrompt(dir, key, schema) {
  if (!await writeFile(dir, key, (out) => loaded().savePrepared(schema, out))) return;
  const kept = [];
  for await (const [name, entry] of dir.entries()) {
    if (entry.kind === 'file' && !name.endsWith('.part')) kept.push({ name, at: (await entry.getFile()).lastModified });
  }
  kept.sort((a, b) => b.at - a.at);
  for (const { name } of kept.slice(PROMPTS_KEPT)) await dir.removeEntry(name).catch(() => {});
}

async function extract(msg) {
  const progress = (loaded, total, share) => post({ type: 'progress', id: msg.id, phase: 'extract', loaded, total, share });
  const result = await onGpuLoss(() => loaded().extract(msg.text, msg.schema, (entity) => post({ type: 'entity', id: msg.id, entity }), msg.cancel, progress, msg.batch));
  post({ type: 'done', id: msg.id, result });
}

self.onmessage = async ({ data: msg }) => {
  try {
    if (msg.type !== 'prepare') await preparing;
    if (msg.type === 'start') threadsWanted = Math.max(1, Math.floor(msg.threads) || 1);
    else if (msg.type === 'load') await load(msg);
    else if (msg.type === 'generate') await generate(msg);
    else if (msg.type === 'extract') await extract(msg);
    else if (msg.type === 'prepare') await prepare(msg);
    else if (msg.type === 'evaluate') await evaluate(msg);
    else if (msg.type === 'check-kernels') {
      post({ type: 'done', id: msg.id, result: await (await wasm()).pkg.checkKernels() });
    }
    else if (msg.type === 'check-cpu-kernels') {
      post({ type: 'done', id: msg.id, result: (await wasm()).pkg.checkCpuKernels() });
    }
    else if (msg.type === 'adapter') await setAdapter(msg);
    else if (msg.type === 'redact') {
      post({ type: 'done', id: msg.id, result: (await wasm()).pkg.redact(msg.text, msg.entities, msg.operators, msg.key) });
    } else if (msg.type === 'redact-last') {
      post({ type: 'done', id: msg.id, result: loaded().redactLast(msg.operators, msg.key) });
    } else if (msg.type === 'export-last') {
      post({ type: 'done', id: msg.id, result: loaded().exportLast(msg.minScore) });
    } else if (msg.type === 'recognizers') {
      post({ type: 'done', id: msg.id, result: (await wasm()).pkg.recognizers() });
    } else if (msg.type === 'validate') {
      const { pkg } = await wasm();
      if (engine) engine.checkSchema(msg.schema);
      else pkg.validateSchema(msg.schema);
      post({ type: 'done', id: msg.id, result: true });
    }
    else throw Object.assign(new Error(`unknown message ${msg.type}`), { code: 'bad_message' });
  } catch (e) {
    fail(msg.id, e);
  }
};
