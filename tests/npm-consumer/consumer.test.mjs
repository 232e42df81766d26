// The packed npm package as web developers use it, in headless Chromium: an app built with
// Vite and a page with an import map (no bundler), each serving the model from its own
// origin. Each extracts an e-mail with exact offsets through the API on two threads (the
// threaded build, served cross-origin isolated) and shows entities
// through <anote-extractor>, styled by the package's stylesheet. Run by `cargo xtask test` after `cargo xtask pack`.
import assert from 'node:assert/strict';
import { launch } from '../browser/chromium.mjs';

const pages = JSON.parse(process.env.ANOTE_CONSUMER_PAGES); // [{name, url}]
const TEXT = 'Mail ana@example.com';
const WIDGET_TEXT = 'Please write to ahmed.khan@example.com today.';

const browser = await launch({ webgpu: false });
let failed = 0;
try {
  for (const { name, url } of pages) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const requests = [];
    page.on('request', (r) => requests.push(r));
    const problems = [];
    page.on('pageerror', (e) => problems.push(String(e)));
    try {
      await page.goto(url);
      const { adapter, threads, entities } = await page.evaluate((t) => window.extractEmail(t), TEXT);
      assert.ok(adapter, 'the adapter in the package was not applied');
      assert.equal(threads.count, 2, threads.why);
      const email = entities.find((e) => e.label === 'EMAIL_ADDRESS');
      assert.ok(email, `no e-mail among ${JSON.stringify(entities)}`);
      assert.deepEqual({ start: email.start, end: email.end, text: email.text }, { start: 5, end: 20, text: 'ana@example.com' });

      await page.waitForFunction(() => {
        const el = document.querySelector('anote-extractor');
        return el?.shadowRoot && !el.shadowRoot.querySelector('[data-testid=widget-extract]').disabled;
      }, null, { timeout: 600_000 });
      await page.fill('anote-extractor >> [data-testid=widget-input]', WIDGET_TEXT);
      await page.click('anote-extractor >> [data-testid=widget-extract]');
      await page.waitForFunction(() => document.querySelector('anote-extractor').shadowRoot
        .querySelector('[data-testid=widget-output] mark'), null, { timeout: 600_000 });
      const marked = await page.$$eval('anote-extractor >> [data-testid=widget-output] mark', (ms) => ms.map((m) => m.textContent));
      assert.ok(marked.some((m) => m.includes('ahmed.khan@example.com')), `highlights: ${marked}`);
      // The widget's stylesheet came from the package.
      const rules = await page.evaluate(() => document.querySelector('anote-extractor').shadowRoot
        .querySelector('link[rel=stylesheet]').sheet?.cssRules.length ?? 0);
      assert.ok(rules > 0, 'widget.css did not load');

      const origin = new URL(url).origin;
      const foreign = requests.filter((r) => !r.url().startsWith(origin) && !r.url().startsWith('blob:'));
      assert.deepEqual(foreign.map((r) => r.url()), [], 'requests to other origins');
      for (const r of requests) {
        const sent = `${r.url()} ${r.postData() ?? ''}`;
        assert.ok(!sent.includes('ahmed.khan') && !sent.includes('ana@example'), `a request carries the text: ${r.url()}`);
      }
      assert.deepEqual(problems, []);
      console.log(`ok   ${name}: e-mail at 5–20 on ${threads.count} threads, the widget highlights ${marked.length} entities, ${requests.length} requests, all same-origin`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}: ${e.stack ?? e}`);
    } finally {
      await context.close();
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
