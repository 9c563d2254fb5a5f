// Message catalogs (web/i18n/<lang>.json) and formatting in the event's time zone.

export const LANGUAGES = /** @type {const} */ (["en", "fr", "es", "it", "ar"]);
export const NAMES = { en: "English", fr: "Français", es: "Español", it: "Italiano", ar: "العربية" };
const RTL = new Set(["ar"]);

/** @type {Record<string, string>} */
let messages = {};
/** @type {Record<string, string>} */
let fallback = {};
export let lang = "en";
/** @type {Map<string, Promise<Record<string, string>>>} */
const catalogs = new Map();

/** The catalog language for a wish such as "fr-CA" or "vi" (English when there is none). @param {string | undefined} wish */
export function pick(wish) {
  const base = (wish || "").toLowerCase().split("-")[0];
  return /** @type {readonly string[]} */ (LANGUAGES).includes(base) ? base : "en";
}

/** The writing direction of a language's text. @param {string} l */
export function dirOf(l) {
  return RTL.has(pick(l)) ? "rtl" : "ltr";
}

/** Load a catalog and set the document's language and direction. @param {string} wanted */
export async function load(wanted) {
  lang = pick(wanted);
  const get = (/** @type {string} */ l) => {
    // Each catalog is fetched once per page: the app loads one at start and again for the account's language.
    if (!catalogs.has(l)) catalogs.set(l, fetch(new URL(`../i18n/${l}.json`, import.meta.url)).then((r) => r.json()));
    return /** @type {Promise<Record<string, string>>} */ (catalogs.get(l));
  };
  fallback = await get("en");
  messages = lang === "en" ? fallback : await get(lang);
  document.documentElement.lang = lang;
  document.documentElement.dir = RTL.has(lang) ? "rtl" : "ltr";
}

/** A message with its {placeholders} filled in. @param {string} key @param {Record<string, string | number>} [vars] */
export function t(key, vars = {}) {
  const text = messages[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** Hours and minutes of an instant in a time zone. @param {string} iso @param {string} timeZone */
export function time(iso, timeZone) {
  return new Intl.DateTimeFormat(lang, { timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(
    new Date(iso),
  );
}

/** The day of an instant in a time zone, as a heading. @param {string} iso @param {string} timeZone */
export function day(iso, timeZone) {
  return new Intl.DateTimeFormat(lang, { timeZone, weekday: "long", day: "numeric", month: "long" }).format(
    new Date(iso),
  );
}

/** A key for grouping by the event's calendar day. @param {string} iso @param {string} timeZone */
export function dayKey(iso, timeZone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(
    new Date(iso),
  );
}

/** Date and time on the phone's own clock (for "last synced"). @param {string} iso */
export function stamp(iso) {
  return new Intl.DateTimeFormat(lang, { dateStyle: "short", timeStyle: "short" }).format(new Date(iso));
}
