// The device's data, in IndexedDB: the ONLY module that touches it (the web twin of sync/replica.py).
// Stores: meta (token, client_id, cursor, next mutation id, settings), records (the replica: what the
// server last sent, keyed [entity, id]), outbox (this install's mutations not yet acknowledged, by
// mutation id), problems (rejected or conflicting results, until the user dismisses or fixes them) and
// docs (read-API documents: the itinerary with its ETag, the change list).

const DB_NAME = "studyvisit";
const DB_VERSION = 1;

/** @typedef {{entity: string, id: string, version: number, data: any}} Row */
/** @typedef {{id: number, type: string, client_time: string, args: Record<string, any>}} Mutation */
/** @typedef {{id: number, status: string, version?: number, entity_id?: string, error?: any, conflicts?: string[], mutation?: Mutation}} Problem */

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
      request.onupgradeneeded = () => {
        const d = request.result;
        d.createObjectStore("meta");
        d.createObjectStore("records", { keyPath: ["entity", "id"] }).createIndex("entity", "entity");
        d.createObjectStore("outbox", { keyPath: "id" });
        d.createObjectStore("problems", { keyPath: "id" });
        d.createObjectStore("docs");
      };
      request.onsuccess = () => resolve(request.result);
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
 * With `replace`, the replica is emptied first (the end of a full pull, applied whole).
 * @param {{entity: string, id: string, op: string, version: number, data: any}[]} changes
 * @param {string} cursor @param {boolean} replace */
export async function applyPull(changes, cursor, replace) {
  const tx = (await db()).transaction(["records", "meta"], "readwrite");
  const rows = tx.objectStore("records");
  if (replace) rows.clear();
  for (const change of changes) {
    if (change.op === "delete") rows.delete([change.entity, change.id]);
    else rows.put({ entity: change.entity, id: change.id, version: change.version, data: change.data });
  }
  tx.objectStore("meta").put(cursor, "cursor");
  await committed(tx);
}

/** Queue a mutation with the next mutation id; resolves once it is durable (the user's action is
 * confirmed only then). `fixes`: the id of the problem this mutation corrects, dropped in the same
 * transaction (a crash never leaves the fix queued and the problem still listed, or neither).
 * @param {string} type @param {Record<string, any>} args @param {number} [fixes] @returns {Promise<Mutation>} */
export async function enqueue(type, args, fixes) {
  const tx = (await db()).transaction(["meta", "outbox", "problems"], "readwrite");
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
 * hand out a mutation id at or below what the server has processed.
 * @param {number} lastId @param {Problem[]} problems */
export async function acknowledge(lastId, problems) {
  const tx = (await db()).transaction(["outbox", "problems", "meta"], "readwrite");
  for (const problem of problems) tx.objectStore("problems").put(problem);
  tx.objectStore("outbox").delete(IDBKeyRange.upperBound(lastId));
  const meta = tx.objectStore("meta");
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
