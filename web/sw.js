// The service worker: the app shell, cache-first, so the app opens with the network off; and the map
// tiles seen online, so the map has them offline. It never caches API responses (one account's data
// lives in IndexedDB, wiped at sign-out), and nothing else from another host. The server fills in
// SHELL: the shell's files, their content hash and the tile URL template ("" for no tiles).

/** @type {{version: string, files: string[], tiles: string}} */
const SHELL = /** @type {any} */ ("__SHELL_MANIFEST__");
const CACHE = `shell-${SHELL.version}`;
// Tiles outlive shell versions (they do not change with the app); sign-out deletes them (main.js).
const TILES = "tiles";
// About 2,000 tiles of ~20 KB: some 40 MB, a few days of a city's streets at walking zooms.
const MAX_TILES = 2000;
const scope = /** @type {any} */ (self).registration.scope;

/** Which URLs are tiles of the template: {z}, {x}, {y} (or {-y}) numbers, {s} a subdomain, {r} "" or "@2x".
 * A template starting with "/" is on this server. @param {string} template @returns {RegExp | null} */
function tilePattern(template) {
  if (!template) return null;
  const absolute = template.startsWith("/") && !template.startsWith("//") ? location.origin + template : template;
  const source = absolute
    .split(/(\{-?[a-z]+\})/)
    .map((p) => {
      if (p === "{s}") return "[a-z0-9-]+";
      if (p === "{r}") return "(?:@2x)?";
      if (/^\{-?[a-z]+\}$/.test(p)) return "-?\\d+";
      return p.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    })
    .join("");
  return new RegExp(`^${source}$`);
}
const TILE = tilePattern(SHELL.tiles);

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

let trimming = Promise.resolve();

/** Drop the oldest tiles past MAX_TILES (Cache.keys lists entries in the order they were stored). */
function trimTiles() {
  trimming = trimming
    .then(async () => {
      const cache = await caches.open(TILES);
      const keys = await cache.keys();
      await Promise.all(keys.slice(0, Math.max(0, keys.length - MAX_TILES)).map((k) => cache.delete(k)));
    })
    .catch(() => undefined);
  return trimming;
}

/** A tile: from the cache when it was seen before (tiles barely change during an event), else from the
 * network, kept when it came back whole. Only CORS responses are kept: the map asks for tiles with
 * crossOrigin, and an opaque response's size and status cannot be known (it could be an error page).
 * @param {any} e the fetch event @param {Request} request */
async function tile(e, request) {
  const cache = await caches.open(TILES);
  const hit = await cache.match(request.url);
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok && response.type === "cors") {
    e.waitUntil(cache.put(request.url, response.clone()).then(trimTiles));
  }
  return response;
}

self.addEventListener("fetch", (event) => {
  const e = /** @type {any} */ (event);
  const request = /** @type {Request} */ (e.request);
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (TILE && TILE.test(url.href)) {
    e.respondWith(tile(e, request));
    return;
  }
  // Otherwise only the shell: GETs under the app's scope. The API (and everything else) goes to the network.
  if (url.origin !== location.origin || !url.href.startsWith(scope)) return;
  // A navigation to /app/ (with any fragment or query) is the shell's index.
  const key = request.mode === "navigate" ? new URL(scope) : new URL(url.pathname, url.origin);
  e.respondWith(
    caches.open(CACHE).then(async (cache) => (await cache.match(key.href)) || fetch(request)),
  );
});
