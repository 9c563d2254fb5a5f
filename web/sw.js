// The service worker: the app shell, cache-first, so the app opens with the network off.
// It never caches API responses (one account's data lives in IndexedDB, wiped at sign-out), and
// nothing from another host. The server fills in SHELL: the shell's files and their content hash.

/** @type {{version: string, files: string[]}} */
const SHELL = /** @type {any} */ ("__SHELL_MANIFEST__");
const CACHE = `shell-${SHELL.version}`;
const scope = /** @type {any} */ (self).registration.scope;

self.addEventListener("install", (event) => {
  const e = /** @type {any} */ (event);
  e.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL.files.map((f) => new Request(new URL(f, scope), { cache: "reload" }))))
      .then(() => /** @type {any} */ (self).skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  const e = /** @type {any} */ (event);
  e.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("shell-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => /** @type {any} */ (self).clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const e = /** @type {any} */ (event);
  const request = /** @type {Request} */ (e.request);
  const url = new URL(request.url);
  // Only the shell: GETs under the app's scope. The API (and everything else) goes to the network.
  if (request.method !== "GET" || url.origin !== location.origin || !url.href.startsWith(scope)) return;
  // A navigation to /app/ (with any fragment or query) is the shell's index.
  const key = request.mode === "navigate" ? new URL(scope) : new URL(url.pathname, url.origin);
  e.respondWith(
    caches.open(CACHE).then(async (cache) => (await cache.match(key.href)) || fetch(request)),
  );
});
