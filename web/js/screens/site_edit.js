// My site: a host (or an organizer) corrects a site's details, offline too, as site.patch mutations
// through the outbox; every description language side by side; a live preview drawn by the participants'
// own site page; and the conflicts two crossing edits left, shown with both values to pick or merge.

import { h, mount } from "../ui.js";
import { t, lang, LANGUAGES, NAMES, stamp } from "../i18n.js";
import { fieldValue, patchSite, siteChanges, siteView, sortedBy } from "../model.js";
import * as store from "../store.js";
import { siteArticle } from "./site.js";

// The fields a host may change (sync/rules.py HOST_SITE_FIELDS; the server checks them again).
const TEXTS = ["accessibility", "meeting_point", "contact", "website", "opening_hours_note"];
const PLACE = ["address", "postcode", "city", "district"];
const DAYS = ["mo", "tu", "we", "th", "fr", "sa", "su"];
const COORD_SOURCES = ["sourced", "estimated", "surveyed"];
// Organizers also own these (ORGANIZER_SITE_FIELDS).
const ORGANIZER_TEXTS = ["name", "official_name", "legal_form"];
const KINDS = ["social_cooperative", "worker_cooperative", "consumer_cooperative", "cooperative", "social_enterprise",
  "association", "foundation", "community_house", "network", "training_centre"];
const TIME = "([01][0-9]|2[0-3]):[0-5][0-9]|24:00";

/** The sites an account may edit, by name: a host's own, every site for an organizer.
 * @param {any} me @returns {Promise<any[]>} */
export async function editableSites(me) {
  const sites = await sortedBy("site", "name");
  return me && me.role === "organizer" ? sites : sites.filter((s) => ((me && me.site_ids) || []).includes(s.id));
}

/** A site picker for a host of several sites (an organizer: any site); none for a host of one.
 * @param {any[]} sites @param {string} current @param {string} route */
export function sitePicker(sites, current, route) {
  if (sites.length < 2) return null;
  return h("div", { class: "picker" },
    h("label", { for: "site-pick" }, t("host.pick_site")),
    h("select", { id: "site-pick", onchange: (/** @type {Event} */ e) => {
      location.hash = `#/${route}/${encodeURIComponent(/** @type {HTMLSelectElement} */ (e.target).value)}`;
    } }, sites.map((s) => h("option", { value: s.id, selected: s.id === current }, s.name))));
}

/** A field's name for people. @param {string} field */
export function fieldLabel(field) {
  if (field.startsWith("description.")) {
    const l = field.slice("description.".length);
    return t("host.field.description_in", { lang: /** @type {Record<string, string>} */ (NAMES)[l] || l });
  }
  return t(`host.field.${field}`);
}

/** A value as text, for conflicts and the history. @param {any} value */
export function shownValue(value) {
  if (value === null || value === undefined || value === "") return t("host.empty_value");
  if (Array.isArray(value)) {
    return value.map((v) => (v && v.days ? `${v.days.map((/** @type {string} */ d) => t(`day.${d}`)).join(", ")} ${v.opens}–${v.closes}` : String(v))).join("; ");
  }
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}: ${v}`).join("\n");
  return String(value);
}

/** @param {string} arg a site id, or "" for the first site the account may edit @param {import("../routes.js").App} app */
export async function siteEditScreen(arg, app) {
  const sites = await editableSites(app.me);
  const siteId = arg || (sites[0] && sites[0].id) || "";
  const view = siteId ? await siteView(siteId) : null;
  const organizer = app.me && app.me.role === "organizer";
  if (!view || !(organizer || sites.some((s) => s.id === siteId))) {
    return h("section", null, h("h2", null, t("nav.my_site")), h("p", null, t(sites.length ? "site.unknown" : "host.no_sites")));
  }
  const site = view.site;
  const problems = (await store.problems()).filter(
    (p) => p.status === "conflict" && p.mutation && p.mutation.type === "site.patch" && p.mutation.args.site_id === siteId,
  );
  return h(
    "section",
    { "aria-labelledby": "edit-title", class: "site-edit" },
    h("h2", { id: "edit-title" }, t("host.edit_title", { name: site.name })),
    sitePicker(sites, siteId, "site-edit"),
    h("p", { class: "actions" },
      h("a", { href: `#/site-history/${encodeURIComponent(siteId)}` }, t("host.history_link")),
      h("a", { href: `#/site-visits/${encodeURIComponent(siteId)}` }, t("host.visits_link"))),
    view.pending.length
      ? h("p", { class: "pending", "data-pending": view.pending.join(" ") },
          t("host.pending", { fields: view.pending.map(fieldLabel).join(", ") }))
      : null,
    conflictPanel(view, problems, app),
    editor(view, organizer, app),
  );
}

/** The conflicts of a site: for each field, the value on the site now and each value kept aside (from
 * the site's conflict entries, and from this device's mutation while the entry has not been pulled yet),
 * to keep one or merge them. @param {import("../model.js").SiteView} view @param {any[]} problems
 * @param {import("../routes.js").App} app */
function conflictPanel(view, problems, app) {
  const site = view.site;
  /** @type {Map<string, {value: any, who: string, at: string}[]>} */
  const byField = new Map();
  const add = (/** @type {string} */ field, /** @type {any} */ value, /** @type {string} */ who, /** @type {string} */ at) => {
    const list = byField.get(field) || [];
    if (!list.some((e) => JSON.stringify(e.value) === JSON.stringify(value))) list.push({ value, who, at });
    byField.set(field, list);
  };
  for (const c of view.conflicts) add(c.field, c.value, c.account_id === app.me.id ? t("host.yours") : c.account_id, c.at);
  for (const p of problems) {
    for (const field of p.conflicts || []) {
      const [outer, inner] = field.split(".");
      const fields = p.mutation.args.fields;
      const value = inner ? (fields[outer] || {})[inner] : fields[outer];
      if (value !== undefined) add(field, value, t("host.yours"), p.mutation.client_time);
    }
  }
  // A value kept aside that is the site's value now is no conflict any more (someone chose it).
  for (const [field, list] of byField) {
    const left = list.filter((e) => JSON.stringify(e.value) !== JSON.stringify(fieldValue(site, field) ?? null));
    if (left.length) byField.set(field, left);
    else byField.delete(field);
  }
  if (byField.size === 0 && view.conflicts.length === 0) return null;
  /** @type {(() => [string, any])[]} */
  const choices = [];
  let n = 0;
  const fieldsets = [...byField].map(([field, kept]) => {
    const current = fieldValue(site, field) ?? null;
    const name = `conflict-${n++}`;
    const texts = typeof current === "string" || current === null ? kept.every((e) => typeof e.value === "string") : false;
    const merged = /** @type {HTMLTextAreaElement} */ (h("textarea", {
      id: `${name}-merge`, dir: "auto", "aria-label": t("host.conflict_merge_text", { field: fieldLabel(field) }),
      value: [current || "", ...kept.map((e) => e.value)].filter(Boolean).join("\n"),
    }));
    const radio = (/** @type {string} */ value, /** @type {boolean} */ checked, /** @type {any[]} */ ...label) =>
      h("label", { class: "check" }, h("input", { type: "radio", name, value, checked }), ...label);
    const fieldset = h("fieldset", { class: "conflict", "data-field": field },
      h("legend", null, fieldLabel(field)),
      radio("current", true, h("span", null, h("strong", null, t("host.conflict_current")), " ",
        h("span", { class: "value", dir: "auto", "data-value": "current" }, shownValue(current)))),
      kept.map((e, i) => radio(`kept-${i}`, false, h("span", null,
        h("strong", null, t("host.conflict_kept", { who: e.who, time: e.at ? stamp(e.at) : "" })), " ",
        h("span", { class: "value", dir: "auto", "data-value": "kept" }, shownValue(e.value))))),
      texts ? [radio("merge", false, h("strong", null, t("host.conflict_merge"))), merged] : null);
    choices.push(() => {
      const picked = /** @type {HTMLInputElement | null} */ (fieldset.querySelector(`input[name="${name}"]:checked`));
      const how = picked ? picked.value : "current";
      if (how === "merge") return [field, merged.value];
      if (how.startsWith("kept-")) return [field, kept[Number(how.slice(5))].value];
      return [field, current];
    });
    return fieldset;
  });
  return h(
    "form",
    { class: "conflicts", "aria-labelledby": "conflicts-title",
      oninput: (/** @type {Event} */ e) => /** @type {HTMLElement} */ (e.currentTarget).setAttribute("data-editing", ""),
      onsubmit: async (/** @type {Event} */ e) => {
        e.preventDefault();
        /** @type {Record<string, any>} */
        const fields = {};
        for (const choose of choices) {
          const [field, value] = choose();
          if (JSON.stringify(value) === JSON.stringify(fieldValue(site, field) ?? null)) continue;
          if (field.startsWith("description.")) {
            fields.description = { ...(fields.description || {}), [field.slice(12)]: value === "" ? null : value };
          } else fields[field] = value;
        }
        await patchSite(site.id, fields, { resolve: true });
        /** @type {HTMLElement} */ (e.target).removeAttribute("data-editing");
        app.changed();
      } },
    h("h3", { id: "conflicts-title" }, t("host.conflicts_title")),
    h("p", null, t("host.conflicts_intro")),
    fieldsets,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, t("host.resolve"))),
  );
}

/** @param {string} id @param {string} labelText @param {Node} control */
function field(id, labelText, control) {
  return h("div", { class: "field" }, h("label", { for: id }, labelText), control);
}

/** The form and its live preview. @param {import("../model.js").SiteView} view @param {boolean} organizer
 * @param {import("../routes.js").App} app */
function editor(view, organizer, app) {
  const site = view.site;
  const languages = [...new Set([...LANGUAGES, ...Object.keys(site.description || {})])];
  /** @type {Map<string, HTMLTextAreaElement>} */
  const descriptions = new Map();
  const langGrid = h("div", { class: "langs" });
  // Preview in any language the form has, a newly added one too.
  const previewLang = /** @type {HTMLSelectElement} */ (h("select", { id: "preview-language", onchange: () => update() }));
  const addLanguage = (/** @type {string} */ l) => {
    const area = /** @type {HTMLTextAreaElement} */ (h("textarea", {
      id: `description-${l}`, lang: l, dir: l === "ar" ? "rtl" : "auto", value: (site.description || {})[l] || "",
    }));
    descriptions.set(l, area);
    previewLang.append(h("option", { value: l, selected: l === lang, lang: l }, /** @type {Record<string, string>} */ (NAMES)[l] || l));
    langGrid.append(h("div", { class: "lang" },
      h("label", { for: area.id }, t("host.field.description_in", { lang: /** @type {Record<string, string>} */ (NAMES)[l] || l })), area));
  };
  languages.forEach(addLanguage);
  const newLang = /** @type {HTMLInputElement} */ (h("input", { id: "new-language", pattern: "[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*", size: 8 }));

  /** @type {Record<string, HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>} */
  const inputs = {};
  const text = (/** @type {string} */ name, /** @type {boolean} */ long = false) => {
    const control = /** @type {HTMLInputElement} */ (h(long ? "textarea" : "input", {
      id: `site-${name}`, name, dir: "auto", value: site[name] ?? "", class: long ? "short" : null,
      // Not type=url: a website stored without its scheme must not block every other correction.
      inputmode: name === "website" ? "url" : null,
    }));
    inputs[name] = control;
    return field(control.id, t(`host.field.${name}`), control);
  };
  const number = (/** @type {string} */ name, /** @type {number} */ limit) => {
    const control = /** @type {HTMLInputElement} */ (h("input", {
      id: `site-${name}`, type: "number", step: "any", min: -limit, max: limit, required: true, value: String(site[name]), inputmode: "decimal",
    }));
    inputs[name] = control;
    return field(control.id, t(`host.field.${name}`), control);
  };
  const choice = (/** @type {string} */ name, /** @type {string[]} */ values) => {
    const control = /** @type {HTMLSelectElement} */ (h("select", { id: `site-${name}` },
      values.map((v) => h("option", { value: v, selected: v === site[name] }, t(`host.${name}.${v}`)))));
    inputs[name] = control;
    return field(control.id, t(`host.field.${name}`), control);
  };

  const hoursList = h("div", { class: "hours" });
  /** @type {(() => any)[]} */
  let hours = [];
  const addHours = (/** @type {any} */ span) => {
    const i = hours.length;
    const days = DAYS.map((d) => /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", value: d, checked: span.days.includes(d) })));
    const opens = /** @type {HTMLInputElement} */ (h("input", { id: `opens-${i}`, value: span.opens, pattern: TIME, required: true, size: 5, inputmode: "numeric" }));
    const closes = /** @type {HTMLInputElement} */ (h("input", { id: `closes-${i}`, value: span.closes, pattern: TIME, required: true, size: 5, inputmode: "numeric" }));
    const row = h("fieldset", { class: "span" },
      h("legend", null, t("host.hours_span", { n: i + 1 })),
      h("div", { class: "days" }, days.map((box, j) => h("label", { class: "check" }, box, t(`day.${DAYS[j]}`)))),
      h("div", { class: "times" },
        field(opens.id, t("host.opens"), opens), field(closes.id, t("host.closes"), closes)),
      h("button", { type: "button", onclick: () => { row.remove(); hours[i] = () => null; update(); } }, t("host.remove_hours", { n: i + 1 })));
    hours.push(() => ({ days: days.filter((b) => b.checked).map((b) => b.value), opens: opens.value, closes: closes.value }));
    hoursList.append(row);
  };
  (site.opening_hours || []).forEach(addHours);

  /** The site as the form says now. */
  const draft = () => {
    /** @type {Record<string, any>} */
    const fields = {};
    /** @type {Record<string, string>} */
    const description = {};
    for (const [l, area] of descriptions) description[l] = area.value;
    fields.description = description;
    for (const [name, control] of Object.entries(inputs)) {
      if (name === "lat" || name === "lon") fields[name] = Number(control.value);
      else if (name === "themes") fields[name] = control.value.split("\n").map((s) => s.trim()).filter(Boolean);
      else fields[name] = control.value;
    }
    fields.opening_hours = hours.map((get) => get()).filter((s) => s && s.days.length);
    return fields;
  };

  const preview = h("div", { class: "preview-body" });
  const update = () => {
    const shown = { ...site, ...draft() };
    mount(preview, siteArticle(shown, { readerLang: previewLang.value, headingId: "preview-site-title", level: 4 }));
  };

  const message = h("p", { class: "saved", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "editor", "aria-labelledby": "editor-title",
      oninput: () => { form.setAttribute("data-editing", ""); update(); },
      onchange: () => update(),
      onsubmit: async (/** @type {Event} */ e) => {
        e.preventDefault();
        if (!/** @type {HTMLFormElement} */ (form).reportValidity()) return;
        const fields = siteChanges(site, draft());
        if (Object.keys(fields).length === 0) {
          message.textContent = t("host.nothing_changed");
          return;
        }
        await patchSite(site.id, fields);
        form.removeAttribute("data-editing");
        app.changed();
      } },
    h("h3", { id: "editor-title" }, t("host.details")),
    organizer
      ? h("fieldset", null, h("legend", null, t("host.organizer_fields")),
          ORGANIZER_TEXTS.map((name) => text(name)), choice("kind", KINDS),
          (() => {
            const control = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "site-themes", class: "short", value: (site.themes || []).join("\n") }));
            inputs.themes = control;
            return field(control.id, t("host.field.themes"), control);
          })())
      : null,
    h("fieldset", null, h("legend", null, t("host.description")), langGrid,
      h("div", { class: "add-language" },
        field(newLang.id, t("host.add_language_label"), newLang),
        h("button", { type: "button", onclick: () => {
          const l = newLang.value.trim();
          if (!l || !newLang.checkValidity() || descriptions.has(l)) return;
          addLanguage(l);
          newLang.value = "";
          /** @type {HTMLTextAreaElement} */ (descriptions.get(l)).focus();
        } }, t("host.add_language")))),
    h("fieldset", null, h("legend", null, t("host.practical")),
      text("accessibility", true), text("meeting_point", true), text("contact"), text("website")),
    h("fieldset", null, h("legend", null, t("site.hours")), hoursList,
      h("button", { type: "button", onclick: () => { addHours({ days: [], opens: "09:00", closes: "18:00" }); update(); } }, t("host.add_hours")),
      text("opening_hours_note", true)),
    h("fieldset", null, h("legend", null, t("host.place")),
      PLACE.map((name) => text(name)), number("lat", 90), number("lon", 180), choice("coord_source", COORD_SOURCES), text("coord_note", true)),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, t("action.save"))),
    message,
  );
  update();
  return h("div", { class: "edit-and-preview" },
    form,
    h("section", { class: "preview", "aria-labelledby": "preview-title" },
      h("h3", { id: "preview-title" }, t("host.preview")),
      h("p", { class: "meta" }, t("host.preview_intro")),
      field(previewLang.id, t("host.preview_language"), previewLang),
      preview));
}
