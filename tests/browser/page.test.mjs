// The page in headless Chromium with the real model: it loads through the worker,
// generates the same greedy tokens as the native engine, caches the model, reports bad
// input as typed errors, and sends nothing but requests for its own files.
// Run by `cargo xtask test` (which serves www/ and passes the native reference).
import assert from 'node:assert/strict';
import { launch, modelState, generateInPage } from './chromium.mjs';

const url = process.env.ANOTE_URL;
const prompt = process.env.ANOTE_PROMPT;
const native = JSON.parse(process.env.ANOTE_NATIVE);
const gold = process.env.ANOTE_GOLD; // a small gold JSONL file, with one broken line
const direction = process.env.ANOTE_ADAPTER_GOLD; // sentences the base model gets wrong more often
const nativeEval = JSON.parse(process.env.ANOTE_NATIVE_EVAL); // `anote eval --json` on it
const nativeUnicode = JSON.parse(process.env.ANOTE_NATIVE_UNICODE); // `anote extract --preset pii` on tests/fixtures/unicode_mixed.txt
const nativeSample = JSON.parse(process.env.ANOTE_NATIVE_SAMPLE_EVAL); // `anote eval --json --per-document` on www/sample-gold.jsonl
const origin = new URL(url).origin;
const notIsolated = process.env.ANOTE_NOT_ISOLATED_URL; // the same site without COOP/COEP
const shots = process.env.ANOTE_SCREENSHOTS; // a folder for screenshots of the main views, if set
const shoot = async (p, name, selector) => {
  if (!shots) return;
  const target = selector ? p.locator(selector) : p;
  // Pictures for the docs: a failed one is reported, not a test failure.
  await target.screenshot({ path: `${shots}/${name}.png`, ...(selector ? {} : { fullPage: true }) })
    .catch((e) => console.log(`     (no screenshot ${name}: ${e.message.split('\n')[0]})`));
};

// The greedy parity checks run the base model: with the adapter, near ties between the
// native and the wasm float paths can flip a token (its parity is checked through
// extraction scores instead).
async function useAdapter(p, on) {
  if ((await p.isChecked('[data-testid=adapter-toggle]')) === on) return;
  await p.click('[data-testid=adapter-toggle]');
  await p.waitForFunction((want) => document.querySelector('[data-testid=adapter-toggle]').checked === want, on);
}

const browser = await launch();
const context = await browser.newContext();
const page = await context.newPage();
const requests = [];
page.on('request', (r) => requests.push(r));
const problems = [];
page.on('pageerror', (e) => problems.push(String(e)));

let failures = 0;
async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}\n     ${String(e.stack ?? e).split('\n').slice(0, 6).join('\n     ')}`);
  }
}

// Colours as the eye compares them: `rgb(…)` strings to CIELAB (D65), the smallest distance
// (CIE76) between any two, and WCAG's contrast ratio of two colours.
const linear = (rgb) => rgb.match(/\d+(\.\d+)?/g).slice(0, 3).map((v) => {
  const c = v / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
});
const luminance = (rgb) => { const [r, g, b] = linear(rgb); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
function lab(rgb) {
  const [r, g, b] = linear(rgb);
  const f = (t) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116);
  const [x, y, z] = [(0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b,
    (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883];
  return [116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))];
}
function closestPair(colours) {
  const labs = colours.map(lab);
  let min = Infinity;
  labs.forEach((p, i) => labs.slice(i + 1).forEach((q) => { min = Math.min(min, Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2])); }));
  return min;
}
const contrast = (a, b) => { const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x); return (hi + 0.05) / (lo + 0.05); };

// A GGUF header written by hand: `arch` as general.architecture and, with `truncated`,
// one F32 tensor whose data lies beyond the end of the file.
function tinyGguf(arch, truncated) {
  const parts = [];
  const u32 = (v) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); parts.push(b); };
  const u64 = (v) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v), true); parts.push(b); };
  const str = (s) => { const b = new TextEncoder().encode(s); u64(b.length); parts.push(b); };
  parts.push(new TextEncoder().encode('GGUF'));
  u32(3); u64(truncated ? 1 : 0); u64(1);
  str('general.architecture'); u32(8); str(arch);
  if (truncated) { str('token_embd.weight'); u32(1); u64(1 << 20); u32(0); u64(0); }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return Array.from(out);
}

// The main page runs the threaded build (two threads whatever the machine's cores), so every
// check on it (greedy parity with the native engine included) runs the threaded kernels.
// Every step of the loading bar, with its label, as the page draws it.
await page.addInitScript(() => {
  window.loadBar = [];
  addEventListener('DOMContentLoaded', () => {
    const bar = document.getElementById('progress');
    const record = () => window.loadBar.push([bar.value, document.getElementById('progress-text').textContent]);
    new MutationObserver(record).observe(bar, { attributes: true, attributeFilter: ['value'] });
  });
});
await page.goto(`${url}?threads=2`);

await check('the default model loads in the worker on one bar (download, weights, adapter), on the CPU with two threads: the only WebGPU adapter is software', async () => {
  assert.equal(await modelState(page), 'ready', await page.textContent('[data-testid=error]'));
  const steps = await page.evaluate(() => window.loadBar);
  const values = steps.map(([v]) => v);
  assert.deepEqual(values, [...values].sort((a, b) => a - b), 'the loading bar went back');
  const phases = [...new Set(steps.filter(([, text]) => text).map(([, text]) => text.split(':')[0]))];
  assert.deepEqual(phases, ['Downloading the model', 'Preparing the weights', 'Downloading the fine-tuning adapter']);
  assert.ok(steps.some(([, text]) => /Preparing the weights: [1-9]\d?%/.test(text)), 'no progress while the weights were prepared');
  assert.match(await page.textContent('[data-testid=progress-text]'), /downloaded and cached/);
  assert.equal(await page.getAttribute('[data-testid=backend]', 'data-backend'), 'cpu');
  assert.equal(await page.getAttribute('[data-testid=backend]', 'data-threads'), '2');
  assert.equal(await page.textContent('[data-testid=backend]'), 'CPU SIMD ×2');
  assert.match(await page.getAttribute('[data-testid=backend]', 'title'), /software renderer.*2 threads/);
});

await check('greedy tokens in the browser equal the native engine', async () => {
  await useAdapter(page, false);
  const r = await generateInPage(page, prompt, native.tokens.length);
  console.log(`     wasm: ${JSON.stringify(r.text)} · ${r.stats}`);
  assert.deepEqual(r.tokens, native.tokens);
  assert.equal(r.text, native.text);
});

await check('a reload reads the model from the browser\'s file store (OPFS), not the network', async () => {
  const before = requests.length;
  await page.reload();
  assert.equal(await modelState(page), 'ready');
  assert.match(await page.textContent('[data-testid=progress-text]'), /from the browser cache/);
  const modelFetches = requests.slice(before).filter((r) => r.url().endsWith('.gguf'));
  assert.equal(modelFetches.length, 0, 'the model was fetched again');
});

await check('bad input gives typed errors and loses nothing', async () => {
  const codes = await page.evaluate(async ({ notGguf, truncated, mamba }) => {
    const { AnoteClient } = await import('./anote.js');
    const c = new AnoteClient();
    const code = (p) => p.then(() => 'no error', (e) => e.code);
    const bytes = (a) => new Uint8Array(a).buffer;
    return {
      notGguf: await code(c.load(bytes(notGguf))),
      truncated: await code(c.load(bytes(truncated))),
      mamba: await code(c.load(bytes(mamba))),
      truncatedBlob: await code(c.load(new Blob([new Uint8Array(truncated)]))),
      notLoaded: await code(c.generate('hello', 4)),
    };
  }, { notGguf: Array.from(new TextEncoder().encode('<html>not a model</html>')), truncated: tinyGguf('gemma3', true), mamba: tinyGguf('mamba', false) });
  assert.deepEqual(codes, { notGguf: 'not_gguf', truncated: 'truncated', mamba: 'unsupported_arch', truncatedBlob: 'truncated', notLoaded: 'not_loaded' });

  await page.fill('[data-testid=prompt]', '');
  await page.click('[data-testid=generate]');
  await page.waitForSelector('[data-testid=error]:not(:empty)');
  assert.match(await page.textContent('[data-testid=error]'), /\[empty_prompt\]/);

  await page.fill('[data-testid=prompt]', 'word '.repeat(9000));
  await page.click('[data-testid=generate]');
  await page.waitForFunction(() => /context_overflow/.test(document.querySelector('[data-testid=error]').textContent));

  // The engine survives: the same prompt still gives the native tokens.
  await useAdapter(page, false);
  const r = await generateInPage(page, prompt, 4);
  assert.deepEqual(r.tokens, native.tokens.slice(0, 4));
});

await check('extraction in the worker streams grounded entities with UTF-16 offsets', async () => {
  const r = await page.evaluate(async () => {
    const { AnoteClient } = await import('./anote.js');
    const c = new AnoteClient();
    await c.load(new URL('models/gemma-3-270m-q4_k_m.gguf', location.href).href);
    const schema = await (await fetch('presets/pii.json')).json();
    const text = '😀 Bonjour! Please call Ahmed Khan on +44 20 7946 0018 or write to ahmed.khan@example.com.';
    const streamed = [];
    const result = await c.extract(text, schema, (e) => streamed.push(e));
    return { text, streamed, result, sliced: result.entities.map((e) => text.slice(e.start, e.end)) };
  });
  console.log(`     ${JSON.stringify(r.result.entities.map((e) => [e.label, e.text, e.source]))}`);
  assert.deepEqual(r.sliced, r.result.entities.map((e) => e.text), 'UTF-16 offsets do not slice to the entity text');
  assert.equal(r.streamed.length, r.result.entities.length);
  assert.ok(r.result.entities.some((e) => e.label === 'EMAIL_ADDRESS' && e.text === 'ahmed.khan@example.com' && e.source === 'pattern'));
  assert.ok(r.result.entities.some((e) => e.label === 'PHONE_NUMBER' && e.text === '+44 20 7946 0018'));
  assert.deepEqual(r.result.windows, [[0, r.text.length]]);
});

await check('a running extraction can be cancelled', async () => {
  const r = await page.evaluate(async () => {
    const { AnoteClient } = await import('./anote.js');
    const c = new AnoteClient();
    await c.load(new URL('models/gemma-3-270m-q4_k_m.gguf', location.href).href);
    const text = 'Angela Merkel met Emmanuel Macron in Berlin. '.repeat(60);
    const started = performance.now();
    const p = c.extract(text, '{"labels": [{"label": "PERSON"}]}', () => c.cancel());
    const code = await p.then(() => 'finished', (e) => e.code);
    return { code, seconds: (performance.now() - started) / 1000, isolated: crossOriginIsolated };
  });
  assert.ok(r.isolated, 'the page is not cross-origin isolated');
  assert.equal(r.code, 'cancelled');
});

await check('the page highlights entities without ever parsing text as HTML', async () => {
  const payload = 'Mail <img src=x onerror="window.__xss=1"> to ahmed.khan@example.com now.';
  await page.fill('[data-testid=text-input]', payload);
  await page.click('[data-testid=extract]');
  await page.waitForSelector('[data-testid=extract-status][data-done=true]', { timeout: 600_000 });
  const marks = await page.$$eval('[data-testid=entity]', (ms) => ms.map((m) => ({ label: m.dataset.label, start: +m.dataset.start, end: +m.dataset.end, text: m.textContent })));
  assert.ok(marks.some((m) => m.label === 'EMAIL_ADDRESS' && m.text === 'ahmed.khan@example.com'));
  for (const m of marks) assert.equal(payload.slice(m.start, m.end), m.text);
  assert.equal(await page.$('#highlighted img'), null, 'user text became HTML');
  assert.equal(await page.evaluate(() => window.__xss), undefined);
});

await check('the schema editor starts on the PII preset, validates inline, imports, and persists; the page reads each schema\'s prompt ahead', async () => {
  assert.equal(await page.$$eval('[data-testid=schema-row]', (r) => r.length), 17);
  await useAdapter(page, true); // as after the reload below: a prompt's cache is the adapter's
  const prepared = () => page.$eval('[data-testid=extract]', (b) => Number(b.dataset.prepared ?? 0));
  await page.waitForSelector('[data-testid=extract][data-prepared]', { timeout: 120_000 });
  const piiTokens = await prepared();
  assert.ok(piiTokens > 100, `the PII preset's prompt read ahead has ${piiTokens} tokens`);
  await page.click('[data-testid=schema-add]');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'schema-label', 'the new row is not focused');
  assert.equal(await page.$eval('[data-testid=preset]', (m) => m.selectedOptions[0].text), 'Custom (edited from PII)');
  const labels = await page.$$('[data-testid=schema-label]');
  await labels[labels.length - 1].fill('PERSON'); // a duplicate label
  await page.waitForFunction(() => /duplicate|PERSON/i.test(document.querySelector('[data-testid=schema-error]').textContent));
  await labels[labels.length - 1].fill('date of birth'); // natural language is a label too
  await page.waitForFunction(() => document.querySelector('[data-testid=schema-error]').textContent === '');
  assert.equal(await page.getAttribute('[data-testid=schema-row]:last-child textarea', 'aria-label'), 'guideline of date of birth');
  await page.click('[data-testid=schema-row]:last-child button[title^=remove]');
  await page.waitForFunction(() => document.querySelector('[data-testid=schema-error]').textContent === '');
  // Within every field's limit, but its prompt cannot fit the model's context: refused before any work.
  const long = Array.from({ length: 64 }, (_, i) => ({ label: `T${i}`, description: '0123456789 '.repeat(90) })); // a token per digit
  await page.setInputFiles('[data-testid=schema-import]', { name: 'long.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify({ labels: long })) });
  await page.waitForFunction(() => /tokens; the limit is/.test(document.querySelector('[data-testid=schema-error]').textContent));
  await page.setInputFiles('[data-testid=schema-import]', { name: 'bad.json', mimeType: 'application/json', buffer: Buffer.from('{"labels": []}') });
  await page.waitForFunction(() => /bad\.json was not imported/.test(document.querySelector('[data-testid=schema-error]').textContent));
  await page.setInputFiles('[data-testid=schema-import]', { name: 'people.json', mimeType: 'application/json', buffer: Buffer.from('{"labels": [{"label": "PERSON", "description": "A name."}, {"label": "EMAIL", "recognizer": "email"}]}') });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=schema-row]').length === 2);
  // The imported schema's prompt is read ahead in its turn: shorter than the preset's.
  await page.waitForFunction((pii) => Number(document.querySelector('[data-testid=extract]').dataset.prepared ?? pii) < pii, piiTokens, { timeout: 120_000 });
  const peopleTokens = await prepared();
  const preparedFrom = () => page.getAttribute('[data-testid=extract]', 'data-prepared-from');
  assert.equal(await preparedFrom(), 'model');
  // Each type's recognizer menu lists the engine's recognizers, each described.
  const engineList = await page.evaluate(async () => {
    const { AnoteClient } = await import('./anote.js');
    const c = new AnoteClient();
    try { return await c.recognizers(); } finally { c.worker.terminate(); }
  });
  const menu = await page.$eval('select[aria-label="recognizer of EMAIL"]', (s) => [...s.options].map((o) => [o.value, o.title]));
  assert.deepEqual(menu, [['', ''], ...engineList.map((r) => [r.name, r.description])]);
  assert.equal(await page.$eval('select[aria-label="recognizer of EMAIL"]', (s) => s.value), 'email');
  await page.reload();
  await modelState(page);
  assert.equal(await page.$$eval('[data-testid=schema-row]', (r) => r.length), 2, 'the schema did not survive a reload');
  // After a reload the prompt's cache is read from the browser's file store, not the model.
  await page.waitForSelector('[data-testid=extract][data-prepared]', { timeout: 120_000 });
  assert.deepEqual([await prepared(), await preparedFrom()], [peopleTokens, 'store']);
  await page.selectOption('[data-testid=preset]', 'blank'); // a schema from scratch, in one step
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=schema-row]').length === 0);
  assert.equal(await page.$$eval('#type-chips > *', (c) => c.length), 0);
  await page.selectOption('[data-testid=preset]', 'pii');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=schema-row]').length === 17);
  // Stored when it was read before: the extractions that follow (the CLI's
  // entities among them) start from the stored cache.
  await page.waitForSelector('[data-testid=extract][data-prepared]', { timeout: 120_000 });
  assert.deepEqual([await prepared(), await preparedFrom()], [piiTokens, 'store']);
});

await check('extract shows a legend, a table, a threshold, and redacts live with the chosen operators', async () => {
  const text = 'Maria Lopez from Leeds asked us to write to ahmed.khan@example.com or call +44 20 7946 0018.';
  await page.fill('[data-testid=text-input]', text);
  await page.click('[data-testid=extract]');
  await page.waitForSelector('[data-testid=extract-status][data-done=true]', { timeout: 600_000 });
  assert.match(await page.textContent('[data-testid=legend]'), /EMAIL_ADDRESS/);
  const rows = await page.$$eval('#entity-rows tr', (r) => r.length);
  assert.equal(rows, await page.$$eval('[data-testid=entity]', (m) => m.length));
  await page.waitForFunction(() => document.querySelector('[data-testid=redacted]').textContent.includes('<EMAIL_ADDRESS>'));
  assert.ok(!(await page.textContent('[data-testid=redacted]')).includes('ahmed.khan@example.com'));
  await page.selectOption('[data-testid=operator][data-label=PHONE_NUMBER]', 'mask:*:4');
  await page.waitForFunction(() => document.querySelector('[data-testid=redacted]').textContent.includes('************0018'));
  await shoot(page, 'page', null);
  await shoot(page, 'results', 'section[aria-labelledby=extract-h]');
  await shoot(page, 'redact', 'section[aria-labelledby=redact-h]');
  // Above every model score the view keeps only the validated pattern matches (score 1),
  // and the redaction still covers every entity: the slider un-redacts nothing.
  await page.fill('[data-testid=threshold]', '1');
  await page.dispatchEvent('[data-testid=threshold]', 'input');
  assert.equal(await page.textContent('#threshold-value'), '1.00');
  assert.ok(await page.$('[data-testid=entity][data-label=PHONE_NUMBER][data-source=pattern]'), 'a validated phone number is hidden by the threshold');
  assert.ok(await page.$('[data-testid=entity][data-label=EMAIL_ADDRESS][data-source=pattern]'), 'a validated e-mail address is hidden by the threshold');
  await page.waitForTimeout(500); // a redaction the threshold might have started
  const redacted = await page.textContent('[data-testid=redacted]');
  for (const original of ['Maria Lopez', 'ahmed.khan@example.com', '7946 0018']) assert.ok(!redacted.includes(original), `${original} in ${redacted}`);
  await page.fill('[data-testid=threshold]', '0');
  await page.dispatchEvent('[data-testid=threshold]', 'input');
});

await check('pseudonyms are keyed: a key is made once per origin, kept, and the downloads carry no original', async () => {
  assert.equal(await page.inputValue('[data-testid=key]'), '', 'a key was made before a keyed operator was chosen');
  await page.selectOption('[data-testid=operator][data-label=PERSON]', 'pseudonym');
  await page.waitForFunction(() => /PERSON_[0-9a-f]{10}/.test(document.querySelector('[data-testid=redacted]').textContent));
  const key = await page.inputValue('[data-testid=key]');
  assert.match(key, /^[0-9a-f]{64}$/);
  const pseudonym = (await page.textContent('[data-testid=redacted]')).match(/PERSON_[0-9a-f]{10}/)[0];
  const [replacements] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=replacements-download]')]);
  const json = await (await import('node:fs/promises')).readFile(await replacements.path(), 'utf8');
  // The redacted text's file names the operators it was made with (phone numbers were set to keep their last 4
  // digits by the check before; `*` and `:` do not go into file names).
  const [file] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=redacted-download]')]);
  assert.equal(file.suggestedFilename(), 'redacted (replace, PERSON=pseudonym, PHONE_NUMBER=mask___4).txt');
  const saved = await (await import('node:fs/promises')).readFile(await file.path(), 'utf8');
  assert.ok(saved.includes(pseudonym) && !saved.includes('Maria Lopez'), saved);
  for (const original of ['Maria Lopez', 'ahmed.khan', '7946 0018']) assert.ok(!json.includes(original), `${original} in replacements.json`);
  assert.ok(JSON.parse(json).every((r) => !('original' in r) && r.redacted_end > r.redacted_start));
  // Another key, another pseudonym; the old key back, the old pseudonym.
  await page.click('[data-testid=key-new]');
  await page.waitForFunction((old) => !document.querySelector('[data-testid=redacted]').textContent.includes(old), pseudonym);
  await page.fill('[data-testid=key]', key);
  await page.dispatchEvent('[data-testid=key]', 'change');
  await page.waitForFunction((old) => document.querySelector('[data-testid=redacted]').textContent.includes(old), pseudonym);
  // One operator for every type at once.
  await page.selectOption('[data-testid=operator-all]', 'replace');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=operator]')].every((s) => s.value === 'replace'));
  await page.waitForFunction(() => /<PERSON>/.test(document.querySelector('[data-testid=redacted]').textContent));
});

await check('the CLI, the page and its export put the same entities at the same places in text with emoji, combining marks and CJK', async () => {
  // `anote extract` on the same file (code points); the page shows UTF-16 offsets and exports code points.
  const text = await (await import('node:fs/promises')).readFile('tests/fixtures/unicode_mixed.txt', 'utf8');
  const want = nativeUnicode.entities.map((e) => [e.label, e.start, e.end, e.text]);
  await useAdapter(page, true);
  await page.selectOption('[data-testid=preset]', 'pii');
  await page.fill('[data-testid=text-input]', text);
  await page.click('[data-testid=extract]');
  await page.waitForSelector('[data-testid=extract-status][data-done=true]', { timeout: 600_000 });
  const marks = await page.$$eval('[data-testid=entity]', (ms) => ms.map((m) => [m.dataset.label, +m.dataset.start, +m.dataset.end, m.textContent]));
  const codePoint = (i) => [...text.slice(0, i)].length;
  assert.deepEqual(marks.map(([l, s, e, t]) => [l, codePoint(s), codePoint(e), t]), want);
  const [file] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export-jsonl]')]);
  const exported = JSON.parse(await (await import('node:fs/promises')).readFile(await file.path(), 'utf8'));
  assert.equal(exported.text, text);
  assert.deepEqual(exported.entities.map((e) => [e.label, e.start, e.end, e.text]), want);
});

await check('the task comes first: text on the first screen, two keys from load to the text box, Ctrl+Enter extracts and focuses the result, no sideways scroll on a phone', async () => {
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.reload();
  assert.equal(await modelState(page), 'ready');
  await page.keyboard.press('Tab'); // the skip link comes first
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'skip');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'text-input');
  const box = await page.locator('[data-testid=text-input]').boundingBox();
  assert.ok(box.y + box.height < 900, `the text box ends at y=${box.y + box.height}`);
  assert.match(await page.textContent('[data-testid=type-chips]'), /PERSON/);
  // The 17 PII types get 17 colours, clearly apart to the eye (CIELAB), as do 24 types.
  const colours = await page.$$eval('[data-testid=type-chips] .swatch', (s) => s.map((c) => getComputedStyle(c).backgroundColor));
  assert.equal(colours.length, 17);
  assert.ok(closestPair(colours) >= 10, `PII colours ${closestPair(colours).toFixed(1)} apart: ${colours.join(' ')}`);
  const many = await page.evaluate(async (labels) => {
    const { setPalette, colorOf } = await import('./view.js');
    setPalette(labels);
    const out = labels.map(colorOf);
    setPalette([...document.querySelectorAll('[data-testid=type-chips] .swatch')].map((c) => c.textContent));
    return out;
  }, Array.from({ length: 24 }, (_, i) => `TYPE_${i}`));
  assert.ok(closestPair(many) >= 10, `24 colours ${closestPair(many).toFixed(1)} apart: ${many.join(' ')}`);
  await page.fill('[data-testid=text-input]', 'Write to ahmed.khan@example.com.');
  await page.evaluate(() => { delete document.querySelector('[data-testid=extract-status]').dataset.done; });
  await page.focus('[data-testid=text-input]');
  await page.keyboard.press('Control+Enter');
  await page.waitForSelector('[data-testid=extract-status][data-done=true]', { timeout: 600_000 });
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'highlighted');
  // The text on a highlight and its type tag stay readable on every colour (WCAG AA, 4.5:1).
  const inks = await page.evaluate(() => {
    const mark = document.querySelector('#highlighted mark');
    return [getComputedStyle(mark).color, getComputedStyle(mark, '::after').color];
  });
  for (const bg of [...colours, ...many]) {
    for (const ink of inks) assert.ok(contrast(bg, ink) >= 4.5, `${ink} on ${bg}: ${contrast(bg, ink).toFixed(2)}:1`);
  }
  await page.setViewportSize({ width: 390, height: 844 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  await shoot(page, 'phone', null);
  await page.setViewportSize({ width: 1280, height: 900 });
  assert.ok(wide <= 390, `the page is ${wide} px wide at 390 px`);
});

await check('the evaluate tab scores a gold file like `anote eval`, skipping its broken line', async () => {
  await page.setInputFiles('[data-testid=gold-file]', gold);
  await page.click('[data-testid=evaluate]');
  await page.waitForSelector('[data-testid=eval-status][data-done=true]', { timeout: 600_000 });
  const status = await page.textContent('[data-testid=eval-status]');
  assert.match(status, /3 documents scored/);
  assert.deepEqual(nativeEval.broken.map((b) => b.line), [3]);
  assert.match(status, /line 3/);
  const f1 = Number(await page.getAttribute('[data-testid=eval-status]', 'data-micro-f1'));
  assert.equal(f1.toFixed(4), nativeEval.scores.strict.micro.f1.toFixed(4));
  assert.equal(await page.$eval('#eval-progress', (p) => p.value === p.max), true, 'the bar stopped short');
  // The sample file the tab offers is a gold file it scores whole.
  const sample = await page.evaluate(async () => (await fetch(document.querySelector('[data-testid=sample-gold]').href)).text());
  await page.setInputFiles('[data-testid=gold-file]', { name: 'sample-gold.jsonl', mimeType: 'application/json', buffer: Buffer.from(sample) });
  await page.click('[data-testid=evaluate]');
  await page.waitForSelector('[data-testid=eval-status][data-done=true]', { timeout: 600_000 });
  assert.equal(await page.textContent('[data-testid=eval-status]'), '3 documents scored');
  assert.ok(Number(await page.getAttribute('[data-testid=eval-status]', 'data-micro-f1')) > 0.5);
  // Each document that differs from gold is listed with its misses, as `anote eval --per-document` lists them.
  const differ = nativeSample.documents.filter((d) => d.missed.length || d.spurious.length);
  const listed = await page.$$eval('[data-testid=eval-documents] li', (lis) => lis.map((li) => ({ id: JSON.parse(li.dataset.id), text: li.textContent })));
  assert.deepEqual(listed.map((l) => l.id), differ.map((d) => d.id));
  for (const [i, d] of differ.entries()) {
    for (const s of [...d.missed, ...d.spurious]) assert.ok(listed[i].text.includes(`${s.label} “${s.text}”`), `${listed[i].text} lacks ${s.label} ${s.text}`);
  }
  assert.match(await page.textContent('#eval-docs-summary'), new RegExp(`${differ.length ? differ.length : 'All 3'} .*documents`));
  await shoot(page, 'evaluate', 'section[aria-labelledby=eval-h]');
});

await check('on a 3 KB text the extraction bar moves before the first window ends, and says the time left', async () => {
  const text = 'Hi team, Maria Lopez (maria.lopez@example.com, +44 20 7946 0018) asked Peter Novak from Leeds for the contract by 5 March 2024. '.repeat(24);
  assert.ok(text.length > 3000 && text.length < 3300);
  await page.evaluate(() => {
    window.extractSteps = [];
    const bar = document.querySelector('[data-testid=extract-progress]');
    const status = document.querySelector('[data-testid=extract-status]');
    window.extractObserver = new MutationObserver(() => window.extractSteps.push([bar.value, status.textContent]));
    window.extractObserver.observe(bar, { attributes: true, attributeFilter: ['value'] });
    delete status.dataset.done;
  });
  await page.fill('[data-testid=text-input]', text);
  await page.click('[data-testid=extract]');
  await page.waitForSelector('[data-testid=extract-status][data-done=true]', { timeout: 600_000 });
  const steps = await page.evaluate(() => { window.extractObserver.disconnect(); return window.extractSteps; });
  const values = steps.map(([v]) => v);
  assert.deepEqual(values, [...values].sort((a, b) => a - b), 'the extraction bar went back');
  const early = steps.filter(([v, t]) => v > 0 && /^Extracting… 0 of \d+ windows done · .* · about \d+ s left$/.test(t));
  console.log(`     ${steps.length} steps; first moved: ${JSON.stringify(early[0])}`);
  assert.ok(early.length > 0, `no move before the first window ended: ${JSON.stringify(steps.slice(0, 4))}`);
});

await check('empty text finds nothing; a 1 MB paste shows progress, keeps the page responsive and cancels', async () => {
  await page.fill('[data-testid=text-input]', '   ');
  await page.click('[data-testid=extract]');
  await page.waitForSelector('[data-testid=extract-status][data-done=true]');
  assert.match(await page.textContent('[data-testid=extract-status]'), /^0 entities in/);
  await page.fill('[data-testid=text-input]', 'Maria Lopez wrote to Peter from Leeds. '.repeat(27000));
  await page.click('[data-testid=extract]');
  // Windows done of all, the entities so far and the time left.
  await page.waitForFunction(() => /\d+ of \d+ windows done · \d+ entit(y|ies) so far · about \d+ s left/.test(document.querySelector('[data-testid=extract-status]').textContent), null, { timeout: 120_000 });
  assert.ok(await page.isVisible('[data-testid=extract-progress]'), 'no progress bar while extracting');
  const t0 = Date.now();
  await page.selectOption('[data-testid=filter]', ''); // the page still answers while the worker works
  assert.ok(Date.now() - t0 < 2000, 'the page did not respond while extracting');
  await page.click('[data-testid=cancel]');
  await page.waitForSelector('[data-testid=extract-status][data-done=cancelled]', { timeout: 120_000 });
  // A cancelled extraction redacts nothing: the text it did not read would stay as it was.
  assert.equal(await page.textContent('[data-testid=redacted]'), '');
  await page.fill('[data-testid=text-input]', 'x'.repeat(3 << 20));
  await page.click('[data-testid=extract]');
  await page.waitForFunction(() => /input_too_large/.test(document.querySelector('[data-testid=error]').textContent));
});

await check('the shipped adapter is on by default, and switching it off makes extraction worse', async () => {
  assert.ok(await page.isChecked('[data-testid=adapter-toggle]'), 'the adapter is not applied');
  const evaluate = async () => {
    await page.evaluate(() => { delete document.querySelector('[data-testid=eval-status]').dataset.done; });
    await page.setInputFiles('[data-testid=gold-file]', direction);
    await page.click('[data-testid=evaluate]');
    await page.waitForSelector('[data-testid=eval-status][data-done=true]', { timeout: 600_000 });
    return Number(await page.getAttribute('[data-testid=eval-status]', 'data-micro-f1'));
  };
  await page.selectOption('[data-testid=preset]', 'conll');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=schema-row]').length === 4);
  const tuned = await evaluate();
  await page.uncheck('[data-testid=adapter-toggle]');
  await page.waitForFunction(() => !document.querySelector('[data-testid=adapter-toggle]').checked);
  const base = await evaluate();
  await page.check('[data-testid=adapter-toggle]');
  await page.waitForFunction(() => document.querySelector('[data-testid=adapter-toggle]').checked);
  console.log(`     strict micro-F1 on adapter_direction.jsonl: fine-tuned ${tuned}, base ${base}`);
  assert.ok(tuned >= base + 0.2, `fine-tuned ${tuned} vs base ${base}`);
  await page.selectOption('[data-testid=preset]', 'pii');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=schema-row]').length === 17);
});

await check('a model that is not a GGUF and a URL that 404s are refused, and the default loads again', async () => {
  await page.setInputFiles('[data-testid=model-file]', { name: 'notes.gguf', mimeType: 'application/octet-stream', buffer: Buffer.from('hello, not a model') });
  await page.waitForFunction(() => /not_gguf/.test(document.querySelector('[data-testid=error]').textContent));
  assert.equal(await modelState(page), 'error');
  await page.click('details summary');
  await page.fill('[data-testid=model-url]', 'models/missing.gguf');
  await page.click('[data-testid=model-url-load]');
  await page.waitForFunction(() => /fetch_failed/.test(document.querySelector('[data-testid=error]').textContent));
  await page.reload();
  assert.equal(await modelState(page), 'ready');
});

await check('the embedded widget redacts in a plain page', async () => {
  const w = await context.newPage();
  w.on('pageerror', (e) => problems.push(String(e)));
  await w.goto(new URL('embed.html', url).href);
  await w.waitForFunction(() => {
    const el = document.querySelector('anote-extractor');
    return el?.shadowRoot && !el.shadowRoot.querySelector('[data-testid=widget-extract]').disabled;
  }, null, { timeout: 600_000 });
  await w.fill('anote-extractor >> [data-testid=widget-input]', 'Send it to ahmed.khan@example.com today.');
  await w.click('anote-extractor >> [data-testid=widget-extract]');
  await w.waitForFunction(() => /EMAIL_ADDRESS/.test(document.querySelector('anote-extractor').shadowRoot.querySelector('[data-testid=widget-output]').textContent), null, { timeout: 600_000 });
  assert.ok(!(await w.textContent('anote-extractor >> [data-testid=widget-output]')).includes('ahmed.khan'));
  await shoot(w, 'widget', null);
  // Labels as people write them, as in the CLI's test of the same sentence.
  const text = 'Maria Lopez was born on 12 March 1984; write to maria.lopez@example.com.';
  await w.evaluate((text) => {
    const el = document.querySelector('anote-extractor');
    el.setAttribute('schema', JSON.stringify({ labels: [
      { label: 'date of birth', description: 'the day a person was born' },
      { label: 'Person Name', description: "a person's name" },
      { label: 'e-mail address', recognizer: 'email' },
    ] }));
    window.__found = new Promise((done) => el.addEventListener('entities', (e) => done(e.detail.map((x) => [x.label, text.slice(x.start, x.end)])), { once: true }));
  }, text);
  await w.fill('anote-extractor >> [data-testid=widget-input]', text);
  await w.click('anote-extractor >> [data-testid=widget-extract]');
  const found = await w.evaluate(() => window.__found);
  assert.ok(found.some(([l, s]) => l === 'Person Name' && s === 'Maria Lopez'), JSON.stringify(found));
  assert.ok(found.some(([l, s]) => l === 'e-mail address' && s === 'maria.lopez@example.com'), JSON.stringify(found));
  assert.ok(found.every(([l]) => ['date of birth', 'Person Name', 'e-mail address'].includes(l)), JSON.stringify(found));
  const redacted = await w.textContent('anote-extractor >> [data-testid=widget-output]');
  assert.ok(!redacted.includes('Maria Lopez') && !redacted.includes('maria.lopez'), redacted);
  await w.close();
});

await check('offline after one visit: the app, the engine and the model work with no network', async () => {
  const fresh = await browser.newContext();
  try {
    const p = await fresh.newPage();
    p.on('pageerror', (e) => problems.push(String(e)));
    await p.goto(`${url}?threads=2`); // the threaded build, its thread pool's scripts included
    assert.equal(await modelState(p), 'ready', await p.textContent('[data-testid=error]'));
    await p.evaluate(() => navigator.serviceWorker.ready); // installed: the shell is cached
    await fresh.setOffline(true);
    await p.reload();
    assert.equal(await modelState(p), 'ready', await p.textContent('[data-testid=error]'));
    assert.equal(await p.getAttribute('[data-testid=backend]', 'data-threads'), '2');
    await p.selectOption('[data-testid=preset]', 'pii');
    await p.waitForFunction(() => document.querySelectorAll('[data-testid=schema-row]').length === 17);
    await p.fill('[data-testid=text-input]', 'Offline, write to ahmed.khan@example.com.');
    await p.click('[data-testid=extract]');
    await p.waitForSelector('[data-testid=extract-status][data-done=true]', { timeout: 600_000 });
    assert.ok(await p.$('[data-testid=entity][data-label=EMAIL_ADDRESS]'));
  } finally {
    await fresh.close();
  }
});

await check('only the schema and the redaction key are stored: localStorage, Cache Storage the app shell, OPFS the model files and the newest schema prompts\' caches', async () => {
  const stored = await page.evaluate(async () => {
    const opfs = [];
    for await (const [name, entry] of (await navigator.storage.getDirectory()).entries()) {
      if (entry.kind === 'file') opfs.push(name);
      else for await (const file of entry.keys()) opfs.push(`${name}/${decodeURIComponent(file)}`);
    }
    return {
      local: Object.keys(localStorage),
      caches: await caches.keys(),
      cached: (await Promise.all((await caches.keys()).map(async (k) => (await (await caches.open(k)).keys()).map((r) => new URL(r.url).pathname)))).flat(),
      opfs,
    };
  });
  assert.deepEqual(stored.local.sort(), ['anote-key-v1', 'anote-schema-v1']);
  assert.equal(stored.caches.length, 1);
  assert.match(stored.caches[0], /^anote-shell-[0-9a-f]{16}$/);
  for (const p of stored.cached) assert.ok(!/ahmed|Offline/.test(p), `cached ${p}`);
  // The default model and its adapter, complete (no `.part` left), under their URLs.
  const prompts = stored.opfs.filter((p) => p.startsWith('anote-prompts-v1/'));
  assert.deepEqual(stored.opfs.filter((p) => !prompts.includes(p)).map((p) => p.replace(/\/\/[^/]+\//, '//HOST/')).sort(),
    ['anote-models-v1/http://HOST/models/anote-ner-lora.safetensors', 'anote-models-v1/http://HOST/models/gemma-3-270m-q4_k_m.gguf']);
  // Named by their prompt keys (hashes, never text), complete, the newest four at most.
  assert.ok(prompts.length >= 1 && prompts.length <= 4, prompts.join(', '));
  for (const p of prompts) assert.match(p, /^anote-prompts-v1\/[0-9a-f]{64}$/);
});

await check('the simd128 CPU matrix kernels (Q8, Q4_K, Q6_K) match their f32 references', async () => {
  const r = await page.evaluate(async () => {
    const { AnoteClient } = await import('./anote.js');
    const c = new AnoteClient();
    try { return await c.checkCpuKernels(); } finally { c.worker.terminate(); }
  });
  console.log(`     ${r.map(([c, d]) => `${c}: ${d.toExponential(1)}`).join('; ')}`);
  assert.equal(r.length, 10);
  assert.deepEqual(r.filter(([, d]) => !(d <= 1e-5)), []);
});

// ---- WebGPU: SwiftShader, the software adapter Chromium has here (slow, so short runs) ----

await check('every WebGPU kernel matches its CPU twin on the browser adapter', async () => {
  const r = await page.evaluate(async () => {
    const { AnoteClient } = await import('./anote.js');
    const c = new AnoteClient();
    try { return await c.checkKernels(); } finally { c.worker.terminate(); }
  });
  console.log(`     adapter: ${r.adapter}; largest relative difference ${Math.max(...r.checks.map((c) => c.max_rel_diff)).toExponential(1)}`);
  assert.deepEqual(r.checks.filter((c) => !(c.max_rel_diff <= c.tolerance)), []);
  assert.equal(r.checks.length, 31);
});

await check('asked for WebGPU, the page runs on it and generates the native greedy tokens', async () => {
  const g = await context.newPage();
  g.on('pageerror', (e) => problems.push(String(e)));
  await g.goto(`${url}?backend=webgpu`);
  assert.equal(await modelState(g), 'ready', await g.textContent('[data-testid=error]'));
  assert.equal(await g.getAttribute('[data-testid=backend]', 'data-backend'), 'webgpu');
  assert.equal(await g.textContent('[data-testid=backend]'), 'WebGPU');
  await useAdapter(g, false);
  const r = await generateInPage(g, prompt, native.tokens.length);
  console.log(`     webgpu: ${JSON.stringify(r.text)} · ${r.stats}`);
  assert.deepEqual(r.tokens, native.tokens);
  await g.close();
});

await check('a WebGPU kernel that does not compile: the page falls back to the CPU and says why', async () => {
  const g = await context.newPage();
  await g.goto(`${url}?backend=webgpu-broken`);
  assert.equal(await modelState(g), 'ready');
  assert.equal(await g.getAttribute('[data-testid=backend]', 'data-backend'), 'cpu');
  assert.match(await g.getAttribute('[data-testid=backend]', 'title'), /did not compile/);
  await g.close();
});

await check('a browser without WebGPU runs on the CPU and says why', async () => {
  const plain = await launch({ webgpu: false });
  try {
    const g = await plain.newPage();
    await g.goto(url);
    assert.equal(await modelState(g), 'ready');
    assert.equal(await g.getAttribute('[data-testid=backend]', 'data-backend'), 'cpu');
    assert.match(await g.getAttribute('[data-testid=backend]', 'title'), /no WebGPU/);
  } finally {
    await plain.close();
  }
});

// A short e-mail of several windows, with PII of most kinds.
const EMAIL = 'Hi Daniel,\n\nTomasz Kowalczyk confirmed that order NB-44871 left Leeds on Monday. Call him on '
  + '+44 113 496 0721.\n\nInvoices now go to Meridian Health Partners, 5 Castle Street, Winchester SO23 8UJ, for '
  + 'Mr. George Patel in Finance.\n\nBest regards,\nSarah Whitfield\nNorthbridge Logistics Ltd';

// `EMAIL` extracted in page `p` by a new client of `threads` threads, one run per batch size.
const extractEmail = (p, threads, batches) => p.evaluate(async ({ text, threads, batches }) => {
  const { AnoteClient } = await import('./anote.js');
  const c = new AnoteClient({ threads });
  const ready = await c.load(new URL('models/gemma-3-270m-q4_k_m.gguf', location.href).href);
  const schema = await (await fetch('presets/pii.json')).json();
  const runs = [];
  for (const batch of batches) {
    const x = await c.extract(text, schema, undefined, undefined, { batch });
    runs.push({ windows: x.windows.length, spans: x.entities.map((e) => [e.label, e.start, e.end, e.score.toFixed(4)]) });
  }
  c.worker.terminate();
  return { threads: ready.threads, isolated: crossOriginIsolated, runs };
}, { text: EMAIL, threads, batches });

await check('windows decoded together find what one window at a time finds', async () => {
  const { runs: [alone, together] } = await extractEmail(page, 1, [1, 8]);
  assert.ok(alone.windows >= 4, `${alone.windows} windows`);
  assert.ok(alone.spans.length >= 6, JSON.stringify(alone.spans));
  assert.deepEqual(together.spans, alone.spans);
});

await check('two threads find what one finds; served without COOP/COEP the page runs one thread, says why, and finds the same', async () => {
  const one = await extractEmail(page, 1, [8]);
  const two = await extractEmail(page, 2, [8]);
  assert.deepEqual(two.threads.count, 2);
  assert.deepEqual(two.runs, one.runs);
  const p = await context.newPage();
  try {
    await p.goto(`${notIsolated}?threads=2`);
    assert.equal(await modelState(p), 'ready', await p.textContent('[data-testid=error]'));
    assert.equal(await p.getAttribute('[data-testid=backend]', 'data-threads'), '1');
    assert.match(await p.getAttribute('[data-testid=backend]', 'title'), /one thread: threads need a cross-origin isolated page/);
    const fallback = await extractEmail(p, 2, [8]);
    assert.equal(fallback.isolated, false);
    assert.equal(fallback.threads.count, 1);
    assert.deepEqual(fallback.runs, one.runs);
  } finally {
    await p.close();
  }
});

await check('served by nginx with deploy/nginx/anote.conf: the headers the page needs, and it extracts on two threads', async () => {
  const nginx = process.env.ANOTE_NGINX_URL;
  const at = (path) => new URL(path, nginx);
  const csp = (await (await fetch(url)).text()).match(/http-equiv="Content-Security-Policy"\s+content="([^"]+)"/)[1];
  const model = 'models/gemma-3-270m-q4_k_m.gguf';
  for (const path of ['', 'sw.js', 'pkg/anote_ner_bg.wasm', 'pkg-threads/anote_ner_bg.wasm', 'presets/pii.json', model]) {
    const r = await fetch(at(path), { method: 'HEAD' });
    assert.equal(r.status, 200, path);
    for (const [name, value] of [['cross-origin-opener-policy', 'same-origin'], ['cross-origin-embedder-policy', 'require-corp'],
      ['cross-origin-resource-policy', 'same-origin'], ['content-security-policy', csp], ['x-content-type-options', 'nosniff']]) {
      assert.equal(r.headers.get(name), value, `${name} of /${path}`);
    }
    assert.equal(r.headers.get('cache-control'), path === model ? 'public, max-age=604800' : 'no-cache', `/${path}`);
  }
  assert.equal((await fetch(at('pkg/anote_ner_bg.wasm'), { method: 'HEAD' })).headers.get('content-type'), 'application/wasm');
  assert.match((await fetch(at(''), { method: 'HEAD' })).headers.get('content-type'), /^text\/html; charset=utf-8/);
  const gz = { 'accept-encoding': 'gzip' };
  assert.equal((await fetch(at('app.js'), { headers: gz })).headers.get('content-encoding'), 'gzip');
  const part = await fetch(at(model), { headers: { ...gz, range: 'bytes=0-3' } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-encoding'), null, 'the weights are not compressed');
  assert.equal(new TextDecoder().decode(await part.arrayBuffer()), 'GGUF');

  const p = await browser.newPage();
  const away = [];
  p.on('request', (r) => { if (new URL(r.url()).origin !== new URL(nginx).origin) away.push(r.url()); });
  await p.goto(`${nginx}?threads=2`); // the threaded build: its helper workers must pass the CSP
  assert.equal(await p.evaluate(() => crossOriginIsolated), true, 'not cross-origin isolated');
  assert.equal(await modelState(p), 'ready', await p.textContent('[data-testid=error]'));
  assert.equal(await p.getAttribute('[data-testid=backend]', 'data-threads'), '2');
  await p.fill('[data-testid=text-input]', 'Please call Ahmed Khan on +44 20 7946 0018.');
  await p.click('[data-testid=extract]');
  await p.waitForSelector('[data-testid=extract-status][data-done=true]');
  const found = await p.$$eval('[data-testid=entity]', (es) => es.map((e) => e.dataset.label));
  assert.ok(found.includes('PHONE_NUMBER') && found.includes('PERSON'), JSON.stringify(found));
  assert.deepEqual(away, []);
  await p.close();
});

await check('no request leaves the origin, and none carries user text', async () => {
  for (const r of requests) {
    assert.equal(new URL(r.url()).origin, origin, `request to ${r.url()}`);
    for (const secret of ['France', 'ahmed', 'onerror', 'Olga', 'Offline']) {
      const carried = [r.url(), r.postData() ?? '', JSON.stringify(r.headers())].some((part) => part.includes(secret));
      assert.ok(!carried, `user text (${secret}) in a request to ${r.url()}`);
    }
  }
  assert.deepEqual(problems, []);
});

await browser.close();
if (failures) {
  console.log(`${failures} browser check(s) failed`);
  process.exit(1);
}
console.log('all browser checks passed');
