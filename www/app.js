import { AnoteClient } from './anote.js';
import { DEFAULT_MODEL_PATH, KEY_STORE, MODEL_DIR, PROMPT_DIR } from './config.js';
import { SchemaEditor } from './schema-editor.js';
import { colorOf, countEntities, download, renderHighlights, renderLegend, setPalette } from './view.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MB = (n) => (n / 1e6).toFixed(1) + ' MB';

// The app shell is cached by a service worker so the page works offline after a visit.
if ('serviceWorker' in navigator && isSecureContext) navigator.serviceWorker.register('sw.js').catch(() => {});

// `?threads=N`: Web Workers that share the CPU's work (default: all cores but one, both of two).
const client = new AnoteClient({ threads: Number(params.get('threads')) || undefined });
let started = performance.now();
let lastText = '';
let entities = [];
// Whether the last extraction ran to its end: only then is there a redaction (a cancelled
// one would leave the unread part of the text as it was).
let complete = false;
let sortKey = 'start';
let sortDir = 1;

function showError(e) {
  $('error').textContent = e ? `${e.message} [${e.code ?? 'error'}]` : '';
}

// ---- Model --------------------------------------------------------------------------

function setStatus(state, text) {
  $('model-status').dataset.state = state;
  $('model-status').textContent = text;
}

// Loading is one bar in three phases, in the order the worker reports them: the model's
// download, its weights read and prepared, the fine-tuning adapter's download. Each phase
// fills its share of the bar, so the bar never goes back; a model already in the file
// store starts at the second phase. (After loading, an adapter switched on later shows nothing.)
const LOAD_PHASES = {
  download: [0, 0.6, 'Downloading the model'],
  load: [0.6, 0.97, 'Preparing the weights'],
  adapter: [0.97, 1, 'Downloading the fine-tuning adapter'],
};
client.onprogress = ({ phase, loaded, total }) => {
  if (!LOAD_PHASES[phase] || $('progress').hidden) return;
  const [from, to, label] = LOAD_PHASES[phase];
  const share = total ? Math.min(1, loaded / total) : 0;
  const pct = Math.floor(100 * share);
  const secs = (performance.now() - started) / 1000;
  $('progress-text').textContent = phase === 'load'
    ? `${label}: ${pct}%`
    : `${label}: ${MB(loaded)} of ${MB(total)} (${pct}%)${phase === 'download' ? ` · ${MB(loaded / Math.max(secs, 0.001))}/s` : ''}`;
  $('progress').value = Math.max($('progress').value, from + (to - from) * share);
};

// Files and bytes in a folder of the file store (OPFS).
async function folderSize(name) {
  let files = 0, bytes = 0;
  const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(name, { create: true });
  for await (const entry of dir.values()) {
    files++;
    bytes += (await entry.getFile()).size;
  }
  return `${files} file(s), ${MB(bytes)}`;
}

async function showCache() {
  if (!navigator.storage?.getDirectory) return void ($('cache-info').textContent = 'No browser file store outside a secure context.');
  $('cache-info').textContent = `Model cache: ${await folderSize(MODEL_DIR)} · schema prompts read: ${await folderSize(PROMPT_DIR)}`;
}

// The badge says where the model runs; its tooltip names the GPU or says why the CPU runs,
// and on how many threads.
function showBackend(r) {
  const cpu = r.backend !== 'webgpu';
  $('backend').textContent = cpu ? `CPU SIMD${r.threads.count > 1 ? ` ×${r.threads.count}` : ''}` : 'WebGPU';
  $('backend').dataset.backend = r.backend;
  $('backend').dataset.threads = r.threads.count;
  $('backend').title = cpu ? `${r.device}; ${r.threads.why}` : r.device;
}
client.onready = showBackend;

async function loadModel(source, label) {
  started = performance.now();
  setStatus('loading', 'Loading…');
  $('progress').value = 0;
  $('progress').hidden = false;
  for (const b of ['generate', 'extract', 'evaluate']) $(b).disabled = true;
  showError(null);
  modelReady = false;
  try {
    const r = await client.load(source, { adapter: $('adapter').checked, backend: params.get('backend') ?? 'auto' });
    setStatus('ready', `${r.model} ready`);
    $('progress').hidden = true; // once ready the panel is one status line
    showBackend(r);
    $('adapter').disabled = typeof source !== 'string';
    $('adapter').checked = Boolean(r.adapter);
    $('progress-text').textContent = `${label ?? ''}${MB(r.bytes)} ${r.fromCache ? 'from the browser cache' : r.cached ? 'downloaded and cached' : 'loaded (not cached)'} · weights ready in ${(r.loadMs / 1000).toFixed(1)} s`;
    for (const b of ['generate', 'extract', 'evaluate']) $(b).disabled = false;
    modelReady = true;
    prepareSoon(0);
  } catch (e) {
    setStatus('error', 'Model failed to load');
    showError(e);
  }
  showCache();
}

$('adapter').addEventListener('change', async () => {
  try {
    const r = await client.setAdapter($('adapter').checked);
    $('adapter').checked = Boolean(r.adapter);
    prepareSoon(0); // the prompt's cache is the adapter's
  } catch (e) {
    showError(e);
  }
});
$('model-file').addEventListener('change', async () => {
  const f = $('model-file').files[0];
  if (f) loadModel(f, `${f.name}: `);
});
$('model-url-load').addEventListener('click', () => {
  const url = $('model-url').value.trim();
  if (url) loadModel(new URL(url, location.href).href);
});
$('threads-choice').value = params.get('threads') ?? '';
$('threads-choice').addEventListener('change', () => {
  const v = Number($('threads-choice').value);
  if (v >= 1) params.set('threads', String(Math.floor(v))); else params.delete('threads');
  location.search = params.toString();
});
$('backend-choice').value = params.get('backend') ?? '';
$('backend-choice').addEventListener('change', () => {
  const v = $('backend-choice').value;
  if (v) params.set('backend', v); else params.delete('backend');
  location.search = params.toString();
});
$('cache-clear').addEventListener('click', async () => {
  try {
    const root = await navigator.storage.getDirectory();
    for (const dir of [MODEL_DIR, PROMPT_DIR]) await root.removeEntry(dir, { recursive: true }).catch((e) => { if (e.name !== 'NotFoundError') throw e; });
  } catch (e) {
    showError(e); // a file the engine is reading right now is locked
  }
  showCache();
});

// ---- Schema -------------------------------------------------------------------------

let validateTimer;
const editor = new SchemaEditor({
  rows: $('schema-rows'),
  description: $('schema-description'),
  rules: $('schema-rules'),
  error: $('schema-error'),
  onChange: (schema) => {
    clearTimeout(validateTimer);
    validateTimer = setTimeout(() => validate(schema), 200);
    prepareSoon();
    renderTypeChips(schema);
    if (!loadingPreset) markEdited(); // the menu no longer names a preset once edited
  },
});

client.recognizers().then((list) => editor.setRecognizers(list), () => {});

// The active types beside the text, one chip each in its highlight colour.
function renderTypeChips(schema) {
  setPalette(schema.labels.map((t) => t.label));
  $('type-chips').replaceChildren(...schema.labels.map((t) => {
    const chip = Object.assign(document.createElement('span'), { className: 'swatch', textContent: t.label, title: t.description ?? '' });
    chip.style.background = colorOf(t.label);
    return chip;
  }));
}

// Only the latest check speaks: an edit's check that answers after a newer one (an import)
// must not clear or replace its message. `what` heads the error message.
let checks = 0;
// A new check: the pending edit's check is dropped, and answers to older ones are ignored.
function newCheck() {
  clearTimeout(validateTimer);
  return ++checks;
}
async function validate(schema, what = '') {
  const mine = newCheck();
  try {
    await client.validate(schema);
    if (mine === checks) editor.showError('');
    return true;
  } catch (e) {
    if (mine === checks) editor.showError(what + e.message);
    return false;
  }
}

// The schema's prompt is read into the engine's cache once the model is ready and again a
// moment after each edit, while the user is still pasting: Extract then starts at the text
// (the prompt of the PII preset takes seconds). One request at a time: an edit made
// meanwhile asks again when it ends. `data-prepared` on Extract: the prompt's tokens;
// `data-prepared-from`: `store` where its cache was read from the browser's file store
// (a schema read on an earlier visit), else `model`.
let modelReady = false;
let prepareTimer, preparing = false, prepareAgain = false;
function prepareSoon(delay = 1000) {
  clearTimeout(prepareTimer);
  delete $('extract').dataset.prepared;
  delete $('extract').dataset.preparedFrom;
  prepareTimer = setTimeout(prepareSchema, delay);
}
async function prepareSchema() {
  if (!modelReady) return;
  if (preparing) return void (prepareAgain = true);
  preparing = true;
  const schema = JSON.stringify(editor.schema);
  try {
    const { tokens, stored } = await client.prepare(schema);
    if (JSON.stringify(editor.schema) === schema) {
      $('extract').dataset.prepared = tokens;
      $('extract').dataset.preparedFrom = stored ? 'store' : 'model';
      showCache();
    }
  } catch { /* an invalid schema: its validation tells the user */ }
  preparing = false;
  if (prepareAgain) {
    prepareAgain = false;
    prepareSchema();
  }
}

const BLANK = 'blank';
let loadingPreset = false;
// The menu's entry for an edited schema names the preset it started from.
const custom = new Option('Custom', '');
let presetName = null;
function markEdited() {
  custom.text = presetName ? `Custom (edited from ${presetName})` : 'Custom';
  $('preset').value = '';
}
// `blank`: no types, to write a schema from scratch.
async function loadPreset(id) {
  const schema = id === BLANK ? { labels: [] } : await (await fetch(`presets/${id}.json`)).json();
  loadingPreset = true;
  try {
    editor.set(schema);
  } finally {
    loadingPreset = false;
  }
  $('preset').value = id;
  // A schema written from blank is simply custom.
  presetName = id === BLANK ? null : shortName($('preset').selectedOptions[0].text);
}

const shortName = (name) => name.replace(/ \(.*\)$/, ''); // "PII (17 types)" → "PII"

// A schema kept from an earlier visit is named after the preset it equals, if any.
async function nameRestored(presets) {
  const same = (s) => JSON.stringify({ description: s.description ?? '', span_rules: s.span_rules ?? '', labels: s.labels ?? [] });
  const mine = same(editor.schema);
  for (const p of presets) {
    if (same(await (await fetch(`presets/${p.id}.json`)).json()) === mine) {
      $('preset').value = p.id;
      presetName = shortName(p.name);
      return;
    }
  }
  markEdited();
}

$('preset').append(custom);
const presets = await (await fetch('presets/index.json')).json();
for (const p of presets) $('preset').append(new Option(p.name, p.id));
$('preset').append(new Option('Blank (no types)', BLANK));
$('preset').addEventListener('change', () => { if ($('preset').value) loadPreset($('preset').value); });
$('schema-import-button').addEventListener('click', () => $('schema-import').click());
if (!editor.restore()) await loadPreset('pii');
else await nameRestored(presets);
$('schema-add').addEventListener('click', () => editor.add());
$('schema-export').addEventListener('click', () => download('schema.json', JSON.stringify(editor.schema, null, 2), 'application/json'));
$('schema-import').addEventListener('change', async () => {
  const f = $('schema-import').files[0];
  if (!f) return;
  const what = `${f.name} was not imported: `;
  let schema;
  try {
    schema = JSON.parse(await f.text());
  } catch (e) {
    newCheck(); // a pending edit's check must not clear this message
    editor.showError(what + e.message);
    return;
  }
  if (await validate(schema, what)) editor.set(schema);
});

// ---- Text and results ---------------------------------------------------------------

async function readTextFile(f) {
  const text = await f.text();
  if (!f.name.endsWith('.jsonl')) return text;
  // A JSONL corpus: the documents' texts, one paragraph each.
  return text.split('\n').filter((l) => l.trim()).map((l) => {
    try { return JSON.parse(l).text ?? ''; } catch { return ''; }
  }).filter(Boolean).join('\n\n');
}
$('text-file').addEventListener('change', async () => {
  const f = $('text-file').files[0];
  if (f) $('text-input').value = await readTextFile(f);
});
$('text-input').addEventListener('dragover', (e) => e.preventDefault());
$('text-input').addEventListener('drop', async (e) => {
  const f = e.dataTransfer.files[0];
  if (!f) return;
  e.preventDefault();
  $('text-input').value = await readTextFile(f);
});

// The threshold applies to the view and the entity exports; the type filter to the view.
// Redaction covers every entity found, whatever the threshold: a slider must not put a
// validated phone number back into the "safe" text.
function kept() {
  const min = Number($('threshold').value);
  return entities.filter((e) => e.score >= min);
}

function visible() {
  const type = $('filter').value;
  return kept().filter((e) => !type || e.label === type);
}

/** Draws the highlights, the table, the filter and the operators, then (unless told
 *  not to) redacts: each redaction sends the whole text to the worker. */
function renderResults({ redact = true } = {}) {
  const shown = visible();
  renderHighlights($('highlighted'), lastText, shown, (l) => editor.guideline(l));
  renderLegend($('legend'), [...new Set(entities.map((e) => e.label))].sort());
  const rows = [...shown].sort((a, b) => (a[sortKey] > b[sortKey] ? 1 : a[sortKey] < b[sortKey] ? -1 : 0) * sortDir);
  $('entity-rows').replaceChildren(...rows.map((e) => {
    const tr = document.createElement('tr');
    for (const v of [`${e.start}–${e.end}`, e.label, e.text, e.score.toFixed(2), e.source]) {
      const td = document.createElement('td');
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  }));
  const labels = [...new Set(entities.map((e) => e.label))].sort();
  const current = $('filter').value;
  $('filter').replaceChildren(new Option('all', ''), ...labels.map((l) => new Option(l, l, false, l === current)));
  renderOperators(labels);
  if (redact) redactNow();
}

// Entities stream in faster than a long text can be drawn again: while extracting, draw
// at most every 250 ms and redact once at the end, so the page keeps answering.
let drawTimer = null;
function drawSoon() {
  drawTimer ??= setTimeout(() => { drawTimer = null; renderResults({ redact: false }); }, 250);
}

for (const b of document.querySelectorAll('button.sort')) {
  b.addEventListener('click', () => {
    sortDir = sortKey === b.dataset.key ? -sortDir : 1;
    sortKey = b.dataset.key;
    renderResults();
  });
}
$('threshold').addEventListener('input', () => {
  $('threshold-value').value = Number($('threshold').value).toFixed(2);
  renderResults();
});
$('filter').addEventListener('change', renderResults);
// Exports come from the engine's copy of the last extraction, in code points as the CLI writes them.
// (Before an extraction has completed there is nothing to export: the error says so.)
const exportLast = (name, type, format) => client.exportLast(Number($('threshold').value)).then((r) => download(name, format(r), type), showError);
$('export-json').addEventListener('click', () => exportLast('entities.json', 'application/json', (r) => JSON.stringify(r, null, 2)));
$('export-jsonl').addEventListener('click', () => exportLast('entities.jsonl', 'application/jsonl', (r) => JSON.stringify(r) + '\n'));

$('extract').addEventListener('click', async () => {
  delete $('extract-status').dataset.done;
  if (!(await validate(editor.schema))) return;
  $('extract').disabled = true;
  $('cancel').disabled = false;
  showError(null);
  lastText = $('text-input').value;
  entities = [];
  complete = false;
  renderResults();
  // The schema's prompt runs first (once per schema, seconds for a long one), then the windows.
  $('extract-status').textContent = 'Reading the entity types…';
  $('extract-progress').hidden = false;
  $('extract-progress').value = 0;
  const t0 = performance.now();
  let first = null; // [time, share] of the first step: the pace is measured from there
  let drawn = -Infinity; // when the status was last drawn: four times a second is enough to read, and leaves the CPU to the engine
  try {
    const r = await client.extract(lastText, editor.schema, (e) => {
      entities.push(e);
      drawSoon(); // entities appear as they are decoded
    }, ({ loaded, total, share }) => {
      // The bar follows the engine's estimate of the work done, which moves with every
      // decoding step. The time left is the pace since the first step: that step also read
      // the schema's prompt and the first windows, which the estimate counts for little.
      const now = performance.now();
      if (share > 0 && !first) first = [now, share];
      if (now - drawn < 250) return;
      drawn = now;
      const left = first && share > first[1] && share < 1 ? (now - first[0]) / (share - first[1]) * (1 - share) / 1000 : null;
      const windows = total > 1 ? ` ${loaded} of ${total} windows done ·` : '';
      $('extract-status').textContent = `Extracting…${windows} ${countEntities(entities.length)} so far${left === null ? '' : ` · about ${Math.ceil(left)} s left`}`;
      $('extract-progress').value = share;
    });
    entities = r.entities;
    complete = true;
    $('extract-status').textContent = `${countEntities(r.entities.length)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    $('extract-status').dataset.done = 'true';
    $('highlighted').focus(); // keyboard users land on the result, not on <body>
  } catch (e) {
    $('extract-status').textContent = e.code === 'cancelled' ? 'Cancelled.' : '';
    $('extract-status').dataset.done = e.code ?? 'error';
    if (e.code !== 'cancelled') showError(e);
  } finally {
    clearTimeout(drawTimer);
    drawTimer = null;
    $('extract-progress').hidden = true;
    renderResults(); // what was found, also when cancelled
    $('extract').disabled = false;
    $('cancel').disabled = true;
  }
});
$('cancel').addEventListener('click', () => client.cancel());
// The skip link puts the caret in the text box (a fragment alone only scrolls there).
$('skip').addEventListener('click', (e) => {
  e.preventDefault();
  $('text-input').focus();
});
$('text-input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !$('extract').disabled) {
    e.preventDefault();
    $('extract').click();
  }
});

// ---- Redaction ----------------------------------------------------------------------

const OPERATORS = [['replace', '<LABEL>'], ['mask', 'mask ****'], ['mask:*:4', 'mask, keep last 4'], ['hash', 'keyed hash'], ['pseudonym', 'pseudonym']];
const chosen = new Map();
let redaction = { text: '', replacements: [] };

// The key of hash and pseudonym: made once per origin (32 random bytes as hex), kept in
// localStorage, replaceable by a shared one and exportable as a key file for the CLI.
function redactionKey() {
  let key = localStorage.getItem(KEY_STORE);
  if (!key) {
    key = Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, '0')).join('');
    localStorage.setItem(KEY_STORE, key);
  }
  return key;
}
const keyed = () => [...chosen.values()].some((op) => op === 'hash' || op === 'pseudonym');

function renderOperators(labels) {
  $('operators').replaceChildren(...labels.map((l) => {
    const row = document.createElement('label');
    row.className = 'inline';
    const sel = document.createElement('select');
    sel.dataset.testid = 'operator';
    sel.dataset.label = l;
    for (const [v, t] of OPERATORS) sel.append(new Option(t, v, false, (chosen.get(l) ?? 'replace') === v));
    sel.addEventListener('change', () => { chosen.set(l, sel.value); redactNow(); });
    row.append(document.createTextNode(l + ' '), sel);
    return row;
  }));
}

async function redactNow() {
  const ops = Object.fromEntries(chosen);
  // The key is made (and stored) only once a keyed operator is chosen.
  const key = keyed() ? redactionKey() : undefined;
  if (key) $('key').value = key;
  try {
    redaction = complete ? await client.redactLast(ops, key) : { text: '', replacements: [] };
    $('redacted').textContent = redaction.text;
  } catch (e) {
    showError(e);
  }
}
// One choice for every type at once; each type's menu can then differ.
$('operator-all').append(new Option('choose…', ''), ...OPERATORS.map(([v, t]) => new Option(t, v)));
$('operator-all').addEventListener('change', () => {
  const op = $('operator-all').value;
  if (!op) return;
  for (const label of new Set(entities.map((e) => e.label))) chosen.set(label, op);
  $('operator-all').value = '';
  renderResults(); // the per-type menus, then the redaction
});
$('key').value = localStorage.getItem(KEY_STORE) ?? '';
$('key').addEventListener('change', () => {
  if ($('key').value.length < 16) return showError(Object.assign(new Error('a key needs at least 16 characters'), { code: 'bad_key' }));
  localStorage.setItem(KEY_STORE, $('key').value);
  redactNow();
});
$('key-new').addEventListener('click', () => {
  localStorage.removeItem(KEY_STORE);
  $('key').value = redactionKey();
  redactNow();
});
$('key-export').addEventListener('click', () => download('anote-key.txt', redactionKey()));
$('redacted-copy').addEventListener('click', async () => {
  await navigator.clipboard.writeText(redaction.text);
  $('copy-status').textContent = 'Copied.';
  setTimeout(() => { $('copy-status').textContent = ''; }, 2000);
});
$('redacted-download').addEventListener('click', () => download(redactedFileName(), redaction.text));

// The redacted file names its operators: the one most types use, then the types that differ,
// e.g. "redacted (replace, PERSON=pseudonym).txt".
function redactedFileName() {
  const opOf = (label) => chosen.get(label) ?? 'replace';
  const labels = [...new Set(entities.map((e) => e.label))].sort();
  const uses = new Map();
  for (const l of labels) uses.set(opOf(l), (uses.get(opOf(l)) ?? 0) + 1);
  const base = [...uses].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'replace';
  const parts = [base, ...labels.filter((l) => opOf(l) !== base).map((l) => `${l}=${opOf(l)}`)];
  return `redacted (${parts.join(', ')}).txt`.replace(/[^\w (),=.+-]/g, '_'); // mask:*:4 → mask___4
}
// Where each replacement went, and how: no original value (the entity exports above are the
// explicit way to take the found values out of the page).
$('replacements-download').addEventListener('click', () => download('replacements.json', JSON.stringify(redaction.replacements, null, 2), 'application/json'));

// ---- Evaluate -----------------------------------------------------------------------

$('evaluate').addEventListener('click', async () => {
  const f = $('gold-file').files[0];
  if (!f) return void ($('eval-status').textContent = 'Choose a gold JSONL file first.');
  $('evaluate').disabled = true;
  delete $('eval-status').dataset.done;
  $('eval-status').textContent = 'Evaluating…';
  try {
    const r = await client.evaluate(await f.text(), editor.schema, ({ loaded, total }) => {
      $('eval-progress').max = total;
      $('eval-progress').value = loaded;
      $('eval-status').textContent = `${loaded} of ${total} documents`;
    });
    $('eval-progress').value = $('eval-progress').max; // broken lines are done too
    renderScores(r.scores);
    renderMisses(r.documents);
    const broken = r.broken.map((b) => `line ${b.line} (${b.message})`).join('; ');
    $('eval-status').textContent = `${r.scores.documents} documents scored` + (broken ? ` · skipped broken ${broken}` : '');
    $('eval-status').dataset.done = 'true';
    $('eval-status').dataset.microF1 = r.scores.strict.micro.f1.toFixed(4);
  } catch (e) {
    $('eval-status').textContent = '';
    showError(e);
  } finally {
    $('evaluate').disabled = false;
  }
});

// The documents where extraction and gold differ (strictly): what was missed, what gold lacks.
function renderMisses(documents) {
  const wrong = documents.filter((d) => d.missed.length || d.spurious.length);
  const spans = (list) => list.map((s) => `${s.label} “${s.text}”`).join(', ');
  $('eval-docs').replaceChildren(...wrong.map((d) => {
    const li = document.createElement('li');
    li.dataset.id = JSON.stringify(d.id);
    const id = Object.assign(document.createElement('strong'), { textContent: d.id ?? '(no id)' });
    const parts = [];
    if (d.missed.length) parts.push(`missed ${spans(d.missed)}`);
    if (d.spurious.length) parts.push(`not in gold ${spans(d.spurious)}`);
    li.append(id, `: ${parts.join('; ')}`);
    return li;
  }));
  $('eval-docs-summary').textContent = wrong.length
    ? `${wrong.length} of ${documents.length} documents differ from gold (strict)`
    : `All ${documents.length} documents match gold exactly`;
  $('eval-docs-box').hidden = false;
}

function renderScores(s) {
  const row = (cells, head = false) => {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement(head ? 'th' : 'td');
      td.textContent = c;
      tr.append(td);
    }
    return tr;
  };
  const f = (x) => x.toFixed(3);
  const rows = [row(['label', 'gold', 'pred', 'strict P', 'strict R', 'strict F1', 'partial F1'], true)];
  for (const [label, st] of Object.entries(s.strict.per_label)) {
    rows.push(row([label, st.n_gold, st.n_pred, f(st.precision), f(st.recall), f(st.f1), f(s.partial.per_label[label].f1)]));
  }
  const m = s.strict.micro;
  rows.push(row(['micro', m.n_gold, m.n_pred, f(m.precision), f(m.recall), f(m.f1), f(s.partial.micro.f1)]));
  rows.push(row(['macro F1', '', '', '', '', f(s.strict.macro_f1), f(s.partial.macro_f1)]));
  $('eval-rows').replaceChildren(...rows);
}

// ---- Try the model ------------------------------------------------------------------

$('generate').addEventListener('click', async () => {
  $('generate').disabled = true;
  showError(null);
  $('output').textContent = '';
  $('stats').textContent = 'Generating…';
  try {
    const r = await client.generate($('prompt').value, Number($('max-tokens').value), ({ text }) => {
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

loadModel(new URL(params.get('model') ?? DEFAULT_MODEL_PATH, location.href).href);
