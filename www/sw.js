// The service worker: keeps the app shell (pages, scripts, styles, wasm, presets) for
// offline use. Installing it caches the whole shell that `pkg/shell.js` lists, so the page
// works offline after one visit; the cache is named after the build, and a new build's
// worker replaces the old cache whole. Network first, so a new build is picked up at
// once; the cache answers only when the network cannot. The model and adapter are not its
// business: the engine worker keeps them in the origin private file system
// ('anote-models-v1') when it loads them.
importScripts('pkg/shell.js');
const SHELL = `anote-shell-${self.ANOTE_BUILD}`;

self.addEventListener('install', (e) => e.waitUntil((async () => {
  const cache = await caches.open(SHELL);
  await cache.addAll(self.ANOTE_SHELL.map((f) => new Request(f, { cache: 'reload' })));
  await self.skipWaiting();
})()));

self.addEventListener('activate', (e) => e.waitUntil((async () => {
  for (const name of await caches.keys()) {
    if (name.startsWith('anote-shell-') && name !== SHELL) await caches.delete(name);
  }
  await self.clients.claim();
})()));

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== location.origin || url.pathname.startsWith('/models/')) return;
  e.respondWith((async () => {
    const cache = await caches.open(SHELL);
    try {
      const response = await fetch(e.request);
      if (response.ok) await cache.put(e.request, response.clone());
      return response;
    } catch (err) {
      const hit = await cache.match(e.request, { ignoreSearch: true });
      if (hit) return hit;
      throw err;
    }
  })());
});
