// The engine's Web Worker: owns the wasm module and the model, so the page never blocks.
// Protocol (the only place it is defined; anote.js speaks it for the page):
//   page → worker  {type:'load', url}                     fetch (or read from Cache Storage) and load a GGUF
//                  {type:'load', bytes}                   load a GGUF from an ArrayBuffer (a local file)
//                  {type:'generate', id, prompt, maxTokens}
//   worker → page  {type:'progress', phase:'download'|'cache'|'load', loaded, total}
//                  {type:'ready', backend, model, loadMs, fromCache, bytes}
//                  {type:'token', id, token, text}
//                  {type:'done', id, result}
//                  {type:'error', id?, code, message}
import init, { Engine } from './pkg/anote_ner.js';

const MODEL_CACHE = 'anote-models-v1';
let engine = null;
const ready = init();

function post(msg) { self.postMessage(msg); }

function fail(id, e) {
  post({ type: 'error', id, code: e?.code ?? 'internal', message: String(e?.message ?? e) });
}

// Reads a response body with progress; the total comes from Content-Length.
async function readAll(response, phase) {
  const total = Number(response.headers.get('content-length')) || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0, lastPost = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    const now = performance.now();
    if (now - lastPost > 100) { post({ type: 'progress', phase, loaded, total }); lastPost = now; }
  }
  post({ type: 'progress', phase, loaded, total: total || loaded });
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

// The model is cached in Cache Storage under its URL, so a reload reads it from disk.
async function fetchModel(url) {
  const cache = await caches.open(MODEL_CACHE);
  const hit = await cache.match(url);
  if (hit) return { bytes: await readAll(hit, 'cache'), fromCache: true };
  const response = await fetch(url);
  if (!response.ok) throw Object.assign(new Error(`cannot fetch ${url}: HTTP ${response.status}`), { code: 'fetch_failed' });
  const bytes = await readAll(response, 'download');
  await cache.put(url, new Response(bytes, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) } }));
  return { bytes, fromCache: false };
}

async function load(msg) {
  await ready;
  engine?.free();
  engine = null;
  const { bytes, fromCache } = msg.url ? await fetchModel(msg.url) : { bytes: new Uint8Array(msg.bytes), fromCache: false };
  post({ type: 'progress', phase: 'load', loaded: 0, total: bytes.length });
  const t0 = performance.now();
  engine = Engine.load(bytes);
  post({ type: 'ready', backend: engine.backend(), model: engine.modelName(), loadMs: performance.now() - t0, fromCache, bytes: bytes.length });
}

function generate(msg) {
  if (!engine) throw Object.assign(new Error('no model is loaded'), { code: 'not_loaded' });
  const result = engine.generate(msg.prompt, msg.maxTokens, (token, text) => post({ type: 'token', id: msg.id, token, text }));
  post({ type: 'done', id: msg.id, result });
}

self.onmessage = async ({ data: msg }) => {
  try {
    if (msg.type === 'load') await load(msg);
    else if (msg.type === 'generate') generate(msg);
    else throw Object.assign(new Error(`unknown message ${msg.type}`), { code: 'bad_message' });
  } catch (e) {
    fail(msg.id, e);
  }
};
