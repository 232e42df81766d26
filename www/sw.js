// The service worker: keeps the app shell (page, scripts, wasm, presets) for offline use.
// Network first, so a new build is picked up at once; the cache answers only when the
// network cannot. The model and adapter are not its business: the engine worker keeps
// them in the origin private file system ('anote-models-v1') itself.
const SHELL = 'anote-shell-v1';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

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
