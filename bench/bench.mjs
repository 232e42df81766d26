// `cargo xtask bench`: prefill and decode speed and peak memory of our engine, natively
// and in headless Chromium, next to llama.cpp (native, optional) and wllama (browser) on
// the same GGUF, prompt and thread count, in the same run. Writes docs/benchmarks.md.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cpus, loadavg, tmpdir } from 'node:os';
import { launch, modelState } from '../tests/browser/chromium.mjs';

const url = process.env.ANOTE_URL;
const bin = process.env.ANOTE_BIN;
const llamaPython = process.env.ANOTE_LLAMA_PYTHON;
const NTOK = 64;
const MODEL = 'models/gemma-3-270m-q4_k_m.gguf';
const prompt = readFileSync('bench/prompt.txt', 'utf8');
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
const best = (runs, key) => Math.max(...runs.map((r) => r[key]));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2; };
// The median of a/b over runs that ran back to back: each pair shares the machine's state, so
// a noisy minute moves both (best-of ratios swung by 10 % between runs of the bench).
const pairedRatio = (a, b, key) => median(a.runs.map((r, i) => r[key] / b.runs[i][key]));
const rows = [];

function summarize(engine, where, threads, res, peakBytes, note = '') {
  if (res.error) throw new Error(`${engine} (${where}): ${res.error}`);
  const row = { engine, where, threads, prompt_tokens: res.runs[0].prompt_tokens, decode_steps: res.runs[0].decode_steps,
    prefill: best(res.runs, 'prefill_tok_s'), decode: best(res.runs, 'decode_tok_s'), peakBytes, note };
  rows.push(row);
  console.log(JSON.stringify(row));
  return row;
}

// The GPU the native WebGPU rows ran on, and where to read it: the CLI names it on stderr.
let nativeAdapter = '';
const gpuName = (stderr) => stderr.split('\n').find((l) => l.startsWith('webgpu: '))?.slice(8);

// Rows of our engine, natively, one per spec ({ threads, adapter, backend, ntok }), each the
// better of `tries` runs. The specs' runs alternate, so rows read as a ratio (with and without
// the adapter) share the machine's state: run one after the other, one of them once caught a
// quiet minute and showed a 21 % gap that alternating runs put at 4 %.
function nativeOurs(specs, tries) {
  const all = specs.map(({ threads, adapter = 'default', backend = 'cpu', ntok = NTOK }) =>
    ({ threads, adapter, backend, ntok, runs: [], peak: 0 }));
  for (let i = 1; i <= tries; i++) {
    for (const s of all) {
      const p = spawnSync('/usr/bin/time', ['-f', '%M', bin, '--adapter', s.adapter, '--backend', s.backend, 'generate',
        '--json', '--threads', String(s.threads), '--prompt', `Run ${i}. ${prompt}`, '--max-tokens', String(s.ntok)],
      { encoding: 'utf8' });
      if (p.status !== 0) throw new Error(`anote failed: ${p.stderr}`);
      const g = JSON.parse(p.stdout);
      const err = p.stderr.trim().split('\n');
      nativeAdapter = gpuName(p.stderr) ?? nativeAdapter;
      s.peak = Math.max(s.peak, 1024 * Number(err.pop()));
      s.runs.push({ prompt_tokens: g.prompt_tokens, prefill_tok_s: g.prompt_tokens / g.prefill_ms * 1000,
        decode_steps: g.decode_steps, decode_tok_s: g.decode_steps / g.decode_ms * 1000 });
    }
  }
  return all.map((s) => {
    const what = (s.adapter === 'none' ? 'base model, no adapter' : 'with the adapter')
      + (s.ntok === NTOK ? '' : `; ${s.ntok} tokens, ${tries} run`);
    const engine = s.backend === 'webgpu' ? 'anote (ours), WebGPU' : 'anote (ours)';
    const where = s.backend === 'webgpu' ? `native, wgpu on ${nativeAdapter}` : 'native';
    return { ...summarize(engine, where, s.threads, s, s.peak, what), runs: s.runs };
  });
}

// Per-document extraction (schema prefix cached) on the first PII dev documents, 1 thread.
const PII_DEV = '../shared/eval/presidio_synth_v2/dev.jsonl';
const EXTRACT_DOCS = 50;
function nativeExtraction(adapter, backend = 'cpu', docs = EXTRACT_DOCS) {
  const p = spawnSync(bin, ['--adapter', adapter, '--backend', backend, 'eval', '--json', '--threads', '1', '--preset', 'pii',
    '--data', PII_DEV, '--limit', String(docs)], { encoding: 'utf8' });
  if (p.status !== 0) throw new Error(`anote eval failed: ${p.stderr}`);
  const r = JSON.parse(p.stdout);
  console.log(JSON.stringify({ adapter, ...r.latency_ms }));
  return r.latency_ms;
}

// Long documents: bench/documents/email-thread.txt (4.2 KB, an e-mail thread with PII) and
// the PII dev documents joined as paragraphs (all 300 make 29 KB), extracted whole with the
// pii preset, one window at a time (--batch 1), 8 at once (the page's default) and 16 (the CLI's). The time is the whole command's
// (loading the model and the 690-token schema prefix included), as a user waits for it.
const EMAIL = 'bench/documents/email-thread.txt';
const LONG_FILE = `${tmpdir()}/anote-bench-pii-joined.txt`;
{
  const paragraphs = [];
  for (const line of readFileSync(PII_DEV, 'utf8').split('\n').filter(Boolean)) {
    if (paragraphs.join('\n\n').length >= 40_000) break;
    paragraphs.push(JSON.parse(line).text);
  }
  writeFileSync(LONG_FILE, paragraphs.join('\n\n'));
}
// `binary args…` (an `extract` that prints JSON) under /usr/bin/time: seconds, entities and peak RSS.
function timedExtract(binary, args) {
  const t0 = performance.now();
  const p = spawnSync('/usr/bin/time', ['-f', '%M', binary, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const secs = (performance.now() - t0) / 1000;
  if (p.status !== 0) throw new Error(`${binary} ${args.join(' ')} failed: ${p.stderr}`);
  return { secs, entities: JSON.parse(p.stdout).entities.length, peak: 1024 * Number(p.stderr.trim().split('\n').pop()) };
}

function nativeDocument(file, threads, batch) {
  const row = { file, threads, batch, bytes: readFileSync(file).length,
    ...timedExtract(bin, ['--threads', String(threads), '--batch', String(batch), 'extract', '--preset', 'pii', file]) };
  console.log(JSON.stringify(row));
  return row;
}

function nativeLlamaCpp(threads) {
  const out = execFileSync(llamaPython, ['bench/llama_cpp_anchor.py', MODEL, 'bench/prompt.txt', String(NTOK), String(threads)], { encoding: 'utf8' });
  const res = JSON.parse(out.trim().split('\n').pop());
  return summarize('llama.cpp (llama-cpp-python 0.3.36)', 'native', threads, res, res.peak_rss_bytes);
}

// The most of `bytes(pid)` over the renderer processes (the page and its workers) of the
// Chromium this script started.
function mostOfRenderers(ancestorPid, bytes) {
  let most = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmd.includes('--type=renderer')) continue;
      let p = pid;
      while (p && p !== '1' && p !== '0' && p !== String(ancestorPid)) p = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1];
      if (p === String(ancestorPid)) most = Math.max(most, bytes(pid));
    } catch { /* the process ended */ }
  }
  return most;
}

const kbOf = (text, name) => 1024 * Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(text)?.[1] ?? 0);

// Peak resident memory of those renderers.
const rendererPeak = (ancestorPid) => mostOfRenderers(ancestorPid, (pid) => kbOf(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmHWM'));

// Private memory of those renderers, what Chrome's task manager calls a tab's memory
// footprint: resident memory less the pages shared with other processes, most of them
// Chromium's own code (~100 MB that every Chromium process maps). The kernel keeps no peak
// of it, and sampling it while the engine runs slows the engine (reading smaps walks the
// renderer's page tables under its memory lock), so it is read once, when the extraction
// is done: wasm memory never shrinks, so the engine's peak is in it.
const rendererPrivate = (ancestorPid) => mostOfRenderers(ancestorPid, (pid) => {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return kbOf(rollup, 'Private_Clean') + kbOf(rollup, 'Private_Dirty');
});

// Per-document extraction in the browser: ours, then wllama on the same prompts with
// answers of the same length (bench/documents.html).
// One long document in the page on `threads` threads, `batch` windows at once (bench/documents.html).
async function documentInBrowser(name, text, schema, threads, batch) {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(new URL(`bench/documents.html?engine=anote&threads=${threads}&batch=${batch}`, url).href);
    await page.evaluate((d) => { window.__docs = d; }, { docs: [{ text }], schema });
    await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 900_000, polling: 500 });
    const res = await page.evaluate(() => window.__result);
    if (res.error) throw new Error(`anote, ${threads} threads, batch ${batch}: ${res.error}`);
    if (res.threads !== threads) throw new Error(`asked for ${threads} threads, the page ran ${res.threads}`);
    const row = { name, threads, batch, bytes: new TextEncoder().encode(text).length, secs: res.ms[0] / 1000, peak: rendererPeak(process.pid) };
    console.log(JSON.stringify(row));
    return row;
  } finally {
    await browser.close();
  }
}

async function documentsInBrowser(docs, schema) {
  const browser = await launch();
  try {
    const run = async (engine, input) => {
      const page = await browser.newPage();
      await page.goto(new URL(`bench/documents.html?engine=${engine}`, url).href);
      await page.evaluate((d) => { window.__docs = d; }, { docs: input, schema });
      await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 900_000, polling: 500 });
      const res = await page.evaluate(() => window.__result);
      if (res.error) throw new Error(`${engine}: ${res.error}`);
      await page.close();
      return res;
    };
    const ours = await run('anote', docs.map((text) => ({ text })));
    const anchor = await run('wllama', docs.map((text, i) => ({ text, tokens: ours.tokens[i] })));
    return { ours, anchor };
  } finally {
    await browser.close();
  }
}

const stats = (ms) => {
  const s = [...ms].sort((a, b) => a - b);
  return { mean: s.reduce((a, b) => a + b, 0) / s.length, p95: s[Math.min(s.length - 1, Math.floor(s.length * 0.95))] };
};

async function inBrowser(page_, engine, note) {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(new URL(page_, url).href);
    await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 900_000, polling: 500 });
    const res = await page.evaluate(() => window.__result);
    const peak = rendererPeak(process.pid);
    const row = summarize(engine, 'browser (headless Chromium)', res.threads ?? 1, res, peak, note(res));
    return { row, res };
  } finally {
    await browser.close();
  }
}

const before = load();
// Against the engine before batched decoding and the page's threads (commit ANOTE_ANCHOR_REV, built by
// `cargo xtask bench`), the two taking turns so that each pair shares the machine's state; what each row
// times is said with the table below.
const ANCHOR_TRIES = 2;
const ANCHOR_REV = process.env.ANOTE_ANCHOR_REV.slice(0, 7);
// `cached`: a second run with `--prompt-cache`, which reads the schema's prompt from the file
// a first run (not timed) wrote.
function emailNative(binary, cached = false) {
  const dir = cached ? mkdtempSync(join(tmpdir(), 'anote-bench-prompts-')) : undefined;
  const args = ['--model', MODEL, '--adapter', 'models/anote-ner-lora.safetensors', '--threads', '2',
    ...(dir ? ['--prompt-cache', dir] : []), 'extract', '--preset', 'pii', EMAIL];
  try {
    if (dir) timedExtract(binary, args);
    return { ...timedExtract(binary, args), threads: 2 };
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}
// `when`: `click`, the user clicks Extract the moment the model is ready; `ahead`, the user pastes
// after the page has read the schema's prompt (\`prepare\`), which it starts once the model is ready
// (in \`aheadSecs\` of waiting, told in the row); `return`, a second visit that clicks at once: a
// first visit in the same browser profile read the prompt and stored its cache, which the second
// reads back (a fresh renderer, so its memory is the second visit's alone).
async function emailInPage(base, threads, when = 'click') {
  const page_ = new URL(threads ? `?threads=${threads}` : '', base).href;
  const profile = when === 'return' ? mkdtempSync(join(tmpdir(), 'anote-bench-profile-')) : undefined;
  try {
    if (profile) {
      const first = await launch({ webgpu: false, profile });
      try {
        const page = await first.newPage();
        await page.goto(page_);
        if (await modelState(page) !== 'ready') throw new Error(`the page at ${base} did not load the model`);
        await page.waitForSelector('[data-testid=extract][data-prepared]', { timeout: 900_000 });
      } finally {
        await first.close();
      }
    }
    const browser = await launch({ webgpu: false, profile });
    try {
      const page = await browser.newPage();
      await page.goto(page_);
      if (await modelState(page) !== 'ready') throw new Error(`the page at ${base} did not load the model`);
      const t = performance.now();
      if (when === 'ahead') await page.waitForSelector('[data-testid=extract][data-prepared]', { timeout: 900_000 });
      const aheadSecs = (performance.now() - t) / 1000;
      await page.fill('[data-testid=text-input]', readFileSync(EMAIL, 'utf8'));
      const t0 = performance.now();
      await page.click('[data-testid=extract]');
      await page.waitForSelector('[data-testid=extract-status][data-done]', { timeout: 900_000 });
      const secs = (performance.now() - t0) / 1000;
      const done = await page.getAttribute('[data-testid=extract-status]', 'data-done');
      if (done !== 'true') throw new Error(`the page at ${base} failed to extract: ${done}`);
      if (profile && await page.getAttribute('[data-testid=extract]', 'data-prepared-from') !== 'store') {
        throw new Error(`the second visit to ${base} did not read the prompt from the store`);
      }
      return { secs, entities: await page.$$eval('[data-testid=entity]', (m) => m.length),
        threads: Number(await page.getAttribute('[data-testid=backend]', 'data-threads') ?? 1), peak: rendererPeak(process.pid),
        private: rendererPrivate(process.pid), ...(when === 'ahead' ? { aheadSecs } : {}) };
    } finally {
      await browser.close();
    }
  } finally {
    if (profile) rmSync(profile, { recursive: true, force: true });
  }
}
const anchorRuns = [
  { where: 'native', engine: ANCHOR_REV, windows: 1, run: () => emailNative(process.env.ANOTE_ANCHOR_BIN) },
  { where: 'native', engine: 'today', windows: 16, run: () => emailNative(bin) },
  { where: 'native', engine: 'today, second run', windows: 16, run: () => emailNative(bin, true) },
  { where: 'page', engine: ANCHOR_REV, windows: 1, run: () => emailInPage(process.env.ANOTE_ANCHOR_URL) },
  { where: 'page', engine: 'today', windows: 8, run: () => emailInPage(url, 1) },
  { where: 'page', engine: 'today', windows: 8, run: () => emailInPage(url) },
  { where: 'page', engine: 'today, schema read ahead', windows: 8, run: () => emailInPage(url, 1, 'ahead') },
  { where: 'page', engine: 'today, schema read ahead', windows: 8, run: () => emailInPage(url, undefined, 'ahead') },
  { where: 'page', engine: 'today, second visit', windows: 8, run: () => emailInPage(url, 1, 'return') },
  { where: 'page', engine: 'today, second visit', windows: 8, run: () => emailInPage(url, undefined, 'return') },
].map((a) => ({ ...a, runs: [] }));
for (let i = 0; i < ANCHOR_TRIES; i++) {
  for (const a of anchorRuns) {
    a.runs.push(await a.run());
    console.log(JSON.stringify({ anchor: a.engine, where: a.where, ...a.runs.at(-1) }));
  }
}
for (const a of anchorRuns) a.best = a.runs.reduce((x, y) => (y.secs < x.secs ? y : x));
const CPU_TRIES = 5;
const [ours1, base1, ours2] = nativeOurs([{ threads: 1 }, { threads: 1, adapter: 'none' }, { threads: 2 }], CPU_TRIES);
const extractTuned = nativeExtraction('default');
const extractBase = nativeExtraction('none');
// WebGPU natively. Where the machine has no GPU the adapter is a software one (lavapipe): there a
// document takes minutes and the rows only show that the backend runs, so one short run and
// three documents (the per-document means stay comparable because the prefix is cached).
const probe = spawnSync(bin, ['--backend', 'webgpu', 'generate', '--prompt', 'Hello', '--max-tokens', '1'], { encoding: 'utf8' });
if (probe.status !== 0) throw new Error(`anote --backend webgpu failed: ${probe.stderr}`);
nativeAdapter = gpuName(probe.stderr) ?? nativeAdapter;
const software = nativeAdapter.includes('software');
const [gpu1] = nativeOurs([{ threads: 1, backend: 'webgpu', ntok: software ? 16 : NTOK }], software ? 1 : 2);
const GPU_DOCS = software ? 3 : 10;
const extractGpu = nativeExtraction('default', 'webgpu', GPU_DOCS);
const extractCpuFew = nativeExtraction('default', 'cpu', GPU_DOCS);
const cpp = llamaPython ? [nativeLlamaCpp(1), nativeLlamaCpp(2)] : null;
const nativeDocs = [
  ...[[1, 1], [1, 8], [1, 16], [2, 1], [2, 8], [2, 16]].map(([t, b]) => nativeDocument(EMAIL, t, b)),
  ...[[2, 1], [2, 8], [2, 16]].map(([t, b]) => nativeDocument(LONG_FILE, t, b)),
];
const wasmNote = (r) => `with the adapter; wasm linear memory (its peak) ${(r.wasm_bytes / 1e6).toFixed(0)} MB`;
const wasm = await inBrowser('bench/anote.html', 'anote (ours), wasm SIMD128', wasmNote);
const wl = await inBrowser('bench/wllama.html?threads=1', 'wllama 3.13.0 (llama.cpp, wasm)', () => '');
const wasm2 = await inBrowser('bench/anote.html?threads=2', 'anote (ours), wasm SIMD128, threaded build', wasmNote);
const wl2 = await inBrowser('bench/wllama.html?threads=2', 'wllama 3.13.0 (llama.cpp, wasm)', () => '');
const piiSchema = readFileSync('presets/pii.json', 'utf8');
const pageDocs = [];
for (const [threads, batch] of [[1, 1], [1, 8], [2, 1], [2, 8]]) {
  pageDocs.push(await documentInBrowser('e-mail thread', readFileSync(EMAIL, 'utf8'), piiSchema, threads, batch));
}
pageDocs.push(await documentInBrowser('joined PII documents', readFileSync(LONG_FILE, 'utf8'), piiSchema, 2, 8));

// SwiftShader is as slow as lavapipe: one run there (two took over the page's 15 minutes).
const webgpu = await inBrowser(`bench/anote.html?backend=webgpu&ntok=16&runs=${software ? 1 : 2}`, 'anote (ours), WebGPU',
  (r) => `with the adapter; ${r.backend === 'webgpu' ? `on ${r.device}` : `fell back: ${r.device}`}; 16 tokens${software ? ', 1 run' : ''}`);
const BROWSER_DOCS = 20;
const docs = readFileSync(PII_DEV, 'utf8').split('\n').filter(Boolean).slice(0, BROWSER_DOCS).map((l) => JSON.parse(l).text);
const perDoc = await documentsInBrowser(docs, readFileSync('presets/pii.json', 'utf8'));
const oursDoc = stats(perDoc.ours.ms);
const anchorDoc = stats(perDoc.anchor.ms);
const after = load();

// The npm package (`cargo xtask pack`): the tarball, its files unpacked, and the files a page
// with the widget fetches on its first visit (the model aside: the site hosts it).
const tarball = process.env.ANOTE_NPM_TARBALL;
const packageDir = join(dirname(tarball), 'anote-ner');
const filesUnder = (dir) => readdirSync(dir, { withFileTypes: true })
  .flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
const unpacked = filesUnder(packageDir).reduce((sum, f) => sum + statSync(f).size, 0);
const FIRST_VISIT = ['index.js', 'widget.js', 'anote.js', 'config.js', 'view.js', 'widget.css', 'worker.js',
  'pkg/anote_ner.js', 'pkg/anote_ner_bg.wasm', 'presets/pii.json', 'models/anote-ner-lora.safetensors'];
const firstVisit = FIRST_VISIT.reduce((sum, f) => sum + statSync(join(packageDir, f)).size, 0);
const modelBytes = statSync(MODEL).size;

const mb = (b) => (b ? `${(b / 1e6).toFixed(0)} MB` : '—');
const f = (x) => x.toFixed(1);
const ratio = (a, b) => `${(a / b).toFixed(2)}×`;
const table = rows.map((r) => `| ${r.engine} | ${r.where} | ${r.threads} | ${r.prompt_tokens} | ${f(r.prefill)} | ${r.decode_steps} | ${f(r.decode)} | ${mb(r.peakBytes)} | ${r.note} |`);
const ratios = [
  `| native, 1 thread: with adapter / base model (median of ${CPU_TRIES} back-to-back pairs) | ${pairedRatio(ours1, base1, 'prefill_tok_s').toFixed(2)}× | ${pairedRatio(ours1, base1, 'decode_tok_s').toFixed(2)}× | ${ratio(ours1.peakBytes, base1.peakBytes)} |`,
  `| wasm, 1 thread: ours / wllama | ${ratio(wasm.row.prefill, wl.row.prefill)} | ${ratio(wasm.row.decode, wl.row.decode)} | ${ratio(wasm.row.peakBytes, wl.row.peakBytes)} |`,
  `| wasm: ours (1 thread) / wllama (${wl2.row.threads} threads) | ${ratio(wasm.row.prefill, wl2.row.prefill)} | ${ratio(wasm.row.decode, wl2.row.decode)} | ${ratio(wasm.row.peakBytes, wl2.row.peakBytes)} |`,
  `| wasm, ${wasm2.row.threads} threads: ours / wllama | ${ratio(wasm2.row.prefill, wl2.row.prefill)} | ${ratio(wasm2.row.decode, wl2.row.decode)} | ${ratio(wasm2.row.peakBytes, wl2.row.peakBytes)} |`,
  `| wasm, ours: ${wasm2.row.threads} threads / 1 thread | ${ratio(wasm2.row.prefill, wasm.row.prefill)} | ${ratio(wasm2.row.decode, wasm.row.decode)} | ${ratio(wasm2.row.peakBytes, wasm.row.peakBytes)} |`,
  `| native: WebGPU (${nativeAdapter}) / CPU 1 thread | ${ratio(gpu1.prefill, ours1.prefill)} | ${ratio(gpu1.decode, ours1.decode)} | ${ratio(gpu1.peakBytes, ours1.peakBytes)} |`,
  `| browser: WebGPU (${webgpu.res.device}) / wasm SIMD128 | ${ratio(webgpu.row.prefill, wasm.row.prefill)} | ${ratio(webgpu.row.decode, wasm.row.decode)} | — |`,
  ...(cpp ? [
    `| native, 1 thread: ours / llama.cpp | ${ratio(ours1.prefill, cpp[0].prefill)} | ${ratio(ours1.decode, cpp[0].decode)} | ${ratio(ours1.peakBytes, cpp[0].peakBytes)} |`,
    `| native, 2 threads: ours / llama.cpp | ${ratio(ours2.prefill, cpp[1].prefill)} | ${ratio(ours2.decode, cpp[1].decode)} | ${ratio(ours2.peakBytes, cpp[1].peakBytes)} |`,
  ] : []),
];
const md = `# Benchmarks

Reproduce with \`cargo xtask bench\` (add \`ANOTE_LLAMA_PYTHON=/path/to/python\` with llama-cpp-python
installed for the native llama.cpp rows). It writes this file. Every number below comes from one run on one
machine; the machines here are shared, so compare rows of the same run, as ratios.

- Machine: ${cpus().length} × ${cpus()[0].model}; load average before ${before}, after ${after}.
- Model: \`${MODEL}\` (Gemma 3 270M, Q4_K_M); prompt \`bench/prompt.txt\` (${ours1.prompt_tokens} tokens with BOS);
  ${NTOK} greedy tokens (the first comes from the prefill, so ${NTOK - 1} decode steps). Each run starts with a
  different first word (nothing cached between runs) and the table shows an engine's best: the native CPU rows run
  ${CPU_TRIES} times each, taking turns (so the rows with and without the adapter share the machine's state), the
  others twice.
- Peak memory: native = peak RSS of the process; browser = peak RSS of the Chromium renderer process that runs the page
  and its worker (the model is downloaded into OPFS and read from there straight into wasm memory).

| engine | where | threads | prompt tokens | prefill tok/s | decode steps | decode tok/s | peak memory | note |
|---|---|---|---|---|---|---|---|---|
${table.join('\n')}

| ratio | prefill | decode | peak memory |
|---|---|---|---|
${ratios.join('\n')}

Long documents, extracted whole (\`pii\` preset, recognizers on, the adapter): \`${EMAIL}\` (an e-mail thread with
PII) and the PII dev documents joined as paragraphs (${(nativeDocs.find((d) => d.file === LONG_FILE).bytes / 1000).toFixed(0)} KB, up to 40 KB of them). Natively the time is the
whole command, loading the model and the schema prefix included (\`anote --threads T --batch B extract --preset pii FILE\`);
in the page it is the extraction alone, the schema prefix cached (\`bench/documents.html?threads=T&batch=B\`; more than
one thread is the threaded build). \`--batch\` is how
many windows decode at once; the entities are the same at every batch.

| where | document | threads | windows at once | seconds | bytes/s | entities | peak memory |
|---|---|---|---|---|---|---|---|
${nativeDocs.map((d) => `| native | ${d.file === EMAIL ? 'e-mail thread' : 'joined PII documents'} (${(d.bytes / 1000).toFixed(1)} KB) | ${d.threads} | ${d.batch} | ${d.secs.toFixed(1)} | ${(d.bytes / d.secs).toFixed(0)} | ${d.entities} | ${mb(d.peak)} |`).join('\n')}
${pageDocs.map((d) => `| browser (headless Chromium), wasm SIMD128 | ${d.name} (${(d.bytes / 1000).toFixed(1)} KB) | ${d.threads} | ${d.batch} | ${d.secs.toFixed(1)} | ${(d.bytes / d.secs).toFixed(0)} | — | ${mb(d.peak)} |`).join('\n')}

Against the engine before batched decoding and the page's threads (commit ${ANCHOR_REV}, built from git by
\`cargo xtask bench\`): the e-mail thread (${(readFileSync(EMAIL).length / 1000).toFixed(1)} KB), both with today's model, the two engines taking
turns, best of ${ANCHOR_TRIES} each; natively both with today's adapter, in the page each with the adapter it ships (its page
checks it by hash; both are rank 16, which costs the same per token). Natively the whole command, 2 threads; in the page as a user waits
for it: the model loaded, the text pasted, Extract clicked, until the page says it is done, on the CPU backend
(${ANCHOR_REV}'s page has one thread; today's uses all cores but one, both of two, unless \`?threads=N\` says otherwise). The
schema's prompt (690 tokens) is read on the click, except in the rows "schema read ahead": today's page reads it
as soon as the model is ready (and again after each edit of the schema), and there the user pastes after it has
(which took ${anchorRuns.filter((a) => a.best.aheadSecs !== undefined).map((a) => `${a.best.aheadSecs.toFixed(1)} s on ${a.best.threads} thread${a.best.threads > 1 ? 's' : ''}`).join(', ')}
after the model was ready); and in the rows "second visit": the page keeps the prompt's cache in the browser's
file store (OPFS) once read, so a second visit (a new browser with the first's profile) reads it back when the
model is ready, and there the user clicks at once; natively, the row "second run" is a run with \`--prompt-cache DIR\`
after one that wrote the prompt's cache there. Memory of the renderer: its resident peak (as in the other tables), and its private
memory when the extraction is done (Chrome's "memory footprint": less the pages of Chromium's own code, which every
Chromium process shares; wasm memory never shrinks, so the engine's peak is in it).

| where | engine | threads | windows at once | seconds | bytes/s | entities | peak memory | private memory | speed-up |
|---|---|---|---|---|---|---|---|---|---|
${anchorRuns.map((a) => {
  const then = anchorRuns.find((b) => b.where === a.where && b.engine === ANCHOR_REV).best;
  const bytes = readFileSync(EMAIL).length;
  return `| ${a.where} | ${a.engine} | ${a.best.threads} | ${a.windows} | ${a.best.secs.toFixed(1)} | ${(bytes / a.best.secs).toFixed(0)} | ${a.best.entities} | ${mb(a.best.peak)} | ${mb(a.best.private)} | ${(then.secs / a.best.secs).toFixed(2)}× |`;
}).join('\n')}

A window's answer is a handful of tokens after a prompt of some thirty, and the forward of the constrained decoder
reads only the allowed rows of the LM head. Decoding windows together reads each weight once a step instead of once
per window; what that gains depends on how much of a step the reading is, against the arithmetic (compare the rows
with 1 and 8 windows at once).

The npm package \`anote-ner\` (\`cargo xtask pack\`): the tarball is ${(statSync(tarball).size / 1e6).toFixed(1)} MB, ${(unpacked / 1e6).toFixed(1)} MB
unpacked. A first visit to a page with the widget fetches ${(firstVisit / 1e6).toFixed(1)} MB of it (${FIRST_VISIT.join(', ')}; the
adapter is most of it) and the model the site hosts (${(modelBytes / 1e6).toFixed(0)} MB); later visits read both from the browser's
caches (the model and adapter from OPFS).

Per-document extraction, native, 1 thread, schema prefix cached: the first ${EXTRACT_DOCS} documents of the PII dev set
(\`${PII_DEV}\`, mean ≈ 20 words), \`pii\` preset, recognizers on.

| model | mean ms/doc | p95 ms/doc |
|---|---|---|
| fine-tuned adapter (default) | ${extractTuned.mean.toFixed(0)} | ${extractTuned.p95.toFixed(0)} |
| base model | ${extractBase.mean.toFixed(0)} | ${extractBase.p95.toFixed(0)} |

The same with the adapter on the first ${GPU_DOCS} documents, CPU against WebGPU (wgpu on ${nativeAdapter}):

| backend | mean ms/doc | p95 ms/doc |
|---|---|---|
| CPU, 1 thread | ${extractCpuFew.mean.toFixed(0)} | ${extractCpuFew.p95.toFixed(0)} |
| WebGPU | ${extractGpu.mean.toFixed(0)} | ${extractGpu.p95.toFixed(0)} |

A software adapter (lavapipe natively, SwiftShader in Chromium: what this machine has) emulates the GPU on the same
CPU cores, so its WebGPU rows show that the backend runs, not how fast it is on a GPU; \`cargo xtask bench\` on a
machine with a GPU fills the same rows with that GPU's figures. Figures from a real GPU (an NVIDIA H200, natively):
\`docs/benchmarks-gpu.md\`.

In the browser (headless Chromium, 1 thread), the first ${BROWSER_DOCS} of those documents: ours is the whole extraction
(with the adapter); wllama gets the same prompt (\`extractionPrompt\`, its prompt cache on, so the schema prefix is
reused as ours is) and decodes an unconstrained greedy answer of as many tokens as ours decoded for that document
(mean ${(perDoc.ours.tokens.reduce((a, b) => a + b, 0) / BROWSER_DOCS).toFixed(1)} tokens).

| engine | mean ms/doc | p95 ms/doc |
|---|---|---|
| anote (ours), wasm SIMD128 | ${oursDoc.mean.toFixed(0)} | ${oursDoc.p95.toFixed(0)} |
| wllama 3.13.0, same prompt and answer length | ${anchorDoc.mean.toFixed(0)} | ${anchorDoc.p95.toFixed(0)} |

Per document, wllama takes ${ratio(anchorDoc.mean, oursDoc.mean)} our time.

With the adapter, a document takes ${ratio(extractTuned.mean, extractBase.mean)} the time of the base model. The two decode different
answers (the base model rambles until its token budget; the tuned one stops), so this ratio mixes the adapter's cost
per token with the answer length; the generation rows above isolate the cost per token.
${cpp ? '' : '\nNative llama.cpp was not measured in this run (set ANOTE_LLAMA_PYTHON).\n'}`;
writeFileSync('docs/benchmarks.md', md);
console.log(md);
