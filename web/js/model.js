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

/** Apply a site.patch's fields to a site (a merge patch: each description language on its own, null
 * removes that language). @param {any} site @param {Record<string, any>} fields */
export function patched(site, fields) {
  const next = { ...site };
  for (const [name, value] of Object.entries(fields)) {
    if (name === "description") {
      const description = { ...(site.description || {}) };
      for (const [l, text] of Object.entries(value || {})) {
        if (text === null) delete description[l];
        else description[l] = text;
      }
      next.description = description;
    } else {
      next[name] = value;
    }
  }
  return next;
}

/** @typedef {{site: any, version: number, pending: string[], conflicts: any[]}} SiteView */

/** A site as this device shows it: the replica with the queued site.patch mutations applied in order
 * (§1). `pending` names the fields still waiting to sync; `conflicts` are the site's recorded conflict
 * entries less those a queued resolution clears. @param {string} siteId @returns {Promise<SiteView | null>} */
export async function siteView(siteId) {
  const row = await store.record("site", siteId);
  if (!row) return null;
  let site = row.data;
  let conflicts = row.data.conflicts || [];
  /** @type {Set<string>} */
  const pending = new Set();
  for (const m of await store.outbox()) {
    if (m.type !== "site.patch" || m.args.site_id !== siteId) continue;
    site = patched(site, m.args.fields);
    for (const [name, value] of Object.entries(m.args.fields)) {
      if (name === "description") for (const l of Object.keys(value || {})) pending.add(`description.${l}`);
      else pending.add(name);
    }
    if (m.args.resolve_conflicts) conflicts = conflicts.filter((/** @type {any} */ c) => c.version > m.args.base_version);
  }
  return { site: { ...site, conflicts }, version: row.version, pending: [...pending], conflicts };
}

/** Correct a site: only the changed fields, from the version pulled last (so the server can tell a
 * concurrent edit of the same field, §6); with `resolve`, the conflicts seen so far are resolved.
 * Resolves once the mutation is durable. @param {string} siteId @param {Record<string, any>} fields
 * @param {{resolve?: boolean}} [options] */
export async function patchSite(siteId, fields, options = {}) {
  const row = await store.record("site", siteId);
  if (!row) throw new Error(`no site ${siteId}`);
  /** @type {Record<string, any>} */
  const args = { site_id: siteId, base_version: row.version, fields };
  if (options.resolve) args.resolve_conflicts = true;
  await store.enqueue("site.patch", args);
  // A resolution answers the conflict results shown for this site: they are settled now.
  if (options.resolve) {
    for (const p of await store.problems()) {
      if (p.status === "conflict" && p.mutation && p.mutation.type === "site.patch" && p.mutation.args.site_id === siteId) {
        await store.dismissProblem(p.id);
      }
    }
  }
}

/** The value of one field of a site, `description.<lang>` for one language. @param {any} site @param {string} field */
export function fieldValue(site, field) {
  if (field.startsWith("description.")) return (site.description || {})[field.slice("description.".length)] ?? null;
  return site[field];
}

/** The fields that differ between two versions of a site, as a site.patch's `fields` (a description
 * language emptied is removed: null). @param {any} before @param {any} after */
export function siteChanges(before, after) {
  /** @type {Record<string, any>} */
  const fields = {};
  for (const [name, value] of Object.entries(after)) {
    if (name === "description") {
      /** @type {Record<string, string | null>} */
      const description = {};
      const old = before.description || {};
      for (const l of new Set([...Object.keys(old), ...Object.keys(value)])) {
        const text = value[l] ?? "";
        if (text !== (old[l] ?? "")) description[l] = text === "" ? null : text;
      }
      if (Object.keys(description).length) fields.description = description;
    } else if (typeof value === "string" ? value !== (before[name] ?? "") : JSON.stringify(value) !== JSON.stringify(before[name])) {
      // An empty box over a field that has no value (official_name: null) changes nothing.
      fields[name] = value;
    }
  }
  return fields;
}
