"""Access logs and metrics: one JSON line per request, Prometheus counters, no secrets anywhere."""

import asyncio
import hashlib
import io
import json
import logging
import random
import uuid

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from server.observability import BufferedLineHandler, Metrics
from tests.conftest import EVENT_ID, LiveServer, Seeded, make_app

E = f"/api/v1/events/{EVENT_ID}"


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text exposition (labels in any order)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_each_request_is_one_json_access_line_without_the_token(
    client: TestClient[Litestar], seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    token = seeded.token("participant")
    with caplog.at_level(logging.INFO, logger="studyvisit.access"):
        client.get(E + "/sites?lang=fr", headers={"Authorization": f"Bearer {token}"})
        client.get(E + "/sites", headers={"Authorization": "Bearer sv_wrong"})
        client.get("/no/such/path")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "studyvisit.access"]
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("GET", "/api/v1/events/{event_id}/sites", 200),
        ("GET", "/api/v1/events/{event_id}/sites", 401),
        ("GET", "unmatched", 404),
    ]
    assert lines[0]["account"] == seeded.first("participant").id
    assert all(line["ms"] >= 0 for line in lines)
    text = caplog.text
    assert token not in text
    assert hashlib.sha256(token.encode()).hexdigest() not in text
    assert "lang=fr" not in text  # query strings are not logged


def test_metrics_count_requests_by_route_and_status_and_sync_outcomes(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    headers = seeded.headers("participant", group="G1")
    client.get(E + "/sites", headers=headers)
    client.get(E + "/sites", headers={"Authorization": "Bearer nope"})
    note = {"id": str(uuid.uuid4()), "visit_id": "d1-g1-casa-quartiere-san-salvario", "body": "Banca del tempo"}
    push = {
        "client_id": str(uuid.uuid4()),
        "protocol": 1,
        "mutations": [
            {"id": 1, "type": "note.put", "args": note},
            {
                "id": 2,
                "type": "feedback.put",
                "args": {"id": str(uuid.uuid4()), "visit_id": "d1-g1-casa-quartiere-san-salvario", "rating": 9},
            },
        ],
    }
    assert client.post(E + "/sync/push", json=push, headers=headers).status_code == 200
    client.get(E + "/sync/pull", headers=headers)

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    route = "/api/v1/events/{event_id}/sites"
    assert metric(text, "studyvisit_http_requests_total", method="GET", route=route, status="200") == 1
    assert metric(text, "studyvisit_http_requests_total", method="GET", route=route, status="401") == 1
    assert metric(text, "studyvisit_sync_mutations_total", type="note.put", status="applied") == 1
    assert metric(text, "studyvisit_sync_mutations_total", type="feedback.put", status="rejected") == 1
    assert metric(text, "studyvisit_sync_pull_changes_count") == 1
    assert metric(text, "studyvisit_http_request_duration_seconds_count", method="GET", route=route) == 2
    assert seeded.token("participant") not in text


def test_metrics_can_be_turned_off(seeded: Seeded) -> None:
    with TestClient(app=make_app(seeded, metrics_enabled=False)) as client:
        assert client.get("/metrics").status_code == 404
        assert "/metrics" not in client.get("/schema/openapi.json").json()["paths"]


def series(text: str, name: str) -> list[dict[str, str]]:
    """The label sets of every sample of one metric."""
    return [s.labels for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def test_made_up_mutation_types_and_methods_mint_no_new_series(client: TestClient[Litestar], seeded: Seeded) -> None:
    headers = seeded.headers("participant", group="G1")
    rng = random.Random(6)
    made_up = [f"x.{rng.getrandbits(64):x}" for _ in range(60)]
    push = {
        "client_id": str(uuid.uuid4()),
        "protocol": 1,
        "mutations": [{"id": i, "type": t, "args": {}} for i, t in enumerate(made_up, start=1)],
    }
    assert client.post(E + "/sync/push", json=push, headers=headers).status_code == 200
    for method in ("BREW", "PROPFIND-" + made_up[0]):
        client.request(method, E + "/sites", headers=headers)

    text = client.get("/metrics").text
    types = {labels["type"] for labels in series(text, "studyvisit_sync_mutations_total")}
    assert types == {"other"}
    assert metric(text, "studyvisit_sync_mutations_total", type="other", status="rejected") == len(made_up)
    methods = {labels["method"] for labels in series(text, "studyvisit_http_requests_total")}
    assert methods <= {"GET", "POST", "other"}
    assert "other" in methods
    assert not any(t in text for t in made_up)


def test_metrics_content_type_has_exactly_one_charset(client: TestClient[Litestar]) -> None:
    content_type = client.get("/metrics").headers["content-type"]
    assert content_type.count("charset") == 1
    assert content_type.replace(" ", "") == "text/plain;version=0.0.4;charset=utf-8"


def test_metrics_render_in_a_worker_thread_not_on_the_event_loop(
    client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    on_loop: list[bool] = []
    render = Metrics.render

    def spy(self: Metrics) -> bytes:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return render(self)

    monkeypatch.setattr(Metrics, "render", spy)
    assert client.get("/metrics").status_code == 200
    assert on_loop == [False]


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer wrong-metrics-token", 401), ("Basic bWV0cmljcw==", 401), ("Bearer s3cret-scrape", 200)],
)
def test_metrics_token_setting_guards_the_scrape(seeded: Seeded, authorization: str | None, status: int) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with TestClient(app=make_app(seeded, metrics_token="s3cret-scrape")) as client:
        response = client.get("/metrics", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["content-type"] == "application/problem+json"
        assert "studyvisit_http_requests_total" not in response.text


@pytest.mark.parametrize(("allow_from", "status"), [("10.0.0.0/8", 403), ("127.0.0.0/8, ::1/128", 200)])
def test_metrics_allow_from_setting_limits_scrapes_to_networks(seeded: Seeded, allow_from: str, status: int) -> None:
    server = LiveServer(seeded, env={"STUDYVISIT_METRICS_ALLOW_FROM": allow_from}).start()
    try:
        assert httpx.get(server.url + "/metrics").status_code == status
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        server.stop()


def test_a_mistyped_metrics_network_stops_the_start_up(seeded: Seeded) -> None:
    with pytest.raises(msgspec.ValidationError, match="metrics"):
        make_app(seeded, metrics_allow_from="10.0.0.0/8, not-a-network")


def test_buffered_access_log_lines_reach_the_stream_whole_in_order_on_flush_and_when_many_wait() -> None:
    stream = io.StringIO()
    handler = BufferedLineHandler(stream, interval_s=3600, max_lines=3)  # no timed flush during the test
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("studyvisit.test_buffered")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("one")
        logger.warning("two")
        assert stream.getvalue() == ""  # held: no write per line
        handler.flush()
        assert stream.getvalue() == "one\ntwo\n"
        for line in ("three", "four", "five"):
            logger.warning(line)
        assert stream.getvalue() == "one\ntwo\nthree\nfour\nfive\n"  # max_lines waiting: written at once
    finally:
        logger.removeHandler(handler)


def test_a_line_only_handler_gets_the_same_access_lines_without_records_and_a_filter_still_sees_them(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    stream = io.StringIO()
    handler = BufferedLineHandler(stream, interval_s=3600)  # no formatter, as `serve` has it
    access = logging.getLogger("studyvisit.access")
    saved = (access.level, access.propagate)
    access.setLevel(logging.INFO)
    access.propagate = False
    access.addHandler(handler)
    seen: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        seen.append(record.getMessage())
        return True

    try:
        headers = {"Authorization": f"Bearer {seeded.token('participant')}"}
        for _ in range(2):  # routed, then from the answer cache
            client.get(E + "/sites", headers=headers)
        handler.flush()
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(line["route"], line["status"], line["path"]) for line in lines] == [
            ("/api/v1/events/{event_id}/sites", 200, E + "/sites")
        ] * 2
        access.addFilter(keep)  # a filter must see records again, and so the handler gets them from it
        client.get(E + "/sites", headers=headers)
        handler.flush()
        assert len(seen) == 1
        assert stream.getvalue().splitlines()[-1] == seen[0]
    finally:
        access.removeFilter(keep)
        access.removeHandler(handler)
        access.setLevel(saved[0])
        access.propagate = saved[1]
