// The organizers' People screen (online only): every account of the event with its role, group, language
// and last sync; add someone (their invitation link and QR code, shown this once); retire someone (their
// token stops working at once) or give them a new link.

import { sortedBy } from "../model.js";
import { h } from "../ui.js";
import { t, stamp, LANGUAGES, NAMES } from "../i18n.js";
import { eventPath, getJson, postJson, unavailable } from "./online.js";

const ROLES = ["participant", "host", "organizer"];
/** The last invitation made, kept until dismissed: a background sync redraws the screen, and the
 * token is never shown by the server again. @type {any} */
let invitation = null;
let notice = "";

/** Redraw after an action: a half-typed form gives way to what the action changed.
 * @param {{render: () => Promise<void>}} app */
async function redraw(app) {
  const form = document.querySelector(".add-person");
  if (form) form.removeAttribute("data-editing");
  await app.render();
}

/** @param {string} arg @param {{me: any, render: () => Promise<void>}} app */
export async function peopleScreen(arg, app) {
  const title = t("nav.people");
  if (!app.me) return unavailable(title, t("org.offline"));
  const base = `${eventPath(app.me)}/accounts`;
  const listed = await getJson(base);
  if (listed.error) return unavailable(title, listed.error);
  const groups = await sortedBy("group", "id");
  const sites = await sortedBy("site", "name");
  const status = h("p", { class: "notice", role: "status" }, notice);
  notice = "";
  const say = (/** @type {string} */ msg) => { status.textContent = msg; };
  /** @type {any[]} */
  const accounts = listed.data.accounts;
  return h(
    "section",
    { "aria-labelledby": "people-title", class: "people" },
    h("h2", { id: "people-title" }, title),
    status,
    invitation ? invitationPanel(invitation, app) : null,
    addForm(base, groups, sites, app, say),
    h("h3", null, t("people.accounts", { count: accounts.filter((a) => !a.retired_at).length })),
    h("ul", { class: "people-list" }, accounts.map((a) => personRow(a, base, app, say))),
  );
}

/** @param {any} made @param {{render: () => Promise<void>}} app */
function invitationPanel(made, app) {
  const qr = URL.createObjectURL(new Blob([made.qr_svg], { type: "image/svg+xml" }));
  return h(
    "section",
    { class: "invitation", "aria-labelledby": "invitation-title", "data-account-id": made.id },
    h("h3", { id: "invitation-title" }, t("people.invitation_for", { name: made.name })),
    h("p", null, t("people.invitation_once")),
    h("label", { for: "invitation-link" }, t("people.invitation_link")),
    h("input", { id: "invitation-link", type: "text", readonly: true, value: made.app_url, dir: "ltr" }),
    h("img", { class: "qr", src: qr, alt: t("people.qr_alt", { name: made.name }), width: 220, height: 220 }),
    h("div", { class: "actions" },
      h("button", { type: "button", onclick: async () => {
        try {
          await navigator.clipboard.writeText(made.app_url);
          notice = t("people.copied");
        } catch {
          notice = t("people.copy_failed");
        }
        await redraw(app);
      } }, t("people.copy")),
      h("button", { type: "button", class: "primary", onclick: async () => { invitation = null; URL.revokeObjectURL(qr); await redraw(app); } }, t("people.done"))),
  );
}

/** @param {string} base @param {any[]} groups @param {any[]} sites @param {{render: () => Promise<void>}} app @param {(msg: string) => void} say */
function addForm(base, groups, sites, app, say) {
  const name = /** @type {HTMLInputElement} */ (h("input", { id: "person-name", type: "text", required: true, autocomplete: "off", dir: "auto" }));
  const role = /** @type {HTMLSelectElement} */ (h("select", { id: "person-role" }, ROLES.map((r) => h("option", { value: r }, t(`people.role_${r}`)))));
  const group = /** @type {HTMLSelectElement} */ (h("select", { id: "person-group" }, h("option", { value: "" }, t("people.no_group")), groups.map((g) => h("option", { value: g.id }, g.name || g.id))));
  const site = /** @type {HTMLSelectElement} */ (h("select", { id: "person-sites", multiple: true, size: 4 }, sites.map((s) => h("option", { value: s.id }, s.name))));
  const language = /** @type {HTMLSelectElement} */ (h("select", { id: "person-language" }, LANGUAGES.map((l) => h("option", { value: l, lang: l }, NAMES[l]))));
  const siteField = h("div", { class: "field", hidden: true }, h("label", { for: "person-sites" }, t("people.sites")), site);
  role.addEventListener("change", () => { siteField.hidden = role.value !== "host"; });
  const form = h(
    "form",
    {
      class: "add-person",
      "aria-labelledby": "add-person-title",
      // A half-typed form survives the redraw a background sync makes (main.js keeps a [data-editing] screen).
      oninput: () => form.setAttribute("data-editing", ""),
      onsubmit: async (/** @type {Event} */ e) => {
        e.preventDefault();
        const draft = {
          name: name.value.trim(),
          role: role.value,
          group_id: group.value || null,
          site_ids: role.value === "host" ? [...site.selectedOptions].map((o) => o.value) : [],
          language: language.value,
        };
        const made = await postJson(base, draft);
        if (made.error) {
          say(made.error);
          return;
        }
        invitation = made.data;
        await redraw(app);
        const link = document.getElementById("invitation-link");
        if (link) link.focus();
      },
    },
    h("h3", { id: "add-person-title" }, t("people.add_title")),
    h("label", { for: "person-name" }, t("people.name")), name,
    h("label", { for: "person-role" }, t("people.role")), role,
    h("label", { for: "person-group" }, t("people.group")), group,
    siteField,
    h("label", { for: "person-language" }, t("people.language")), language,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, t("people.add"))),
  );
  return form;
}

/** @param {any} a @param {string} base @param {any} app @param {(msg: string) => void} say */
function personRow(a, base, app, say) {
  const retired = Boolean(a.retired_at);
  const own = a.id === app.me.id;
  const facts = [
    t(`people.role_${a.role}`),
    a.group_id ? t("people.in_group", { group: a.group_id }) : null,
    a.site_ids.length ? t("people.hosts_sites", { count: a.site_ids.length }) : null,
    a.language,
  ].filter(Boolean);
  return h(
    "li",
    { class: `person ${retired ? "retired" : ""}`, "data-account-id": a.id },
    h("span", { class: "name", dir: "auto" }, a.name),
    own ? h("span", { class: "badge" }, t("people.you")) : null,
    retired ? h("span", { class: "badge cancelled" }, t("people.retired")) : null,
    h("div", { class: "facts" }, facts.join(" · ")),
    h("div", { class: "last-sync", "data-last-synced": a.last_synced_at || "" },
      a.last_synced_at ? t("people.last_synced", { time: stamp(a.last_synced_at), count: a.devices }) : t("people.never_synced")),
    retired || own
      ? null
      : h("div", { class: "actions" },
        h("button", { type: "button", "aria-label": t("people.new_link_for", { name: a.name }), onclick: async () => {
          if (!window.confirm(t("people.confirm_new_link", { name: a.name }))) return;
          const made = await postJson(`${base}/${encodeURIComponent(a.id)}/token`);
          if (made.error) return say(made.error);
          invitation = made.data;
          await redraw(app);
        } }, t("people.new_link")),
        h("button", { type: "button", "aria-label": t("people.retire_name", { name: a.name }), onclick: async () => {
          if (!window.confirm(t("people.confirm_retire", { name: a.name }))) return;
          const done = await postJson(`${base}/${encodeURIComponent(a.id)}/retire`);
          if (done.error) return say(done.error);
          notice = t("people.now_retired", { name: a.name });
          await redraw(app);
        } }, t("people.retire"))),
  );
}
