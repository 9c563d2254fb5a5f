// Which screen each route (#/<name>/<arg>) shows, the navigation link it sits under, and the roles that
// see it. Navigation lists the screens with a `nav` label that the account's role may see, in this order;
// a route the role may not see shows the role's home screen instead. (The server decides what data an
// account may read; this only keeps screens an account cannot use out of its way.)

import { itineraryScreen } from "./screens/itinerary.js";
import { siteScreen } from "./screens/site.js";
import { notesScreen } from "./screens/notes.js";
import { mapScreen } from "./screens/map.js";
import { siteEditScreen } from "./screens/site_edit.js";
import { siteHistoryScreen } from "./screens/site_history.js";
import { siteVisitsScreen } from "./screens/site_visits.js";
import { feedbackScreen } from "./screens/feedback.js";
import { fixScreen } from "./screens/fix.js";
import { programmeScreen } from "./screens/programme.js";
import { deliveryScreen } from "./screens/delivery.js";
import { responsesScreen } from "./screens/responses.js";
import { peopleScreen } from "./screens/people.js";

/** What a screen may use of the app: `changed()` after a change is queued (a sync follows soon),
 * `requestSync()` to sync now, `me` the account (GET /me, as last synced), `render()` to redraw.
 * @typedef {{changed: () => void, requestSync: () => Promise<void>, render: () => Promise<void>, me: any}} App */

/** @typedef {"participant" | "host" | "organizer"} Role */
/** `navRoles`: the roles whose navigation lists the screen (default: all its `roles`); the others reach it
 * by links (an organizer opens a site's editor from the site's page).
 * @typedef {{render: (arg: string, app: App) => Promise<Node>, roles: Role[], nav?: string, navRoles?: Role[], under?: string}} Screen */

const EVERYONE = /** @type {Role[]} */ (["participant", "host", "organizer"]);
const SITE_EDITORS = /** @type {Role[]} */ (["host", "organizer"]);
const HOSTS = /** @type {Role[]} */ (["host"]);
const ORGANIZERS = /** @type {Role[]} */ (["organizer"]);

/** @type {Record<string, Screen>} */
export const SCREENS = {
  // The organizers' own screens first: their navigation starts with them.
  programme: { nav: "nav.programme", roles: ORGANIZERS, render: (arg, app) => programmeScreen(arg, app) },
  changes: { nav: "nav.changes", roles: ORGANIZERS, render: (arg, app) => deliveryScreen(arg, app) },
  itinerary: { nav: "nav.itinerary", roles: EVERYONE, render: (_, app) => itineraryScreen(app) },
  site: { under: "itinerary", roles: EVERYONE, render: (arg, app) => siteScreen(arg, app) },
  // Every role has an itinerary (a host's lists the visits to its site), so every role has its map.
  map: { nav: "nav.map", roles: EVERYONE, render: (arg) => mapScreen(arg) },
  notes: { nav: "nav.notes", roles: EVERYONE, render: (arg, app) => notesScreen(arg, app) },
  feedback: { nav: "nav.feedback", roles: ["participant"], render: (arg, app) => feedbackScreen(arg, app) },
  fix: { roles: EVERYONE, render: (arg, app) => fixScreen(arg, app) },
  "site-edit": { nav: "nav.my_site", roles: SITE_EDITORS, navRoles: HOSTS, render: (arg, app) => siteEditScreen(arg, app) },
  "site-visits": { nav: "nav.site_visits", roles: SITE_EDITORS, navRoles: HOSTS, render: (arg, app) => siteVisitsScreen(arg, app) },
  "site-history": { nav: "nav.history", roles: SITE_EDITORS, navRoles: HOSTS, render: (arg, app) => siteHistoryScreen(arg, app) },
  responses: { nav: "nav.feedback", roles: ORGANIZERS, render: (arg, app) => responsesScreen(arg, app) },
  people: { nav: "nav.people", roles: ORGANIZERS, render: (arg, app) => peopleScreen(arg, app) },
};

/** Each role's first screen. @type {Record<Role, string>} */
export const HOME = { participant: "itinerary", host: "site-edit", organizer: "programme" };

/** @param {string | undefined} role @returns {Role} */
export function roleOf(role) {
  return role === "host" || role === "organizer" ? role : "participant";
}

/** The screen a route shows to a role: the route's own, or the role's home when it may not see it.
 * @param {string} name @param {Role} role */
export function screenFor(name, role) {
  const screen = SCREENS[name];
  return screen && screen.roles.includes(role) ? name : HOME[role];
}

/** The navigation links a role sees: [route name, label key]. @param {Role} role */
export function navFor(role) {
  return Object.entries(SCREENS)
    .filter(([, s]) => s.nav && (s.navRoles || s.roles).includes(role))
    .map(([name, s]) => /** @type {[string, string]} */ ([name, /** @type {string} */ (s.nav)]));
}
