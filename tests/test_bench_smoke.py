"""The benchmark still works: a smoke run completes and reports every section (structure only, never speed).

The run is `--database-url`'s: SQLite first, as without it, then the same reads, pulls and pushes and the
load test on PostgreSQL (a database the run creates for itself on the test server, and drops).
"""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.databases import PG_SERVER

ROOT = Path(__file__).resolve().parent.parent
READS = ("sites", "itinerary", "revalidate_304")
PULLS = ("participant_initial", "organizer_initial", "participant_incremental")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out), "--database-url", PG_SERVER],
        cwd=ROOT,
        check=True,
        timeout=240,
        capture_output=True,
    )
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_smoke_run_reports_every_section(results: dict[str, Any]) -> None:
    sections = {"meta", "dataset", "reads", "push", "uploads", "pull", "turin", "rss", "load_test", "targets"}
    assert sections <= results.keys()
    assert results["meta"]["smoke"] is True


@pytest.mark.parametrize("name", READS)
def test_reads_have_throughput_latency_and_a_floor(results: dict[str, Any], name: str) -> None:
    read = results["reads"][name]
    assert min(read["rps"], read["floor_rps"]) > 0
    assert 0 < read["p50_ms"] <= read["p99_ms"]
    assert read["ratio"] == pytest.approx(read["rps"] / read["floor_rps"], rel=0.5)
    assert read["errors"] == read["floor_errors"] == 0
    assert len(read["runs"]) == results["meta"]["runs"]


def test_the_generator_check_compares_both_clients(results: dict[str, Any]) -> None:
    generator = results["reads"]["generator"]
    assert min(generator["raw_floor_rps"], generator["httpx_floor_rps"]) > 0
    assert generator["chosen"] in ("raw", "httpx")


def test_every_pushed_note_was_applied_beside_a_sqlite_floor(results: dict[str, Any]) -> None:
    push = results["push"]
    assert push["errors"] == 0
    assert push["applied"] == push["notes"] == push["devices"] * push["notes_per_device"]
    assert min(push["notes_per_s"], push["floor_notes_per_s"], push["ratio"]) > 0


@pytest.mark.parametrize("mode", ["whole", "parts"])
def test_photo_uploads_report_mib_per_s_beside_the_disk(results: dict[str, Any], mode: str) -> None:
    uploads = results["uploads"]
    upload = uploads[mode]
    assert upload["errors"] == 0, upload["messages"]
    # Every photo answered 201 with its own hash and size, and the server holds its row and its file.
    assert upload["photos"] == upload["stored"] == upload["held_by_server"] == uploads["photos"]
    parts_each = -(-uploads["photo_bytes_approx"] // uploads["part_bytes"]) if mode == "parts" else 1
    assert upload["requests"] >= upload["photos"] * (1 + parts_each) * 0.5  # a HEAD and the PUT(s) of each photo
    assert min(upload["bytes"], upload["seconds"], upload["mib_per_s"], upload["disk_mib_per_s"]) > 0
    assert upload["ratio"] == pytest.approx(upload["mib_per_s"] / upload["disk_mib_per_s"], rel=0.5)
    assert len(upload["runs"]) == results["meta"]["runs"]
    assert min(uploads["disk"]["mib_per_s"], uploads["disk"]["bytes"]) > 0


@pytest.mark.parametrize("name", [*PULLS, "turin"])
def test_pulls_report_time_and_bytes_with_and_without_gzip(results: dict[str, Any], name: str) -> None:
    pull = results["turin"] if name == "turin" else results["pull"][name]
    assert pull["changes"] >= pull["pages"] >= 1
    assert 0 < pull["bytes_gzip"] < pull["bytes_identity"]
    assert min(pull["seconds_gzip"], pull["seconds_identity"], pull["changes_per_s"]) > 0
    # A full sync holds exactly what the server counts as visible; the incremental one exactly the new notes.
    assert pull["summary_matches"] is True


def test_peak_memory_is_read_from_the_server_processes(results: dict[str, Any]) -> None:
    assert results["rss"]["server_peak_mb"] > 10
    assert results["rss"]["turin_server_peak_mb"] > 10


def test_load_test_has_no_errors_and_stores_every_note_exactly_once(results: dict[str, Any]) -> None:
    load = results["load_test"]
    assert load["errors"] == 0, load["messages"]
    assert load["notes_sent"] == load["notes_unique"] == load["notes_stored"] == load["notes_stored_once"]
    assert load["notes_acked"] == load["notes_sent"]
    assert load["clients_at_last_id"] == load["phones"]
    assert load["phones_seeing_all_their_notes"] == load["phones"]
    assert load["exactly_once"] is True


def test_every_target_is_judged(results: dict[str, Any]) -> None:
    names = [t["name"] for t in results["targets"]]
    assert len(names) == len(set(names)) >= 20
    assert all(isinstance(t["met"], bool) and t["goal"] for t in results["targets"])


PG_WORKERS = ("workers_1", "workers_2")


@pytest.mark.parametrize("workers", PG_WORKERS)
@pytest.mark.parametrize("name", READS)
def test_postgresql_reads_have_throughput_latency_and_a_floor_of_as_many_workers(
    results: dict[str, Any], workers: str, name: str
) -> None:
    read = results["postgresql"][workers]["reads"][name]
    assert min(read["rps"], read["floor_rps"]) > 0
    assert 0 < read["p50_ms"] <= read["p99_ms"]
    assert read["errors"] == read["floor_errors"] == 0
    assert read["ratio"] == pytest.approx(read["rps"] / read["floor_rps"], rel=0.5)


@pytest.mark.parametrize("workers", PG_WORKERS)
def test_postgresql_push_applies_every_note_beside_executemany_and_copy(results: dict[str, Any], workers: str) -> None:
    push = results["postgresql"][workers]["push"]
    assert push["errors"] == 0
    assert push["applied"] == push["notes"] == push["devices"] * push["notes_per_device"]
    assert min(push["notes_per_s"], push["floor_notes_per_s"], push["floor_copy_seconds"], push["ratio"]) > 0


@pytest.mark.parametrize("workers", PG_WORKERS)
@pytest.mark.parametrize("name", PULLS)
def test_postgresql_pulls_hold_what_the_server_counts(results: dict[str, Any], workers: str, name: str) -> None:
    pull = results["postgresql"][workers]["pull"][name]
    assert pull["changes"] >= pull["pages"] >= 1
    assert 0 < pull["bytes_gzip"] < pull["bytes_identity"]
    assert pull["summary_matches"] is True


def test_postgresql_load_test_on_two_processes_stores_every_note_exactly_once(results: dict[str, Any]) -> None:
    load = results["postgresql"]["load_test"]
    assert load["workers"] == 2
    assert load["errors"] == 0, load["messages"]
    assert load["notes_sent"] == load["notes_unique"] == load["notes_stored"] == load["notes_stored_once"] > 0
    assert load["notes_acked"] == load["notes_sent"]
    assert load["clients_at_last_id"] == load["phones"]
    assert load["exactly_once"] is True


def test_the_event_was_copied_whole_and_the_database_dropped_after(results: dict[str, Any]) -> None:
    load = results["postgresql"]["load"]
    assert load["rows"] >= results["dataset"]["notes"] + results["dataset"]["changes"]
    assert load["database"].startswith("studyvisit_bench_")
    with psycopg.connect(PG_SERVER) as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (load["database"],)).fetchall()
    assert left == []


def test_postgresql_targets_are_judged_beside_sqlite(results: dict[str, Any]) -> None:
    names = [t["name"] for t in results["targets"] if "PostgreSQL" in t["name"]]
    assert any("push notes/s vs SQLite" in n for n in names)
    assert any("2 processes vs 1" in n for n in names)
    assert "PostgreSQL load test: notes stored exactly once" in names
    assert results["meta"]["postgresql_workers"] == [1, 2]


def field_app_bench(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bench.field_app", "--smoke", "--out", str(out), *options]
    return subprocess.run(command, cwd=ROOT, timeout=300, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def field_app(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("field-bench") / "field_app.json"
    done = field_app_bench(out, "--photos", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_field_app_smoke_reports_each_figure_beside_the_json_api(field_app: dict[str, Any]) -> None:
    first, offline, day = field_app["first_visit"], field_app["offline_reload"], field_app["day_offline"]
    assert min(first["no_service_worker_s"], first["with_service_worker_s"]) > 0
    assert first["s"] == max(first["no_service_worker_s"], first["with_service_worker_s"])
    assert min(first["json_get_itinerary_s"], first["json_first_sync_s"], first["bytes_on_wire"]) > 0
    assert offline["s"] > 0
    assert offline["requests_reaching_server"] == 0, "the offline reload reached the server"
    assert offline["json_revalidate_304_s"] > 0
    shell = field_app["shell"]
    assert shell["raw"] > shell["gzip6"] >= shell["gzip9"] > 0
    assert 0 < field_app["json_first_sync_bytes"]["gzip"] < field_app["json_first_sync_bytes"]["raw"]
    # Every note written offline went into the outbox and reached the server exactly once.
    assert day["outbox_before"] == day["notes"] > 0
    assert day["stored_once"] is True
    assert min(day["s"], day["json_push_s"]) > 0
    assert [t["met"] in (True, False) for t in field_app["targets"]] == [True, True, True, True]
    assert field_app["meta"]["smoke"] is True


def test_field_app_bench_attaches_photos_or_says_the_app_cannot_yet(tmp_path: Path) -> None:
    """With photos: every one reaches the server, or (before the app has model.addPhoto) a clear failure."""
    done = field_app_bench(tmp_path / "field_app.json", "--photos", "2", "--notes", "3")
    if re.search(r"export (async )?function addPhoto\b", (ROOT / "web" / "js" / "model.js").read_text()):
        assert done.returncode == 0, done.stderr[-3000:]
        day = json.loads((tmp_path / "field_app.json").read_text())["day_offline"]
        assert (day["photos"], day["stored_once"]) == (2, True)
        assert day["photos_s"] > 0
    else:
        assert done.returncode == 2
        assert "model.addPhoto missing" in done.stderr
