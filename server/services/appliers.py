"""Every sync mutation type, by its wire name, and the function that applies it."""

from collections.abc import Callable
from typing import Any

from schemas.sync import MutationResult
from server.services.mutations import Context, feedback_put, note_delete, note_put, site_patch
from server.services.visits import visit_patch, visit_put

APPLIERS: dict[str, Callable[[Context, Any], MutationResult]] = {
    "note.put": note_put,
    "note.delete": note_delete,
    "feedback.put": feedback_put,
    "site.patch": site_patch,
    "visit.put": visit_put,
    "visit.patch": visit_patch,
}
