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
  await store.enqueue("feedback.put", args, resolve?.id);
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
  await store.enqueue("note.put", fixed, problem.id);
}

/** The losing fields of a conflict, each with my value and the server's (as last pulled).
 * @param {import("./store.js").Problem} problem @returns {Promise<{field: string, mine: any, theirs: any}[]>} */
export async function conflictValues(problem) {
  const m = problem.mutation;
  if (!m || problem.status !== "conflict") return [];
  const entity = m.type === "feedback.put" ? "feedback" : "note";
  const row = await store.record(entity, problem.entity_id || m.args.id);
  const server = row ? row.data : {};
  return (problem.conflicts || []).map((field) => {
    const [head, key] = field.split(".");
    const pick = (/** @type {any} */ from) => (key === undefined ? from?.[head] : from?.[head]?.[key]);
    const recorded = (server.conflicts || []).find((/** @type {any} */ c) => c.field === field);
    return { field, mine: pick(m.args) ?? recorded?.value ?? null, theirs: pick(server) ?? null };
  });
}
