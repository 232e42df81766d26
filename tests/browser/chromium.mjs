// Headless Debian Chromium for the browser tests and the benchmark.
import { chromium } from 'playwright-core';

// No background networking: this machine has no internet, and Chromium's own requests
// would only fail (and make the privacy check noisy).
export const FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'];

/** Headless Chromium; `webgpu: false` leaves WebGPU off (Debian's build exposes it only
 *  with --enable-unsafe-webgpu, and then only SwiftShader, a software adapter); `profile`:
 *  a folder that keeps the pages' storage from one launch to the next. */
export async function launch({ webgpu = true, profile } = {}) {
  const args = webgpu ? FLAGS : FLAGS.filter((f) => f !== '--enable-unsafe-webgpu');
  const options = { executablePath: '/usr/bin/chromium', headless: true, args };
  // With a profile folder, a browser context that keeps what pages store there (OPFS) for
  // the next launch with it: a user's second visit. Both have newPage() and close().
  return profile ? chromium.launchPersistentContext(profile, options) : chromium.launch(options);
}

/** Waits until the page's model is ready (or failed); returns the status element's state. */
export async function modelState(page, timeout = 600_000) {
  await page.waitForSelector('[data-testid=model-status]:not([data-state=loading])', { timeout });
  return page.getAttribute('[data-testid=model-status]', 'data-state');
}

/** Runs one generation through the page's UI; returns {tokens, text, stats}. */
export async function generateInPage(page, prompt, maxTokens) {
  await page.fill('[data-testid=prompt]', prompt);
  await page.fill('[data-testid=max-tokens]', String(maxTokens));
  await page.evaluate(() => { delete document.querySelector('[data-testid=stats]').dataset.done; });
  await page.click('[data-testid=generate]');
  await page.waitForSelector('[data-testid=stats][data-done=true], [data-testid=error]:not(:empty)', { timeout: 600_000 });
  const error = await page.textContent('[data-testid=error]');
  if (error) throw new Error(`generation failed in the page: ${error}`);
  return page.evaluate(() => {
    const out = document.querySelector('[data-testid=output]');
    return { tokens: out.dataset.tokens.split(' ').map(Number), text: out.textContent, stats: document.querySelector('[data-testid=stats]').textContent };
  });
}
