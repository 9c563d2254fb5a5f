// What the organizers' online-only screens share: reading the API (through sync.js, the only module that
// fetches), saying plainly when the phone is offline, and authenticated downloads saved as files.

import { call, problemOf } from "../sync.js";
import * as store from "../store.js";
import { h } from "../ui.js";
import { t } from "../i18n.js";

/** The event's API path of the signed-in account. @param {any} me */
export function eventPath(me) {
  return `events/${encodeURIComponent(me.event_id)}`;
}

/** Why the screen cannot show its data now: offline, or the server's problem. @param {string} title @param {string} why */
export function unavailable(title, why) {
  return h("section", { class: "online-only" }, h("h2", null, title), h("p", { class: "unavailable", role: "alert" }, why));
}

/** The answer to a request, or why there is none (offline, unreachable: a string for the user).
 * @param {string} path @param {RequestInit} [init] @returns {Promise<Response | string>} */
async function answer(path, init) {
  if (!navigator.onLine) return t("org.offline");
  try {
    return await call(path, init);
  } catch {
    return navigator.onLine ? t("org.unreachable") : t("org.offline");
  }
}

/** A request's JSON answer (and its ETag), or the reason it could not be had (offline, unreachable, refused).
 * @param {string} path @param {RequestInit} [init] @returns {Promise<{data?: any, etag?: string, error?: string}>} */
export async function getJson(path, init) {
  const response = await answer(path, init);
  if (typeof response === "string") return { error: response };
  if (!response.ok) return { error: await problemOf(response) };
  try {
    return { data: await response.json(), etag: response.headers.get("ETag") || "" };
  } catch {
    return { error: t("org.unreachable") };
  }
}

/** POST to the API; the answer's JSON, or the reason it failed.
 * @param {string} path @param {any} [body] @returns {Promise<{data?: any, error?: string}>} */
export function postJson(path, body) {
  return getJson(path, body === undefined ? { method: "POST" }
    : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

/** A read-API document, fresh when online, else as read last (kept under `key`).
 * @param {string} path @param {string} key @returns {Promise<{data: any, at: string, fresh: boolean} | null>} */
export async function kept(path, key) {
  const { data } = await getJson(path);
  if (data !== undefined) {
    const doc = { data, at: new Date().toISOString() };
    await store.setDoc(key, doc);
    return { ...doc, fresh: true };
  }
  const doc = await store.getDoc(key);
  return doc ? { ...doc, fresh: false } : null;
}

/** Fetch a file with the account's token (a plain link cannot send it) and save it under the server's name.
 * @param {string} path @param {string} fallback file name when the answer names none @returns {Promise<string>} "" or why it failed */
export async function download(path, fallback) {
  const response = await answer(path);
  if (typeof response === "string") return response;
  if (!response.ok) return problemOf(response);
  const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: named ? named[1] : fallback, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  // The browser has started saving it; the object URL is only needed until then.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return "";
}
