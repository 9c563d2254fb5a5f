// What the screens show: the replica with the pending outbox applied on top (§1 of the protocol),
// and the user's actions turned into outbox mutations.

import * as store from "./store.js";

/** A time-ordered UUID (v7, RFC 9562): 48 bits of Unix milliseconds, then random bits. */
export function uuid7() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x70;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** @typedef {{id: string, visit_id: string | null, site_id: string | null, body: string, tags: string[],
 *   share_with_organizers: boolean, captured_at: string | null, version: number, pending: boolean}} NoteView */

/** My notes: pulled ones, then each queued put/delete applied in order. @returns {Promise<NoteView[]>} */
export async function notes() {
  /** @type {Map<string, NoteView>} */
  const byId = new Map();
  for (const row of await store.records("note")) byId.set(row.id, { ...row.data, version: row.version, pending: false });
  for (const m of await store.outbox()) {
    if (m.type === "note.put") {
      const old = byId.get(m.args.id);
      const { base_version: _base, resolve_conflicts: _resolve, ...fields } = m.args;
      byId.set(m.args.id, { tags: [], share_with_organizers: false, ...old, ...fields, version: old?.version ?? 0, pending: true });
    } else if (m.type === "note.delete") {
      byId.delete(m.args.id);
    }
  }
  return [...byId.values()].sort((a, b) => String(a.captured_at || "").localeCompare(String(b.captured_at || "")));
}

/** Create or edit a note; resolves once the mutation is durable. The edit's base_version is the version
 * pulled last (0 for a note the server has not acknowledged yet): an edit from one install never
 * conflicts with that install's own earlier edits.
 * @param {{id?: string, visit_id: string | null, body: string, share_with_organizers: boolean}} note */
export async function saveNote(note) {
  const id = note.id || uuid7();
  const pulled = await store.record("note", id);
  /** @type {Record<string, any>} */
  const args = {
    id,
    visit_id: note.visit_id,
    body: note.body,
    share_with_organizers: note.share_with_organizers,
    base_version: pulled ? pulled.version : 0,
  };
  if (!note.id) args.captured_at = new Date().toISOString();
  await store.enqueue("note.put", args);
  return id;
}

/** @param {string} id */
export async function deleteNote(id) {
  const pulled = await store.record("note", id);
  await store.enqueue("note.delete", { id, base_version: pulled ? pulled.version : 0 });
}

/** @param {string} entity @returns {Promise<Map<string, any>>} */
export async function byId(entity) {
  return new Map((await store.records(entity)).map((row) => [row.id, row.data]));
}

/** Text in the first language that has some: mine, English, then any. @param {Record<string,string>|undefined} texts @param {string} lang */
export function translated(texts, lang) {
  if (!texts) return { text: "", lang };
  for (const l of [lang, "en", ...Object.keys(texts)]) {
    if (texts[l]) return { text: texts[l], lang: l };
  }
  return { text: "", lang };
}
