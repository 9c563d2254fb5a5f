// What the organizers' online-only screens share: reading the API (through sync.js, the only module that
// fetches), saying plainly when the phone is offline, and authenticated downloads saved as files.

import { call, problemOf } from "../sync.js";
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

/** GET a JSON document, or the reason it could not be had (offline, refused).
 * @param {string} path @returns {Promise<{data?: any, error?: string}>} */
export async function getJson(path) {
  if (!navigator.onLine) return { error: t("org.offline") };
  try {
    const response = await call(path);
    if (!response.ok) return { error: await problemOf(response) };
    return { data: await response.json() };
  } catch {
    return { error: navigator.onLine ? t("org.unreachable") : t("org.offline") };
  }
}

/** POST to the API; the answer's JSON, or the reason it failed.
 * @param {string} path @param {any} [body] @returns {Promise<{data?: any, error?: string}>} */
export async function postJson(path, body) {
  if (!navigator.onLine) return { error: t("org.offline") };
  /** @type {RequestInit} */
  const init = { method: "POST" };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  try {
    const response = await call(path, init);
    if (!response.ok) return { error: await problemOf(response) };
    return { data: await response.json() };
  } catch {
    return { error: navigator.onLine ? t("org.unreachable") : t("org.offline") };
  }
}

/** Fetch a file with the account's token (a plain link cannot send it) and save it under the server's name.
 * @param {string} path @param {string} fallback file name when the answer names none @returns {Promise<string>} "" or why it failed */
export async function download(path, fallback) {
  if (!navigator.onLine) return t("org.offline");
  let response;
  try {
    response = await call(path);
  } catch {
    return navigator.onLine ? t("org.unreachable") : t("org.offline");
  }
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
