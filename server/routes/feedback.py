"""Feedback collection: organizers' questions, participants' answers, closing per visit, summary and CSV."""

from typing import Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import CacheControlHeader
from litestar.openapi.datastructures import ResponseSpec

from schemas.accounts import Account
from schemas.feedback import Question
from schemas.reports import FeedbackFields, FeedbackState, FeedbackSummary, QuestionFields
from schemas.sync import Feedback
from server.auth import requires, same_event
from server.routes.bodies import BODY_OPT, BodySpec
from server.routes.common import AUTH_ERRORS, CACHE_OPT, ROLE_ERRORS, SECURITY, AppDatabase, problem_spec
from server.services.feedback import (
    feedback_csv,
    feedback_summary,
    give_feedback,
    remove_question,
    save_question,
    set_feedback_open,
)

# Litestar adds "; charset=utf-8" to text/* media types.
CSV_MEDIA_TYPE = "text/csv"
ORGANIZERS = [requires("organizer")]
# Reports carry participants' words and names: no shared cache may keep them.
NO_STORE = CacheControlHeader(no_store=True)
QUESTION_ERRORS: dict[int, ResponseSpec] = {
    **AUTH_ERRORS,
    400: problem_spec("The body is not a valid question"),
    415: problem_spec("The body is not application/json"),
    422: problem_spec("invalid-question: no text, a choice question without choices, or repeated choice ids"),
}
FEEDBACK_ERRORS: dict[int, ResponseSpec] = {
    **AUTH_ERRORS,
    400: problem_spec("The body is not valid feedback"),
    415: problem_spec("The body is not application/json"),
    403: problem_spec("Not a participant, or the visit is not in the participant's group's programme"),
    404: problem_spec("No such visit, or the feedback id is someone else's"),
    422: problem_spec(
        "feedback-closed: the organizers closed feedback on this visit; invalid-answer: an answer does not fit"
        " its question"
    ),
}


def csv_response(body: bytes, filename: str) -> Response[bytes]:
    """A CSV download: UTF-8 with a BOM, offered as a file named ``filename``."""
    return Response(
        content=body,
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": NO_STORE.to_header()},
    )


class FeedbackController(Controller):
    """Questions, answers and what organizers and hosts learn from them."""

    path = "/api/v1/events/{event_id:str}"
    guards = [same_event]
    tags = ["feedback"]

    @put(
        "/questions/{question_id:str}",
        guards=ORGANIZERS,
        summary="Create or replace a feedback question (organizers)",
        description="Phones receive the question on their next pull. Each replacement bumps its version.",
        security=SECURITY,
        responses={**QUESTION_ERRORS, 201: ResponseSpec(data_container=Question, description="A new question")},
        opt={BODY_OPT: BodySpec(QuestionFields)},
        sync_to_thread=True,
    )
    def put_question(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        question_id: str,
        payload: QuestionFields,
    ) -> Response[Question]:
        question, created = save_question(db, request.user, question_id, payload)
        return Response(question, status_code=201 if created else 200)

    @delete(
        "/questions/{question_id:str}",
        guards=ORGANIZERS,
        summary="Remove a feedback question (organizers)",
        description="Phones drop it on their next pull; answers already given to it are kept.",
        security=SECURITY,
        responses=ROLE_ERRORS,
        sync_to_thread=True,
    )
    def delete_question(
        self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, question_id: str
    ) -> None:
        remove_question(db, request.user, question_id)

    @put(
        "/visits/{visit_id:str}/feedback",
        guards=[requires("participant")],
        summary="Give or change your feedback on a visit (participants)",
        description="The same rules as sync's feedback.put: one feedback per participant per visit, only on"
        " visits of your group, while feedback is open. Answers not sent are kept. 201 when created.",
        security=SECURITY,
        responses={**FEEDBACK_ERRORS, 201: ResponseSpec(data_container=Feedback, description="New feedback")},
        opt={BODY_OPT: BodySpec(FeedbackFields)},
        sync_to_thread=True,
    )
    def put_feedback(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        visit_id: str,
        payload: FeedbackFields,
    ) -> Response[Feedback]:
        feedback, created = give_feedback(db, request.user, visit_id, payload)
        return Response(feedback, status_code=201 if created else 200)

    @post(
        "/visits/{visit_id:str}/feedback/close",
        guards=ORGANIZERS,
        summary="Stop taking feedback on a visit (organizers)",
        description="Later feedback.put on this visit, online or through sync, is refused as feedback-closed.",
        security=SECURITY,
        responses=ROLE_ERRORS,
        status_code=200,
        sync_to_thread=True,
    )
    def close_feedback(
        self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, visit_id: str
    ) -> FeedbackState:
        return set_feedback_open(db, request.user, visit_id, closed=True)

    @post(
        "/visits/{visit_id:str}/feedback/open",
        guards=ORGANIZERS,
        summary="Take feedback on a visit again (organizers)",
        security=SECURITY,
        responses=ROLE_ERRORS,
        status_code=200,
        sync_to_thread=True,
    )
    def open_feedback(
        self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, visit_id: str
    ) -> FeedbackState:
        return set_feedback_open(db, request.user, visit_id, closed=False)

    @get(
        "/feedback/summary",
        guards=[requires("organizer", "host")],
        summary="Feedback per visit and per site (organizers; hosts for their own sites, without names)",
        security=SECURITY,
        responses=ROLE_ERRORS,
        sync_to_thread=True,
        cache_control=NO_STORE,
        opt={CACHE_OPT: NO_STORE.to_header()},
    )
    def summary(self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str) -> FeedbackSummary:
        return feedback_summary(db, request.user)

    @get(
        "/feedback.csv",
        guards=ORGANIZERS,
        summary="Every answer as a spreadsheet row, with participants' names (organizers)",
        media_type=CSV_MEDIA_TYPE,
        security=SECURITY,
        responses=ROLE_ERRORS,
        sync_to_thread=True,
        opt={CACHE_OPT: NO_STORE.to_header()},
    )
    def export_csv(self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str) -> Response[bytes]:
        return csv_response(feedback_csv(db, request.user), f"{event_id}-feedback.csv")
