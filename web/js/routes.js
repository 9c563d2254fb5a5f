// Which screen each route (#/<name>/<arg>) shows, the navigation link it sits under, and the roles that
// see it. Navigation lists the screens with a `nav` label that the account's role may see, in this order;
// a route the role may not see shows the role's home screen instead. (The server decides what data an
// account may read; this only keeps screens an account cannot use out of its way.)

import { itineraryScreen } from "./screens/itinerary.js";
import { siteScreen } from "./screens/site.js";
import { notesScreen } from "./screens/notes.js";
import { responsesScreen } from "./screens/responses.js";
import { peopleScreen } from "./screens/people.js";

/** What a screen may use of the app: `changed()` after a change is queued (a sync follows soon),
 * `requestSync()` to sync now, `me` the account (GET /me, as last synced), `render()` to redraw.
 * @typedef {{changed: () => void, requestSync: () => Promise<void>, render: () => Promise<void>, me: any}} App */

/** @typedef {"participant" | "host" | "organizer"} Role */
/** @typedef {{render: (arg: string, app: App) => Promise<Node>, roles: Role[], nav?: string, under?: string}} Screen */

const EVERYONE = /** @type {Role[]} */ (["participant", "host", "organizer"]);
const ORGANIZERS = /** @type {Role[]} */ (["organizer"]);

/** @type {Record<string, Screen>} */
export const SCREENS = {
  itinerary: { nav: "nav.itinerary", roles: EVERYONE, render: () => itineraryScreen() },
  site: { under: "itinerary", roles: EVERYONE, render: (arg) => siteScreen(arg) },
  notes: { nav: "nav.notes", roles: EVERYONE, render: (arg, app) => notesScreen(arg, app) },
  responses: { nav: "nav.feedback", roles: ORGANIZERS, render: (arg, app) => responsesScreen(arg, app) },
  people: { nav: "nav.people", roles: ORGANIZERS, render: (arg, app) => peopleScreen(arg, app) },
};

/** Each role's first screen. @type {Record<Role, string>} */
export const HOME = { participant: "itinerary", host: "itinerary", organizer: "itinerary" };

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
    .filter(([, s]) => s.nav && s.roles.includes(role))
    .map(([name, s]) => /** @type {[string, string]} */ ([name, /** @type {string} */ (s.nav)]));
}
