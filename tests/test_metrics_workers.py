"""/metrics of a server with several workers reports the requests of all of them, whichever answers."""

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, Seeded


def requests_counted(server: LiveServer, route: str) -> float:
    text = httpx.get(server.url + "/metrics", headers={"Connection": "close"}).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "studyvisit_http_requests_total" and sample.labels.get("route") == route
    )


def test_every_scrape_counts_the_requests_of_every_worker(seeded: Seeded, tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    server = LiveServer(seeded, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(directory)}).start()
    try:
        headers = {"Authorization": f"Bearer {seeded.token('participant')}", "Connection": "close"}
        sent = 0
        # A new connection per request: the kernel hands each to either worker. Go on until both
        # workers have answered some (each keeps its values in files named by its process id).
        while sent < 400 and (
            sent < 20 or len({f.name.rsplit("_", 1)[-1] for f in directory.glob("counter_*.db")}) < 2
        ):
            assert httpx.get(server.url + "/api/v1/me", headers=headers).status_code == 200
            sent += 1
        assert len(list(directory.glob("counter_*.db"))) >= 2, "only one worker ever answered"
        # Several scrapes, answered by either worker, all see every request.
        assert [requests_counted(server, "/api/v1/me") for _ in range(6)] == [sent] * 6
    finally:
        server.stop()
    assert directory.is_dir()  # the operator's directory is kept (emptied at the next start)


def test_a_server_of_several_workers_removes_its_own_metrics_directory(seeded: Seeded, tmp_path: Path) -> None:
    server = LiveServer(seeded, workers=2, env={"TMPDIR": str(tmp_path)}).start()
    try:
        created = list(tmp_path.glob("studyvisit-metrics-*"))
        assert len(created) == 1
        assert requests_counted(server, "/health") >= 1  # the start-up's readiness probes
    finally:
        server.stop()
    assert not any(d.exists() for d in created)
