// The app's start: sign-in from the invitation link, the service worker, navigation, the status line
// and when syncs run (on open, on reconnect, after each change, on "Sync now"; never blocking the UI).

import * as store from "./store.js";
import { syncOnce } from "./sync.js";
import { h, mount } from "./ui.js";
import * as i18n from "./i18n.js";
import { HOME, SCREENS, navFor, roleOf, screenFor } from "./routes.js";
import { conflictValues, questions } from "./model.js";
import { bothValues, fieldLabel, fixable, reasonOf } from "./screens/fix.js";

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const state = { syncing: false, again: false, error: "", retryMs: 2000, timer: 0, debounce: 0 };

/** Run a sync now, or once more after the one running. Failures are shown, and retried with backoff. */
export async function requestSync() {
  if (state.syncing) {
    state.again = true;
    return;
  }
  state.syncing = true;
  clearTimeout(state.timer);
  await renderStatus();
  try {
    await syncOnce(renderStatus);
    state.error = "";
    state.retryMs = 2000;
  } catch (error) {
    const e = /** @type {any} */ (error);
    state.error = e.status === 401 ? i18n.t("status.signed_out") : navigator.onLine ? String(e.message || e) : "";
    if (e.retry !== false && navigator.onLine) {
      // Exponential backoff with jitter (§3): many phones reconnecting at once do not hammer the server.
      state.timer = window.setTimeout(requestSync, state.retryMs * (0.5 + Math.random()));
      state.retryMs = Math.min(state.retryMs * 2, 5 * 60_000);
    }
  } finally {
    state.syncing = false;
  }
  await render();
  if (state.again) {
    state.again = false;
    void requestSync();
  }
}

/** After a change: sync soon, once for a burst of changes. */
export function changed() {
  clearTimeout(state.debounce);
  state.debounce = window.setTimeout(requestSync, 800);
  void render();
}

let statusDrawn = 0;

async function renderStatus() {
  const mine = ++statusDrawn;
  const { last, waiting, problems } = await store.backlog();
  const items = await Promise.all(problems.map(problemItem));
  if (mine !== statusDrawn) return; // a later call read a newer state: never draw over it
  const parts = [];
  if (!navigator.onLine) parts.push(i18n.t("status.offline"));
  if (state.syncing) parts.push(i18n.t("status.syncing"));
  parts.push(last ? i18n.t("status.last_synced", { time: i18n.stamp(last) }) : i18n.t("status.never_synced"));
  parts.push(i18n.t("status.waiting", { count: waiting }));
  if (problems.length) parts.push(i18n.t("status.rejected", { count: problems.length }));
  if (state.error) parts.push(state.error);
  const status = $("status");
  status.className = navigator.onLine ? "" : "offline";
  status.dataset.waiting = String(waiting);
  status.dataset.syncing = String(state.syncing);
  status.dataset.lastSynced = last || "";
  status.textContent = parts.join(" · ");
  const list = $("problems");
  list.hidden = problems.length === 0;
  show(list, items);
}

/** What was refused and why, or both values of each field in conflict. @param {store.Problem} p */
async function problemItem(p) {
  const qs = await questions();
  const values = await conflictValues(p);
  const what = p.mutation ? (WHAT[p.mutation.type] ? i18n.t(WHAT[p.mutation.type]) : p.mutation.type) : "";
  const reason = p.status === "conflict" ? values.map((v) => fieldLabel(v.field, qs)).join(", ") : reasonOf(p);
  const textId = `problem-${p.id}`;
  return h(
    "li",
    { "data-mutation-id": p.id, "data-status": p.status },
    h("div", { class: "problem-text" },
      h("span", { id: textId }, i18n.t(p.status === "conflict" ? "problem.conflict" : "problem.rejected", { what, reason })),
      values.length ? bothValues(values, qs) : null),
    h("div", { class: "problem-actions" },
      fixable(p)
        ? h("button", { type: "button", "aria-describedby": textId, onclick: () => { location.hash = `#/fix/${p.id}`; } }, i18n.t("fix.action"))
        : null,
      h("button", { type: "button", "aria-describedby": textId, onclick: async () => { await store.dismissProblem(p.id); await renderStatus(); } }, i18n.t("action.dismiss"))),
  );
}

/** What a refused mutation was, for the problems list. @type {Record<string, string>} */
const WHAT = { "note.put": "problem.what_note", "note.delete": "problem.what_note_delete", "feedback.put": "problem.what_feedback" };

/** The current route: the screen shown (the role's home for one it may not see) and its argument.
 * @param {any} me */
function route(me) {
  const [, name = "", arg = ""] = location.hash.match(/^#\/([a-z-]+)(?:\/(.*))?$/) || [];
  return { name: screenFor(name, roleOf(me && me.role)), arg: decodeURIComponent(arg) };
}

/** @param {any} me */
function renderChrome(me) {
  const { name } = route(me);
  const current = SCREENS[name].under || name;
  $("title").textContent = i18n.t("app.title");
  const nav = $("nav");
  nav.hidden = false;
  show(
    nav,
    navFor(roleOf(me && me.role)).map(([id, key]) =>
      h("a", { href: `#/${id}`, "aria-current": id === current ? "page" : null }, i18n.t(key)),
    ),
  );
  const footer = $("footer");
  footer.hidden = false;
  const picker = h(
    "select",
    { id: "language", onchange: async (/** @type {Event} */ e) => {
      await store.setMeta("language", /** @type {HTMLSelectElement} */ (e.target).value);
      await i18n.load(/** @type {HTMLSelectElement} */ (e.target).value);
      await render();
    } },
    i18n.LANGUAGES.map((l) => h("option", { value: l, selected: l === i18n.lang, lang: l }, i18n.NAMES[l])),
  );
  show(
    footer,
    h("span", null, h("label", { for: "language" }, i18n.t("label.language")), picker),
    h("button", { type: "button", onclick: () => void requestSync() }, i18n.t("action.sync_now")),
    h("button", { type: "button", onclick: signOut }, i18n.t("action.sign_out")),
  );
}

async function signOut() {
  const waiting = (await store.outbox()).length + (await store.pendingPhotos());
  const question = waiting ? i18n.t("confirm.sign_out_unsynced", { count: waiting }) : i18n.t("confirm.sign_out");
  if (!window.confirm(question)) return;
  clearTimeout(state.timer);
  clearTimeout(state.debounce);
  await store.wipe(true);
  // The tiles show where this phone's map went: they go. The shell (sw.js's "shell-" caches) is every
  // account's same files and stays, with its service worker: the page reloads from it (offline too).
  // Unregistering it instead left the shell uncached: the reloaded page's register() revives a worker
  // that still controls a page (another tab, or this one not yet gone), with no install to refill it.
  if ("caches" in window) for (const key of await caches.keys()) if (!key.startsWith("shell-")) await caches.delete(key);
  location.replace(location.pathname);
}

let rendering = Promise.resolve();

/** Re-render the current screen (serialized: a slow render never overwrites a newer one). */
export function render() {
  rendering = rendering.then(async () => {
    const me = await store.getDoc("me");
    renderChrome(me);
    await renderStatus();
    const hash = location.hash;
    const { name, arg } = route(me);
    const main = $("main");
    const content = await SCREENS[name].render(arg, { changed, requestSync, render, me });
    // Built for a route the user has left: the render queued by that navigation shows the new one.
    if (location.hash !== hash) return;
    // An open note editor is not thrown away by a background sync.
    if (main.querySelector("[data-editing]") && main.dataset.route === hash) return;
    if (main.dataset.route === hash) return show(main, content);
    main.dataset.route = hash;
    mount(main, content);
  }).catch((error) => console.error(error));
  return rendering;
}

/** Kept if built the same (a sync with nothing new): a tap on it is not lost. @param {HTMLElement} el @param {...any} c */
function show(el, ...c) {
  const built = h("div", null, c);
  if (built.innerHTML + values(built) !== el.innerHTML + values(el)) el.replaceChildren(...built.childNodes);
}

/** @param {Element} e */
const values = (e) => [...e.querySelectorAll("input,select,textarea")].map((/** @type {any} */ f) => f.value + f.checked);

/** The service worker caches the shell for offline use (registering again only checks for an update). */
function registerServiceWorker() {
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js", { scope: "./" }).catch(console.error);
}

async function start() {
  await i18n.load((await store.getMeta("language")) || navigator.language);
  const invitation = location.hash.match(/^#t=([^&]+)/);
  const landing = "#/itinerary";
  if (invitation) {
    const token = decodeURIComponent(invitation[1]);
    const current = await store.getMeta("token");
    const waiting = current && current !== token ? (await store.outbox()).length : 0;
    // Another account's link replaces this one's data: never silently while changes wait to sync.
    if (!waiting || window.confirm(i18n.t("confirm.sign_out_unsynced", { count: waiting }))) await store.signIn(token);
    // The token never stays in the address bar, the history or a bookmark.
    history.replaceState(null, "", location.pathname + location.search + landing);
  }
  const me = await store.getDoc("me");
  await i18n.load((await store.getMeta("language")) || (me && me.language) || navigator.language);
  if (!(await store.getMeta("token"))) {
    registerServiceWorker();
    mount($("main"), h("p", null, i18n.t("app.need_invitation")));
    return;
  }
  window.addEventListener("hashchange", () => {
    // An invitation link opened in this very tab: start again, as when it opens a new one.
    if (location.hash.startsWith("#t=")) location.reload();
    else void render().then(() => $("main").focus());
  });
  window.addEventListener("online", () => void requestSync());
  window.addEventListener("offline", () => void renderStatus());
  await render();
  await requestSync();
  // Signed in by a link: once the account's role is known, its own home (a host's is My site).
  const home = HOME[roleOf(((await store.getDoc("me")) || {}).role)];
  if (invitation && location.hash === landing && home !== "itinerary") {
    history.replaceState(null, "", location.pathname + location.search + `#/${home}`);
    await render();
  }
  // Only now: on a slow network the shell's precache would compete with the first sync for the line.
  registerServiceWorker();
  if (!(await store.getMeta("language"))) {
    const fresh = await store.getDoc("me");
    if (fresh && i18n.pick(fresh.language) !== i18n.lang) {
      await i18n.load(fresh.language);
      await render();
    }
  }
}

void start();
