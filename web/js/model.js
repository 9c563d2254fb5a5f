// What the screens show: the replica with the pending outbox applied on top (§1 of the protocol),
// and the user's actions turned into outbox mutations.

import * as store from "./store.js";
import { MAX_ATTACHMENTS, MAX_PHOTO_BYTES, normalizeTags, sniffMediaType, tagProblem } from "./rules.js";

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

/** @typedef {{sha256: string, media_type: string, bytes: number, caption: string}} Attachment */
/** `status`: "available" once the server holds the bytes (a pull said so, or this phone uploaded them).
 * @typedef {Attachment & {status: "pending" | "available"}} AttachmentView */
/** @typedef {{id: string, author_id: string | null, visit_id: string | null, site_id: string | null, body: string,
 *   tags: string[], attachments: AttachmentView[], share_with_organizers: boolean, captured_at: string | null,
 *   version: number, pending: boolean}} NoteView */

// A note's fields and what an omitted one is on a create (§4); `null` in an edit resets one to it.
const NOTE_DEFAULTS = { visit_id: null, site_id: null, body: "", tags: [], attachments: [], share_with_organizers: false, captured_at: null };

/** Why an action on a note could not be done: `key` is the message to show. */
export class NoteError extends Error {
  /** @param {string} key @param {Record<string, string | number>} [vars] */
  constructor(key, vars = {}) {
    super(key);
    this.key = key;
    this.vars = vars;
  }
}

/** My notes (and, for organizers, the shared notes they pull): pulled ones, then each queued put/delete
 * applied in order. @returns {Promise<NoteView[]>} */
export async function notes() {
  /** @type {Map<string, any>} */
  const byId = new Map();
  const available = new Set((await store.photos("uploaded")).map((p) => p.sha256));
  const { rows, acked, outbox } = await store.overlay("note");
  for (const row of rows) {
    byId.set(row.id, { ...NOTE_DEFAULTS, ...row.data, version: row.version, pending: false });
    for (const a of row.data.attachments || []) if (a.status === "available") available.add(a.sha256);
  }
  const waiting = new Set(outbox.map((m) => m.id));
  for (const m of [...acked, ...outbox]) {
    if (m.type === "note.put") {
      const old = byId.get(m.args.id);
      const { base_version: _base, resolve_conflicts: _resolve, ...fields } = m.args;
      for (const [key, value] of Object.entries(fields)) {
        if (value === null && key in NOTE_DEFAULTS) fields[key] = /** @type {any} */ (NOTE_DEFAULTS)[key];
      }
      byId.set(m.args.id, { ...NOTE_DEFAULTS, author_id: null, ...old, ...fields, version: old?.version ?? 0, pending: (old && old.pending) || waiting.has(m.id) });
    } else if (m.type === "note.delete") {
      byId.delete(m.args.id);
    }
  }
  const views = [...byId.values()].map((n) => ({
    ...n,
    attachments: (n.attachments || []).map((/** @type {Attachment} */ a) => ({
      sha256: a.sha256, media_type: a.media_type, bytes: a.bytes, caption: a.caption || "",
      status: available.has(a.sha256) ? "available" : "pending",
    })),
  }));
  return views.sort((a, b) => String(a.captured_at || "").localeCompare(String(b.captured_at || "")));
}

/** One of the notes shown, or undefined. @param {string} id */
export async function note(id) {
  return (await notes()).find((n) => n.id === id);
}

/** Create or edit a note; resolves once the mutation is durable. The edit's base_version is the version
 * pulled last (0 for a note the server has not acknowledged yet): an edit from one install never
 * conflicts with that install's own earlier edits. An edit leaves the photos as they are.
 * @param {{id?: string, visit_id: string | null, body: string, share_with_organizers: boolean, tags?: string[]}} fields */
export async function saveNote(fields) {
  const id = fields.id || uuid7();
  const existing = fields.id ? await note(fields.id) : undefined;
  const tags = normalizeTags(fields.tags || []);
  const problem = tagProblem(tags);
  if (problem) throw new NoteError(problem.key, problem.vars);
  const pulled = await store.record("note", id);
  /** @type {Record<string, any>} */
  const args = {
    id,
    visit_id: fields.visit_id,
    body: fields.body,
    tags,
    share_with_organizers: fields.share_with_organizers,
    base_version: pulled ? pulled.version : 0,
  };
  if (!existing) args.captured_at = new Date().toISOString();
  await store.enqueue("note.put", args);
  return id;
}

/** @param {string} id */
export async function deleteNote(id) {
  const pulled = await store.record("note", id);
  await store.enqueue("note.delete", { id, base_version: pulled ? pulled.version : 0 });
}

/** SHA-256 of bytes as 64 lowercase hex digits. @param {ArrayBuffer} bytes */
export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// A camera's 12 MP photo of a few MB takes half a minute on a 750 kbit/s uplink; at 1600 px a sign still reads.
const PHOTO_SIDE = 1600;

/** The photo to store and upload: at most PHOTO_SIDE px long, upright, a JPEG without EXIF; the original if
 * it is that small and no larger, a GIF (it may move) or what cannot be decoded here (HEIC, mostly).
 * @param {Blob} file @param {string} type */
export async function shrunk(file, type) {
  if (type === "image/gif") return file;
  try {
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    const scale = Math.min(1, PHOTO_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = new OffscreenCanvas(Math.round(bitmap.width * scale), Math.round(bitmap.height * scale));
    const context = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext("2d"));
    context.fillStyle = "#fff"; // under a transparent PNG
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.imageSmoothingQuality = "high";
    context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const jpeg = await canvas.convertToBlob({ type: "image/jpeg", quality: 0.82 });
    return scale === 1 && file.size <= jpeg.size ? file : jpeg;
  } catch {
    return file;
  }
}

/** Attach a photo (a File from the camera or the gallery), `shrunk`, to one of my notes. Returns once its
 * bytes and the note's note.put naming it are durable, together; the note never waits for the upload.
 * Throws a NoteError for a file the server would refuse, or a note with no room for another photo.
 * @param {string} noteId @param {Blob} file @returns {Promise<Attachment>} */
export async function addPhoto(noteId, file) {
  const current = await note(noteId);
  if (!current) throw new NoteError("photo.no_note");
  const type = sniffMediaType(new Uint8Array(await file.slice(0, 64).arrayBuffer())) || "";
  // The server also takes PDFs (§9.2), but this is a photo: one the phone can show as a thumbnail.
  if (file.size && !type.startsWith("image/")) throw new NoteError("photo.not_a_photo");
  const blob = file.size ? await shrunk(file, type) : file;
  if (!blob.size || blob.size > MAX_PHOTO_BYTES) throw new NoteError("photo.too_big", { max: MAX_PHOTO_BYTES / 1024 / 1024 });
  const bytes = await blob.arrayBuffer();
  const media_type = blob === file ? type : "image/jpeg";
  const sha256 = await sha256Hex(bytes);
  /** @type {Attachment} */
  const attachment = { sha256, media_type, bytes: bytes.byteLength, caption: "" };
  const attached = current.attachments.map(({ status: _status, ...a }) => a);
  if (attached.some((a) => a.sha256 === sha256)) return attachment; // the same photo twice: once
  if (attached.length >= MAX_ATTACHMENTS) throw new NoteError("photo.too_many", { max: MAX_ATTACHMENTS });
  const kept = await store.photo(sha256);
  /** @type {store.Photo} */
  const photo = kept && kept.state !== "fetched"
    ? kept // this phone already has it (attached to another note): its upload state stands
    : { sha256, blob: new Blob([bytes], { type: media_type }), media_type, bytes: bytes.byteLength, note_id: noteId, state: "pending", used_at: Date.now() };
  const pulled = await store.record("note", noteId);
  await store.enqueue("note.put", { id: noteId, attachments: [...attached, attachment], base_version: pulled ? pulled.version : 0 }, { photo });
  return attachment;
}

/** Take a photo off one of my notes; its bytes on this phone go at the next sync if no note names it.
 * @param {string} noteId @param {string} sha256 */
export async function removePhoto(noteId, sha256) {
  const current = await note(noteId);
  if (!current) throw new NoteError("photo.no_note");
  const attachments = current.attachments.filter((a) => a.sha256 !== sha256).map(({ status: _status, ...a }) => a);
  const pulled = await store.record("note", noteId);
  await store.enqueue("note.put", { id: noteId, attachments, base_version: pulled ? pulled.version : 0 });
}

/** Photos waiting for upload that no note names any more (removed, or their note deleted) and no
 * refused change still shown names are dropped: nobody will ever ask for them.
 * @returns {Promise<Set<string>>} the photos the notes name */
export async function forgetUnattached() {
  // Photos first: one added meanwhile is either not in this list or already named by its queued note.
  const kept = await store.photos();
  const named = new Set((await notes()).flatMap((n) => n.attachments.map((a) => a.sha256)));
  // A change the server refused is listed until the user dismisses it: so are its photos kept.
  const refused = new Set((await store.problems()).flatMap((p) => (p.mutation?.args?.attachments || []).map((/** @type {Attachment} */ a) => a.sha256)));
  const unnamed = kept.filter((p) => (p.state === "pending" || p.state === "refused") && !named.has(p.sha256) && !refused.has(p.sha256));
  if (unnamed.length) await store.deletePhotos(unnamed.map((p) => p.sha256));
  return named;
}

/** Every tag on these notes, sorted in the UI's language. @param {NoteView[]} list @param {string} lang */
export function tagsOf(list, lang) {
  return [...new Set(list.flatMap((n) => n.tags))].sort((a, b) => a.localeCompare(b, lang));
}

/** @param {string} entity @returns {Promise<Map<string, any>>} */
export async function byId(entity) {
  return new Map((await store.records(entity)).map((row) => [row.id, row.data]));
}

/** An entity's records, sorted by one of their text fields. @param {string} entity @param {string} field @returns {Promise<any[]>} */
export async function sortedBy(entity, field) {
  return (await store.records(entity)).map((r) => r.data).sort((a, b) => a[field].localeCompare(b[field]));
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

// --- Feedback (§4 feedback.put): one record per participant and visit, answered question by question.

/** Visits that ask for no feedback: logistics, not content. */
const NO_FEEDBACK = new Set(["registration", "break", "meal", "transfer"]);

/** The event's questions, in the order to ask them. @returns {Promise<any[]>} */
export async function questions() {
  return (await store.records("question")).map((r) => r.data).sort((a, b) => a.position - b.position || a.id.localeCompare(b.id));
}

/** The visits I attended: my group's, started (on the phone's clock), not cancelled, earliest first.
 * @param {any} me the account @param {Date} [now] @returns {Promise<any[]>} */
export async function attendedVisits(me, now = new Date()) {
  const group = me && me.group_id;
  if (!group) return [];
  return (await store.records("visit"))
    .map((r) => r.data)
    .filter((v) => v.group_ids.includes(group) && v.status !== "cancelled" && !NO_FEEDBACK.has(v.kind))
    .filter((v) => new Date(v.starts_at).getTime() <= now.getTime())
    .sort((a, b) => a.starts_at.localeCompare(b.starts_at) || a.number - b.number);
}

/** @typedef {{id: string, visit_id: string, answers: Record<string, any>, comment: string, version: number,
 *   pending: boolean, conflicts: any[]}} FeedbackView */

/** My feedback on each visit: pulled, then each queued feedback.put applied as the server will (an edit
 * changes what it sends; an answer set to null is removed). @returns {Promise<Map<string, FeedbackView>>} by visit id */
export async function feedbackByVisit() {
  /** @type {Map<string, FeedbackView>} */
  const byVisit = new Map();
  for (const row of await store.records("feedback")) {
    const d = row.data;
    byVisit.set(d.visit_id, { id: row.id, visit_id: d.visit_id, answers: { ...d.answers }, comment: d.comment || "",
      version: row.version, pending: false, conflicts: d.conflicts || [] });
  }
  for (const m of await store.outbox()) if (m.type === "feedback.put") overlay(byVisit, m.args);
  return byVisit;
}

/** @param {Map<string, FeedbackView>} byVisit @param {Record<string, any>} args */
function overlay(byVisit, args) {
  const old = byVisit.get(args.visit_id) || { id: args.id, visit_id: args.visit_id, answers: {}, comment: "", version: 0, pending: true, conflicts: [] };
  const answers = { ...old.answers, ...(args.answers || {}) };
  for (const [q, a] of Object.entries(answers)) if (a === null) delete answers[q];
  const comment = "comment" in args ? args.comment || "" : old.comment;
  byVisit.set(args.visit_id, { ...old, answers, comment, pending: true, conflicts: args.resolve_conflicts ? [] : old.conflicts });
}

/** What the form would show for a problem's feedback: my feedback with the refused or losing values
 * of that mutation laid on top (what I had typed). @param {import("./store.js").Problem} problem */
export async function feedbackAsTyped(problem) {
  const byVisit = await feedbackByVisit();
  const args = /** @type {Record<string, any>} */ (problem.mutation?.args);
  const current = byVisit.get(args.visit_id);
  const typed = new Map(current ? [[args.visit_id, current]] : []);
  overlay(typed, args);
  // Typed, not queued: the form says "waiting to sync" only for what the outbox holds.
  const shown = /** @type {FeedbackView} */ (typed.get(args.visit_id));
  return { current, typed: { ...shown, pending: current ? current.pending : false } };
}

/** Queue my answers on a visit, sending only what changed since what this phone shows (an edit
 * never wipes an answer it did not touch). The id is my feedback's on that visit, else a new one
 * (time-ordered, as for notes); the base is the version pulled last (0 before the server has it).
 * `resolve`: the problem this save fixes; on a conflict it also resolves the record's conflicts.
 * Resolves with whether a mutation was queued.
 * @param {string} visitId @param {Record<string, any>} answers question id → answer, null for none
 * @param {string} comment @param {import("./store.js").Problem} [resolve] */
export async function saveFeedback(visitId, answers, comment, resolve) {
  const current = (await feedbackByVisit()).get(visitId);
  const id = current ? current.id : uuid7();
  const pulled = await store.record("feedback", id);
  /** @type {Record<string, any>} */
  const changed = {};
  for (const [q, a] of Object.entries(answers)) {
    const before = current ? current.answers[q] ?? null : null;
    if (a !== before) changed[q] = a;
  }
  /** @type {Record<string, any>} */
  const args = { id, visit_id: visitId, base_version: Math.max(pulled ? pulled.version : 0, resolve?.version ?? 0) };
  if (Object.keys(changed).length) args.answers = changed;
  if (comment !== (current ? current.comment : "")) args.comment = comment;
  const conflict = resolve?.status === "conflict";
  if (conflict) args.resolve_conflicts = true;
  if (!args.answers && !("comment" in args) && !conflict) {
    if (resolve) await store.dismissProblem(resolve.id); // nothing left to send: the fix is what is shown
    return false;
  }
  await store.enqueue("feedback.put", args, { fixes: resolve?.id });
  return true;
}

/** Correct a refused note.put, or settle a conflict on one: the fields the editor shows replace the
 * mutation's, the rest of what I had sent stays. A create that never landed stays a create (base 0,
 * same id); a conflict is resolved with the version that recorded it (§6).
 * @param {import("./store.js").Problem} problem @param {{body: string, visit_id: string | null, share_with_organizers: boolean}} fields */
export async function fixNote(problem, fields) {
  const args = /** @type {Record<string, any>} */ ({ ...problem.mutation?.args });
  const pulled = await store.record("note", args.id);
  const base = Math.max(pulled ? pulled.version : 0, problem.version ?? 0);
  // A refusal wrote nothing: send it all again, corrected. A conflict applied the rest: send the
  // editor's fields only (equal ones change nothing), and clear the conflicts I have now seen.
  /** @type {Record<string, any>} */
  const fixed = problem.status === "conflict"
    ? { id: args.id, ...fields, base_version: base, resolve_conflicts: true }
    : { ...args, ...fields, base_version: base };
  if (fields.visit_id === null) delete fixed.visit_id;
  await store.enqueue("note.put", fixed, { fixes: problem.id });
}

/** The losing fields of a conflict, each with my value and the server's (as last pulled).
 * @param {import("./store.js").Problem} problem @returns {Promise<{field: string, mine: any, theirs: any}[]>} */
export async function conflictValues(problem) {
  const m = problem.mutation;
  if (!m || problem.status !== "conflict") return [];
  // A site.patch names its site as site_id and carries its fields under `fields`. Never a lookup
  // without an id: IndexedDB throws on an undefined key, and that would stop every render.
  const site = m.type === "site.patch";
  const entity = site ? "site" : m.type === "feedback.put" ? "feedback" : "note";
  const id = problem.entity_id || (site ? m.args.site_id : m.args.id);
  const row = typeof id === "string" ? await store.record(entity, id) : undefined;
  const server = row ? row.data : {};
  const typed = site ? m.args.fields || {} : m.args;
  return (problem.conflicts || []).map((field) => {
    const [head, key] = field.split(".");
    const pick = (/** @type {any} */ from) => (key === undefined ? from?.[head] : from?.[head]?.[key]);
    const recorded = (server.conflicts || []).find((/** @type {any} */ c) => c.field === field);
    return { field, mine: pick(typed) ?? recorded?.value ?? null, theirs: pick(server) ?? null };
  });
}
