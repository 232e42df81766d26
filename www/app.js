import { AnoteClient } from './anote.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MODEL_URL = params.get('model') ?? 'models/gemma-3-270m-q4_k_m.gguf';
const MB = (n) => (n / 1e6).toFixed(1) + ' MB';

const client = new AnoteClient();
let started = performance.now();

function setStatus(state, text) {
  $('model-status').dataset.state = state;
  $('model-status').textContent = text;
}

function showError(e) {
  $('error').textContent = `${e.message} [${e.code ?? 'error'}]`;
}

client.onprogress = ({ phase, loaded, total }) => {
  $('progress').max = total || 1;
  $('progress').value = loaded;
  const secs = (performance.now() - started) / 1000;
  const pct = total ? Math.floor((100 * loaded) / total) : 0;
  const verb = { download: 'Downloading', cache: 'Reading from browser cache', load: 'Preparing weights' }[phase];
  $('progress-text').textContent = phase === 'load'
    ? `${verb}…`
    : `${verb}: ${MB(loaded)} of ${MB(total)} (${pct}%) · ${MB(loaded / Math.max(secs, 0.001))}/s`;
};

async function loadModel() {
  started = performance.now();
  setStatus('loading', 'Loading…');
  try {
    const r = await client.load(new URL(MODEL_URL, location.href).href);
    setStatus('ready', `${r.model} ready`);
    $('backend').textContent = r.backend === 'webgpu' ? 'WebGPU' : 'CPU SIMD';
    $('backend').dataset.backend = r.backend;
    $('progress-text').textContent =
      `${MB(r.bytes)} ${r.fromCache ? 'from the browser cache' : r.cached ? 'downloaded and cached' : 'downloaded (not cached: the page is not in a secure context)'} · weights ready in ${(r.loadMs / 1000).toFixed(1)} s`;
    $('generate').disabled = false;
    $('extract').disabled = false;
  } catch (e) {
    setStatus('error', 'Model failed to load');
    showError(e);
  }
}

$('generate').addEventListener('click', async () => {
  $('generate').disabled = true;
  $('error').textContent = '';
  $('output').textContent = '';
  $('stats').textContent = 'Generating…';
  const tokens = [];
  try {
    const r = await client.generate($('prompt').value, Number($('max-tokens').value), ({ token, text }) => {
      tokens.push(token);
      $('output').textContent += text; // textContent: model output is never parsed as HTML
    });
    $('output').textContent = r.text;
    $('output').dataset.tokens = r.tokens.join(' ');
    const prefill = (r.prompt_tokens / r.prefill_ms) * 1000;
    const decode = r.decode_steps ? (r.decode_steps / r.decode_ms) * 1000 : 0;
    $('stats').textContent =
      `${r.prompt_tokens} prompt tokens · prefill ${prefill.toFixed(1)} tok/s · ${r.tokens.length} new tokens · decode ${decode.toFixed(1)} tok/s`;
    $('stats').dataset.done = 'true';
  } catch (e) {
    $('stats').textContent = '';
    showError(e);
  } finally {
    $('generate').disabled = false;
  }
});

// Renders `text` with the entities as <mark>s. Only text nodes and attributes are
// created: neither the user's text nor the model's output is ever parsed as HTML.
function renderHighlights(text, entities) {
  const box = $('highlighted');
  box.replaceChildren();
  let at = 0;
  for (const e of [...entities].sort((a, b) => a.start - b.start)) {
    if (e.start < at) continue;
    box.append(document.createTextNode(text.slice(at, e.start)));
    const mark = document.createElement('mark');
    mark.textContent = text.slice(e.start, e.end);
    Object.assign(mark.dataset, { testid: 'entity', label: e.label, start: e.start, end: e.end, source: e.source });
    mark.title = `${e.label} · ${e.source} · score ${e.score.toFixed(2)}`;
    mark.tabIndex = 0;
    box.append(mark);
    at = e.end;
  }
  box.append(document.createTextNode(text.slice(at)));
}

$('extract').addEventListener('click', async () => {
  $('extract').disabled = true;
  $('error').textContent = '';
  const text = $('text-input').value;
  const found = [];
  $('entities').replaceChildren();
  $('extract-status').textContent = 'Extracting…';
  delete $('extract-status').dataset.done;
  const t0 = performance.now();
  try {
    const schema = await (await fetch(`presets/${$('preset').value}.json`)).json();
    const r = await client.extract(text, schema, (e) => {
      found.push(e);
      renderHighlights(text, found); // entities appear as they are decoded
    });
    renderHighlights(text, r.entities);
    for (const e of r.entities) {
      const li = document.createElement('li');
      li.textContent = `${e.label}: ${e.text} (${e.source}, ${e.score.toFixed(2)})`;
      $('entities').append(li);
    }
    $('extract-status').textContent = `${r.entities.length} entities in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    $('extract-status').dataset.done = 'true';
  } catch (e) {
    $('extract-status').textContent = '';
    showError(e);
  } finally {
    $('extract').disabled = false;
  }
});

loadModel();
