// Speaks sync protocol v1 exactly as docs/sync-protocol.md says (the twin of sync/client.py); refreshes
// the read-API documents the screens show, uploads the photos notes attach (§9.5) and fetches those of
// pulled notes. The ONLY module that talks to the server.

import * as store from "./store.js";
import { forgetUnattached, sha256Hex } from "./model.js";
import * as i18n from "./i18n.js";

export const PROTOCOL = 1;
const PUSH_BATCH = 200; // as the reference client: well under the server's 1,000 per request
const PAGE = 500;
// A part of a resumable upload: a broken connection on a phone network costs at most this much again.
export const UPLOAD_PART = 512 * 1024;
// Failures in a row (network, 5xx, 409) before one photo's upload waits for the next sync.
const UPLOAD_ATTEMPTS = 5;
// Photos are shown at this width (a preview the server makes, without EXIF, §9.8), not in full.
const PHOTO_WIDTH = 480;
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
  if (!headers.has("Accept")) headers.set("Accept", "application/json");
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
      else await store.applyPull(page.changes, page.cursor, false, !page.has_more);
      cursor = page.cursor;
      if (!page.has_more) {
        summary = page.summary;
        break;
      }
    }
    if (summary === null) continue; // 410: again, from empty
    if (full) await store.applyPull(gathered, cursor, true, true);
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

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The server's Upload-Offset, checked to be a number within the blob. @param {Response} response @param {number} size */
function offsetOf(response, size) {
  const offset = Number(response.headers.get("Upload-Offset") ?? "0");
  if (!Number.isInteger(offset) || offset < 0 || offset > size) {
    throw new SyncError(`Upload-Offset ${response.headers.get("Upload-Offset")} is outside 0..${size}`);
  }
  return offset;
}

/** Make the server hold one photo (§9.5, as sync/blobs.py BlobUploader): HEAD, then the rest in parts
 * from the server's offset, so a page closed mid-upload goes on from what reached the server.
 * @param {string} eventPath @param {store.Photo} photo
 * @returns {Promise<"uploaded" | "refused" | "paused">} "refused": the server will not take it (the photo's
 *   `error` says why); "paused": a change was queued meanwhile, which goes first */
async function upload(eventPath, photo) {
  const path = `${eventPath}/blobs/${photo.sha256}`;
  const size = photo.blob.size;
  /** @type {number | null} */
  let offset = null; // the server's, as last heard; null: ask it
  let failures = 0;
  let mismatches = 0;
  const refused = async (/** @type {Response} */ response) => {
    if (response.status === 401 || response.status === 403) {
      throw new SyncError(await problemOf(response), { status: response.status, retry: false });
    }
    let error;
    try {
      error = await response.json();
    } catch {
      error = { status: response.status, title: `HTTP ${response.status}` };
    }
    await store.updatePhoto(photo.sha256, { state: "refused", error });
    return /** @type {const} */ ("refused");
  };
  for (;;) {
    try {
      if (offset === null) {
        const response = await call(path, { method: "HEAD" });
        if (response.status === 200) return "uploaded";
        if (response.status !== 404) return await refused(response);
        offset = offsetOf(response, size);
        // Every byte there but no blob yet: another device is finishing the same photo; ask again later.
        if (offset === size) throw new SyncError("the server holds every byte but not the blob yet");
      }
      const end = Math.min(offset + UPLOAD_PART, size);
      const response = await call(path, {
        method: "PUT",
        headers: { "Content-Range": `bytes ${offset}-${end - 1}/${size}`, "Content-Type": photo.media_type },
        body: photo.blob.slice(offset, end),
      });
      if (response.status === 200 || response.status === 201) return "uploaded";
      if (response.status === 308) {
        const moved = offsetOf(response, size);
        if (!(offset < moved && moved < size)) throw new SyncError(`the server went from offset ${offset} to ${moved} of ${size}`);
        offset = moved;
        failures = 0;
        // A note written during a long upload never waits for it: stop between parts, push, go on.
        if ((await store.outbox()).length > 0) return "paused";
        continue;
      }
      if (response.status === 409) {
        // We were wrong about the server's offset (take its word), or another request (perhaps our own
        // broken one) still holds the upload: wait a little.
        if (++failures >= UPLOAD_ATTEMPTS) throw new SyncError("the server kept refusing the offset of the part");
        offset = response.headers.has("Upload-Offset") ? offsetOf(response, size) : null;
        if (offset === size) offset = null;
        await sleep(500 * failures);
        continue;
      }
      if (response.status === 422 && (await response.clone().json().catch(() => ({}))).type?.endsWith("blob-hash-mismatch")) {
        // The server kept nothing. Our copy went bad: nothing to send. Bytes damaged on the way: once more.
        if ((await sha256Hex(await photo.blob.arrayBuffer())) !== photo.sha256 || ++mismatches > 1) return await refused(response);
        offset = null;
        continue;
      }
      return await refused(response);
    } catch (error) {
      const e = /** @type {any} */ (error);
      if (!(e instanceof SyncError) || e.retry === false || !navigator.onLine || ++failures >= UPLOAD_ATTEMPTS) throw error;
      offset = null; // after a broken part, the server tells how much of it arrived
      await sleep(500 * 2 ** failures);
    }
  }
}

/** Upload every photo that waits and a note names, one after the other; a note written meanwhile is
 * pushed between two photos (or parts), never after them. A refused photo is marked so, not retried; a
 * network failure stops here and the next sync goes on.
 * @param {string} eventPath @param {string} clientId @returns {Promise<number>} how many photos the server took */
async function uploadPhotos(eventPath, clientId) {
  const named = await forgetUnattached();
  let uploaded = 0;
  for (const photo of await store.photos("pending")) {
    if (!named.has(photo.sha256)) continue;
    let outcome;
    do {
      if ((await store.outbox()).length) await push(`${eventPath}/sync`, clientId);
      outcome = await upload(eventPath, photo);
    } while (outcome === "paused");
    if (outcome === "uploaded") {
      await store.photoUploaded(photo.sha256);
      uploaded++;
    }
  }
  return uploaded;
}

/** A pulled note's photo, for display: a preview (the original when the server cannot make one), kept in
 * the bounded cache for offline use. Null when the server does not have it (yet) or this account may not
 * see it; throws a SyncError when offline.
 * @param {string} sha256 @returns {Promise<Blob | null>} */
export async function fetchPhoto(sha256) {
  const me = await store.getDoc("me");
  if (!me) return null;
  const path = `events/${encodeURIComponent(me.event_id)}/blobs/${sha256}`;
  let response = await call(`${path}?w=${PHOTO_WIDTH}`, { headers: { Accept: "image/webp,image/jpeg" } });
  let preview = true;
  if (response.status === 415) {
    response = await call(path, { headers: { Accept: "*/*" } });
    preview = false;
  }
  if (!response.ok) return null;
  const blob = await response.blob();
  await store.keepFetched({
    sha256, blob, media_type: blob.type, bytes: blob.size, note_id: null, state: "fetched", preview, used_at: Date.now(),
  });
  return blob;
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

/** One whole sync: account, push, pull, photo uploads (after the push: the server knows the notes that
 * name them, and they never wait for photos; a pull again when one landed, to learn it is available),
 * itinerary, changes; then the time it finished is kept. A photo upload cut off by the network fails the
 * sync after the rest is done, so it is retried with backoff. @param {() => Promise<void>} [progress] */
export async function syncOnce(progress = async () => {}) {
  const me = await refreshMe();
  const clientId = await store.getMeta("client_id");
  const eventPath = `events/${encodeURIComponent(me.event_id)}`;
  await push(`${eventPath}/sync`, clientId);
  await pull(`${eventPath}/sync`, clientId);
  await progress(); // the notes are in: shown so while photos upload
  /** @type {unknown} */
  let uploadFailure = null;
  try {
    if ((await uploadPhotos(eventPath, clientId)) > 0) await pull(`${eventPath}/sync`, clientId);
  } catch (error) {
    if (/** @type {any} */ (error).retry === false) throw error;
    uploadFailure = error;
  }
  await refreshItinerary(eventPath);
  await refreshChanges(eventPath);
  await store.setMeta("last_synced", new Date().toISOString());
  if (uploadFailure) throw uploadFailure;
}
