// Speaks sync protocol v1 exactly as docs/sync-protocol.md says (the twin of sync/client.py): push the
// outbox in order, then pull pages until has_more is false, keeping the cursor. It also refreshes the
// read-API documents the screens show (the account, the itinerary). The ONLY module that talks to the server.

import * as store from "./store.js";
import * as i18n from "./i18n.js";

export const PROTOCOL = 1;
const PUSH_BATCH = 200; // as the reference client: well under the server's 1,000 per request
const PAGE = 500;
const API = new URL("../api/v1/", location.href).href;

/** Why a sync stopped. `retry`: the network or the server (5xx, 429) failed; try again later. */
export class SyncError extends Error {
  /** @param {string} message @param {{status?: number, retry?: boolean}} [info] */
  constructor(message, info = {}) {
    super(message);
    this.status = info.status;
    this.retry = info.retry ?? true;
  }
}

/** A request to the API (a path under /api/v1/) with the account's token. Screens that work only online
 * (the organizers') use it too; a network failure, 5xx or 429 throws a retryable SyncError.
 * @param {string} path @param {RequestInit} [init] */
export async function call(path, init = {}) {
  const token = await store.getMeta("token");
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${token}`);
  headers.set("Accept", "application/json");
  let response;
  try {
    response = await fetch(API + path, { ...init, headers, cache: "no-store", credentials: "omit" });
  } catch (error) {
    throw new SyncError(`network: ${error}`);
  }
  if (response.status >= 500 || response.status === 429) {
    throw new SyncError(`server answered ${response.status}`, { status: response.status });
  }
  return response;
}

/** The problem's detail (RFC 9457) of a failed answer, for the user. @param {Response} response */
export async function problemOf(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

/** SHA-256 of each "{id}:{version}", first 8 bytes big-endian, summed modulo 2^64, 16 hex digits (§5).
 * @param {{id: string, version: number}[]} rows */
export async function checksum(rows) {
  let sum = 0n;
  const mask = (1n << 64n) - 1n;
  for (const row of rows) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${row.id}:${row.version}`));
    sum = (sum + new DataView(digest).getBigUint64(0, false)) & mask;
  }
  return sum.toString(16).padStart(16, "0");
}

/** The account (GET /api/v1/me), kept for offline use. */
async function refreshMe() {
  const response = await call("me");
  if (response.status === 401) throw new SyncError(await problemOf(response), { status: 401, retry: false });
  if (!response.ok) throw new SyncError(await problemOf(response), { status: response.status });
  const me = await response.json();
  await store.setDoc("me", me);
  // The server's clock (the phone's may be wrong): where this device starts following the changes.
  if (!(await store.getMeta("changes_baseline"))) {
    const date = new Date(response.headers.get("Date") || Date.now());
    await store.setMeta("changes_baseline", (Number.isNaN(date.getTime()) ? new Date() : date).toISOString());
  }
  return me;
}

/** Push the outbox in batches, in mutation id order (§3).
 * @param {string} base the event's sync path @param {string} clientId */
async function push(base, clientId) {
  for (;;) {
    const batch = (await store.outbox()).slice(0, PUSH_BATCH);
    if (batch.length === 0) return;
    const response = await call(`${base}/push`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ client_id: clientId, protocol: PROTOCOL, mutations: batch }),
    });
    if (!response.ok) {
      throw new SyncError(await problemOf(response), { status: response.status, retry: false });
    }
    const answer = await response.json();
    const sent = new Map(batch.map((m) => [m.id, m]));
    /** @type {store.Problem[]} */
    const problems = [];
    for (const result of answer.results) {
      // A duplicate carries the result its mutation got the first time: shown all the same.
      const outcome = result.status === "duplicate" && result.result ? result.result : result;
      if (outcome.status === "rejected" || outcome.status === "conflict") {
        problems.push({ ...outcome, id: result.id, mutation: sent.get(result.id) });
      }
    }
    const before = batch[0].id;
    await store.acknowledge(answer.last_mutation_id, problems);
    // out_of_order: the server lost nothing, we resend from last_mutation_id + 1; but an answer that
    // acknowledges nothing of this batch would loop forever, so stop and retry later.
    if (answer.last_mutation_id < before) {
      throw new SyncError(`server has processed only up to mutation ${answer.last_mutation_id}`, { retry: true });
    }
  }
}

/** Pull until caught up (§5). A full pull (no cursor) is gathered whole and swapped in at its end;
 * 410 cursor-expired and a summary that disagrees with the replica both start a full pull again.
 * @param {string} base @param {string} clientId */
async function pull(base, clientId) {
  for (let attempt = 0; attempt < 2; attempt++) {
    let cursor = (await store.getMeta("cursor")) || "";
    const full = cursor === "";
    /** @type {any[]} */
    let gathered = [];
    let summary = null;
    for (;;) {
      const query = new URLSearchParams({ cursor, limit: String(PAGE), client_id: clientId, protocol: "1" });
      const response = await call(`${base}/pull?${query}`);
      if (response.status === 410) {
        await store.applyPull([], "", false); // forget the cursor, never the outbox
        cursor = "";
        break;
      }
      if (!response.ok) throw new SyncError(await problemOf(response), { status: response.status, retry: false });
      const page = await response.json();
      if (full) gathered = gathered.concat(page.changes);
      else await store.applyPull(page.changes, page.cursor, false);
      cursor = page.cursor;
      if (!page.has_more) {
        summary = page.summary;
        break;
      }
    }
    if (summary === null) continue; // 410: again, from empty
    if (full) await store.applyPull(gathered, cursor, true);
    if (await agrees(summary)) return;
    await store.setMeta("cursor", ""); // the replica drifted: replace it with a full pull
  }
}

/** @param {Record<string, {count: number, checksum: string}> | null | undefined} summary */
async function agrees(summary) {
  if (!summary) return true;
  for (const [entity, expected] of Object.entries(summary)) {
    const rows = await store.records(entity);
    if (rows.length !== expected.count || (await checksum(rows)) !== expected.checksum) return false;
  }
  return true;
}

/** The group's itinerary with walking legs (GET …/itinerary), revalidated with its ETag. @param {string} eventPath */
async function refreshItinerary(eventPath) {
  const kept = await store.getDoc("itinerary");
  const headers = kept && kept.etag ? { "If-None-Match": kept.etag } : {};
  const response = await call(`${eventPath}/itinerary`, { headers });
  if (response.status === 304) return;
  if (!response.ok) throw new SyncError(await problemOf(response), { status: response.status, retry: false });
  await store.setDoc("itinerary", { etag: response.headers.get("ETag"), data: await response.json() });
}

/** @param {string} eventPath @param {string} since @param {string} lang */
async function changesSince(eventPath, since, lang) {
  const response = await call(`${eventPath}/changes?${new URLSearchParams({ since, lang })}`);
  if (!response.ok) throw new SyncError(await problemOf(response), { status: response.status, retry: false });
  return response.json();
}

/** What changed in my programme (GET …/changes), in the UI's language, kept for offline use: `all` since
 * this device first synced, `fresh` since the user last said they had seen the list (`changes_seen`, a
 * time the server gave). Two lists, because changes are net: a visit moved and moved back since I
 * looked is nothing since the first sync, but it is news to me. @param {string} eventPath */
async function refreshChanges(eventPath) {
  const baseline = await store.getMeta("changes_baseline");
  const seen = (await store.getMeta("changes_seen")) || baseline;
  const all = await changesSince(eventPath, baseline, i18n.lang);
  const fresh = seen === baseline ? all : await changesSince(eventPath, seen, i18n.lang);
  await store.setDoc("changes", { lang: all.lang, seen, all: all.changes, fresh: fresh.changes, next_since: fresh.next_since });
}

/** One whole sync: account, push, pull, itinerary, changes; then the time it finished is kept. */
export async function syncOnce() {
  const me = await refreshMe();
  const clientId = await store.getMeta("client_id");
  const eventPath = `events/${encodeURIComponent(me.event_id)}`;
  await push(`${eventPath}/sync`, clientId);
  await pull(`${eventPath}/sync`, clientId);
  await refreshItinerary(eventPath);
  await refreshChanges(eventPath);
  await store.setMeta("last_synced", new Date().toISOString());
}
