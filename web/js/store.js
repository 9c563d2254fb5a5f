// The device's data, in IndexedDB: the ONLY module that touches it (the web twin of sync/replica.py).
// Stores: meta (token, client_id, cursor, next mutation id, settings), records (the replica: what the
// server last sent, keyed [entity, id]), outbox (this install's mutations not yet acknowledged, by
// mutation id), problems (rejected or conflicting results, until the user dismisses or fixes them) and
// docs (read-API documents: the itinerary with its ETag, the change list). Since version 2, photos: the
// bytes of photos attached on this phone until the server holds them (then kept for display, as a
// bounded cache), and of photos fetched from the server for display, by SHA-256.

const DB_NAME = "studyvisit";
const DB_VERSION = 2;
/** Photos the server holds are kept on the phone up to this many bytes (least recently shown go first);
 * photos not uploaded yet are never evicted. */
export const PHOTO_CACHE_BYTES = 50 * 1024 * 1024;

/** @typedef {{entity: string, id: string, version: number, data: any}} Row */
/** @typedef {{id: number, type: string, client_time: string, args: Record<string, any>}} Mutation */
/** @typedef {{id: number, status: string, version?: number, entity_id?: string, error?: any, conflicts?: string[], mutation?: Mutation}} Problem */
/** A photo's bytes on this phone. `state`: "pending" (attached here, not on the server yet: never
 * evicted), "uploaded" (the server holds it), "fetched" (downloaded for display; `preview`: a downsized
 * copy), "refused" (the server will not take it: `error` says why).
 * @typedef {{sha256: string, blob: Blob, media_type: string, bytes: number, note_id: string | null,
 *   state: "pending" | "uploaded" | "fetched" | "refused", preview?: boolean, error?: any, used_at: number}} Photo */

/** @type {Promise<IDBDatabase> | null} */
let opening = null;
// Set by a sign-out's wipe: a sync still running must not reopen (and so re-create) the database,
// which would also hold the deletion up until this page closes.
let signedOut = false;

/** @template T @param {IDBRequest<T>} request @returns {Promise<T>} */
function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** @param {IDBTransaction} tx @returns {Promise<void>} */
function committed(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
  });
}

/** @returns {Promise<IDBDatabase>} */
function db() {
  if (signedOut) return Promise.reject(new Error("signed out"));
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, DB_VERSION);
      request.onupgradeneeded = (event) => {
        const d = request.result;
        // Each step from the version the phone has: an upgrade keeps every store it does not name.
        if (event.oldVersion < 1) {
          d.createObjectStore("meta");
          d.createObjectStore("records", { keyPath: ["entity", "id"] }).createIndex("entity", "entity");
          d.createObjectStore("outbox", { keyPath: "id" });
          d.createObjectStore("problems", { keyPath: "id" });
          d.createObjectStore("docs");
        }
        if (event.oldVersion < 2) {
          d.createObjectStore("photos", { keyPath: "sha256" }).createIndex("state", "state");
        }
      };
      // Another tab of a newer version wants to upgrade: let it (this page reopens on its next use).
      request.onsuccess = () => {
        request.result.onversionchange = () => {
          request.result.close();
          opening = null;
        };
        resolve(request.result);
      };
      request.onerror = () => reject(request.error);
    });
  }
  return opening;
}

/** @param {string} key @returns {Promise<any>} */
export async function getMeta(key) {
  return done((await db()).transaction("meta").objectStore("meta").get(key));
}

/** @param {string} key @param {any} value */
export async function setMeta(key, value) {
  const tx = (await db()).transaction("meta", "readwrite");
  tx.objectStore("meta").put(value, key);
  await committed(tx);
}

/** Keep the token (never anywhere but here) and make this install's client id, once.
 * A different account's token on the same device first wipes the other account's data.
 * @param {string} token */
export async function signIn(token) {
  const current = await getMeta("token");
  if (current && current !== token) await wipe();
  const tx = (await db()).transaction("meta", "readwrite");
  const meta = tx.objectStore("meta");
  meta.put(token, "token");
  const clientId = await done(meta.get("client_id"));
  if (!clientId) meta.put(crypto.randomUUID(), "client_id");
  await committed(tx);
}

/** @param {string} entity @returns {Promise<Row[]>} */
export async function records(entity) {
  const index = (await db()).transaction("records").objectStore("records").index("entity");
  return done(index.getAll(entity));
}

/** @param {string} entity @param {string} id @returns {Promise<Row | undefined>} */
export async function record(entity, id) {
  return done((await db()).transaction("records").objectStore("records").get([entity, id]));
}

/** One pulled page and the cursor after it, in one transaction: a crash never leaves them apart.
 * With `replace`, the replica is emptied first (the end of a full pull, applied whole). With `caughtUp`
 * (the pull's last page), the replica holds what every acknowledged mutation did: they are forgotten.
 * @param {{entity: string, id: string, op: string, version: number, data: any}[]} changes
 * @param {string} cursor @param {boolean} replace @param {boolean} [caughtUp] */
export async function applyPull(changes, cursor, replace, caughtUp = false) {
  const tx = (await db()).transaction(["records", "meta"], "readwrite");
  const rows = tx.objectStore("records");
  if (replace) rows.clear();
  for (const change of changes) {
    if (change.op === "delete") rows.delete([change.entity, change.id]);
    else rows.put({ entity: change.entity, id: change.id, version: change.version, data: change.data });
  }
  tx.objectStore("meta").put(cursor, "cursor");
  if (caughtUp) tx.objectStore("meta").delete("acked");
  await committed(tx);
}

/** What the screens show of one kind, read in one transaction (so never half-way through a push's
 * acknowledgement or a pulled page): the replica's rows, the mutations the server acknowledged that no
 * pull has brought back yet, and the outbox.
 * @param {string} entity @returns {Promise<{rows: Row[], acked: Mutation[], outbox: Mutation[]}>} */
export async function overlay(entity) {
  const tx = (await db()).transaction(["records", "meta", "outbox"]);
  const [rows, acked, queued] = await Promise.all([
    done(tx.objectStore("records").index("entity").getAll(entity)),
    done(tx.objectStore("meta").get("acked")),
    done(tx.objectStore("outbox").getAll()),
  ]);
  return { rows, acked: acked || [], outbox: queued };
}

/** Queue a mutation with the next mutation id; resolves once it is durable (the user's action is
 * confirmed only then). With `photo`, the photo's bytes are kept in the same transaction: a note never
 * names a photo this phone has lost, and a photo is never kept without its note. `fixes`: the id of the
 * problem this mutation corrects, dropped in the same transaction (a crash never leaves the fix queued
 * and the problem still listed, or neither).
 * @param {string} type @param {Record<string, any>} args
 * @param {{photo?: Photo, fixes?: number}} [with_] @returns {Promise<Mutation>} */
export async function enqueue(type, args, { photo, fixes } = {}) {
  const tx = (await db()).transaction(["meta", "outbox", "photos", "problems"], "readwrite");
  if (photo) tx.objectStore("photos").put(photo);
  const meta = tx.objectStore("meta");
  const next = (await done(meta.get("next_mutation_id"))) || 1;
  /** @type {Mutation} */
  const mutation = { id: next, type, client_time: new Date().toISOString(), args };
  meta.put(next + 1, "next_mutation_id");
  tx.objectStore("outbox").add(mutation);
  if (fixes !== undefined) tx.objectStore("problems").delete(fixes);
  await committed(tx);
  return mutation;
}

/** @returns {Promise<Mutation[]>} the outbox in mutation id order */
export async function outbox() {
  return done((await db()).transaction("outbox").objectStore("outbox").getAll());
}

/** After a push answered 200: keep the problems it reported, drop every entry up to lastId, and never
 * hand out a mutation id at or below what the server has processed. The ones that took effect stay
 * shown (`acked`, see overlay) until the pull after the push brings their records back, so a note just
 * pushed never vanishes from the screen meanwhile (as the Python client's replica keeps them).
 * @param {number} lastId @param {Problem[]} problems */
export async function acknowledge(lastId, problems) {
  const tx = (await db()).transaction(["outbox", "problems", "meta"], "readwrite");
  for (const problem of problems) tx.objectStore("problems").put(problem);
  const queued = tx.objectStore("outbox");
  const meta = tx.objectStore("meta");
  const refused = new Set(problems.filter((p) => p.status === "rejected").map((p) => p.id));
  /** @type {Mutation[]} */
  const processed = await done(queued.getAll(IDBKeyRange.upperBound(lastId)));
  const acked = (await done(meta.get("acked"))) || [];
  meta.put([...acked, ...processed.filter((m) => !refused.has(m.id))], "acked");
  queued.delete(IDBKeyRange.upperBound(lastId));
  const next = (await done(meta.get("next_mutation_id"))) || 1;
  if (next <= lastId) meta.put(lastId + 1, "next_mutation_id");
  await committed(tx);
}

/** @param {number} id @returns {Promise<Problem | undefined>} */
export async function problem(id) {
  return done((await db()).transaction("problems").objectStore("problems").get(id));
}

/** @returns {Promise<Problem[]>} */
export async function problems() {
  return done((await db()).transaction("problems").objectStore("problems").getAll());
}

/** @param {number} id */
export async function dismissProblem(id) {
  const tx = (await db()).transaction("problems", "readwrite");
  tx.objectStore("problems").delete(id);
  await committed(tx);
}

/** @param {string} key @returns {Promise<any>} */
export async function getDoc(key) {
  return done((await db()).transaction("docs").objectStore("docs").get(key));
}

/** @param {string} key @param {any} value */
export async function setDoc(key, value) {
  const tx = (await db()).transaction("docs", "readwrite");
  tx.objectStore("docs").put(value, key);
  await committed(tx);
}

/** @param {string} sha256 @returns {Promise<Photo | undefined>} */
export async function photo(sha256) {
  return done((await db()).transaction("photos").objectStore("photos").get(sha256));
}

/** The photos kept on this phone, in one state or all. @param {Photo["state"]} [state] @returns {Promise<Photo[]>} */
export async function photos(state) {
  const kept = (await db()).transaction("photos").objectStore("photos");
  return done(state ? kept.index("state").getAll(state) : kept.getAll());
}

/** How many photos wait to be uploaded. @returns {Promise<number>} */
export async function pendingPhotos() {
  return done((await db()).transaction("photos").objectStore("photos").index("state").count("pending"));
}

/** What the status line shows, read in one transaction: never a fix's problem gone while its mutation
 * is not queued yet. @returns {Promise<{last: string | undefined, waiting: number, problems: Problem[]}>} */
export async function backlog() {
  const tx = (await db()).transaction(["meta", "outbox", "photos", "problems"]);
  const [last, queued, photos, problems] = await Promise.all([
    done(tx.objectStore("meta").get("last_synced")),
    done(tx.objectStore("outbox").count()),
    done(tx.objectStore("photos").index("state").count("pending")),
    done(tx.objectStore("problems").getAll()),
  ]);
  return { last, waiting: queued + photos, problems }; // queued changes, and photos not uploaded yet
}

/** Change a kept photo's upload state (and error), if it is still kept.
 * @param {string} sha256 @param {Partial<Photo>} changes */
export async function updatePhoto(sha256, changes) {
  const tx = (await db()).transaction("photos", "readwrite");
  const kept = tx.objectStore("photos");
  const current = await done(kept.get(sha256));
  if (current) kept.put({ ...current, ...changes });
  await committed(tx);
}

/** Keep a photo fetched from the server (never over a photo of this phone's), then trim the cache.
 * @param {Photo} fetched @param {number} [limit] */
export async function keepFetched(fetched, limit = PHOTO_CACHE_BYTES) {
  const tx = (await db()).transaction("photos", "readwrite");
  const kept = tx.objectStore("photos");
  const current = await done(kept.get(fetched.sha256));
  if (!current || current.state === "fetched") kept.put(fetched);
  await trim(kept, limit, fetched.sha256);
  await committed(tx);
}

/** Drop the least recently shown photos the server holds past `limit` bytes; photos waiting for upload
 * (or refused) are never dropped, nor the one just kept.
 * @param {IDBObjectStore} kept @param {number} limit @param {string} [spare] */
async function trim(kept, limit, spare) {
  /** @type {Photo[]} */
  const all = await done(kept.getAll());
  const evictable = all.filter((p) => p.state === "uploaded" || p.state === "fetched").sort((a, b) => a.used_at - b.used_at);
  let total = evictable.reduce((sum, p) => sum + p.blob.size, 0);
  for (const p of evictable) {
    if (total <= limit) break;
    if (p.sha256 === spare) continue;
    kept.delete(p.sha256);
    total -= p.blob.size;
  }
}

/** After an upload: the server holds it, so the bytes become part of the bounded cache. @param {string} sha256 */
export async function photoUploaded(sha256) {
  const tx = (await db()).transaction("photos", "readwrite");
  const kept = tx.objectStore("photos");
  const current = await done(kept.get(sha256));
  if (current) kept.put({ ...current, state: "uploaded", error: undefined, used_at: Date.now() });
  await trim(kept, PHOTO_CACHE_BYTES, sha256);
  await committed(tx);
}

/** Forget photos (not attached to any note any more). @param {string[]} hashes */
export async function deletePhotos(hashes) {
  const tx = (await db()).transaction("photos", "readwrite");
  for (const sha256 of hashes) tx.objectStore("photos").delete(sha256);
  await committed(tx);
}

/** Delete everything this device holds: at sign-out (`final`: no more use on this page), or when
 * another account signs in. @param {boolean} [final] */
export async function wipe(final = false) {
  signedOut = final;
  if (opening) {
    (await opening).close();
    opening = null;
  }
  await new Promise((resolve, reject) => {
    const request = indexedDB.deleteDatabase(DB_NAME);
    request.onsuccess = () => resolve(undefined);
    request.onerror = () => reject(request.error);
    request.onblocked = () => resolve(undefined);
  });
}
