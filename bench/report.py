"""The targets every figure is judged by, and the printed table."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

READS = {"sites": "GET sites", "itinerary": "GET itinerary (participant)", "revalidate_304": "GET itinerary, 304"}
UPLOADS = {"whole": "whole", "parts": "in parts"}
PULLS = {
    "participant_initial": "participant initial sync",
    "organizer_initial": "organizer initial sync",
    "participant_incremental": "participant pull after changes",
}


@dataclass(frozen=True)
class Target:
    """One figure beside its goal."""

    name: str
    value: float
    shown: str
    goal: str
    met: bool


def _target(name: str, value: float, fmt: str, goal: str, test: Callable[[float], bool]) -> Target:
    return Target(name=name, value=value, shown=fmt.format(value), goal=goal, met=test(value))


def evaluate(results: dict[str, Any]) -> list[Target]:
    """Every target of the benchmark, met or not."""
    targets: list[Target] = []
    for key, label in READS.items():
        read = results["reads"][key]
        targets.append(_target(f"{label}: req/s vs floor", read["ratio"], "{:.0%}", ">= 50%", lambda v: v >= 0.5))
        targets.append(_target(f"{label}: p99", read["p99_ms"], "{:.1f} ms", "< 50 ms", lambda v: v < 50))
        targets.append(_target(f"{label}: errors", read["errors"], "{:.0f}", "0", lambda v: v == 0))
    push = results["push"]
    targets.append(_target("push: notes/s", push["notes_per_s"], "{:,.0f}", ">= 30,000", lambda v: v >= 30_000))
    targets.append(_target("push: vs sqlite floor", push["ratio"], "{:.1%}", ">= 10%", lambda v: v >= 0.10))
    targets.append(_target("push: errors", push["errors"], "{:.0f}", "0", lambda v: v == 0))
    for key, label in PULLS.items():
        pull = results["pull"][key]
        targets.append(
            _target(f"pull, {label}: changes/s", pull["changes_per_s"], "{:,.0f}", ">= 100,000", lambda v: v >= 1e5)
        )
    uploads = results["uploads"]
    for mode in UPLOADS:
        up = uploads[mode]
        label = f"photo uploads, {UPLOADS[mode]}"
        targets.append(_target(f"{label}: errors", up["errors"], "{:.0f}", "0", lambda v: v == 0))
        stored = float(up["held_by_server"] == up["stored"] == up["photos"])
        targets.append(_target(f"{label}: every photo held", stored, "{:.0f}", "1 (yes)", lambda v: v == 1))
    organizer = results["pull"]["organizer_initial"]["seconds_gzip"]
    targets.append(_target("organizer initial sync (large event)", organizer, "{:.2f} s", "< 3 s", lambda v: v < 3))
    turin = results["turin"]
    targets.append(
        _target(
            "Turin participant initial sync", turin["seconds_gzip"] * 1000, "{:.1f} ms", "< 100 ms", lambda v: v < 100
        )
    )
    targets.append(
        _target(
            "Turin participant initial sync, gzip", turin["bytes_gzip"], "{:,.0f} B", "< 50 KB", lambda v: v < 50_000
        )
    )
    targets.append(
        _target("server peak RSS", results["rss"]["server_peak_mb"], "{:.0f} MB", "< 200 MB", lambda v: v < 200)
    )
    load = results["load_test"]
    targets.append(_target("load test: errors", load["errors"], "{:.0f}", "0", lambda v: v == 0))
    targets.append(
        _target(
            "load test: notes stored exactly once", float(load["exactly_once"]), "{:.0f}", "1 (yes)", lambda v: v == 1
        )
    )
    if "postgresql" in results:
        targets += evaluate_postgresql(results)
    return targets


def evaluate_postgresql(results: dict[str, Any]) -> list[Target]:
    """PostgreSQL beside SQLite (issue 13): push at least half SQLite's notes/s, pulls at least as fast,
    2 processes at least 1.3x the reads of 1; no errors, every note of the load test stored exactly once."""
    pg = results["postgresql"]
    counts = sorted(int(key.removeprefix("workers_")) for key in pg if key.startswith("workers_"))
    one, most = pg[f"workers_{counts[0]}"], pg[f"workers_{counts[-1]}"]
    targets: list[Target] = []
    for count in counts:
        run = pg[f"workers_{count}"]
        label = f"PostgreSQL, {count} process{'es' if count > 1 else ''}"
        errors = sum(run["reads"][key]["errors"] for key in READS) + run["push"]["errors"]
        targets.append(_target(f"{label}: read and push errors", errors, "{:.0f}", "0", lambda v: v == 0))
        sqlite_push = results["push"]["notes_per_s"]
        targets.append(
            _target(
                f"{label}: push notes/s vs SQLite's",
                run["push"]["notes_per_s"] / sqlite_push if sqlite_push else 0.0,
                "{:.0%}",
                ">= 50%",
                lambda v: v >= 0.5,
            )
        )
        for key, label_pull in PULLS.items():
            sqlite_rate = results["pull"][key]["changes_per_s"]
            targets.append(
                _target(
                    f"{label}: pull, {label_pull}, changes/s vs SQLite's",
                    run["pull"][key]["changes_per_s"] / sqlite_rate if sqlite_rate else 0.0,
                    "{:.0%}",
                    ">= 100%",
                    lambda v: v >= 1.0,
                )
            )
            targets.append(
                _target(
                    f"{label}: pull, {label_pull}, summary matches",
                    float(run["pull"][key]["summary_matches"]),
                    "{:.0f}",
                    "1 (yes)",
                    lambda v: v == 1,
                )
            )
    if len(counts) > 1:
        for key, label_read in READS.items():
            base = one["reads"][key]["rps"]
            targets.append(
                _target(
                    f"{label_read}: req/s, {counts[-1]} processes vs {counts[0]} (PostgreSQL)",
                    most["reads"][key]["rps"] / base if base else 0.0,
                    "{:.2f}x",
                    ">= 1.3x",
                    lambda v: v >= 1.3,
                )
            )
    load = pg["load_test"]
    targets.append(_target("PostgreSQL load test: errors", load["errors"], "{:.0f}", "0", lambda v: v == 0))
    targets.append(
        _target(
            "PostgreSQL load test: notes stored exactly once",
            float(load["exactly_once"]),
            "{:.0f}",
            "1 (yes)",
            lambda v: v == 1,
        )
    )
    return targets


def render_postgresql(results: dict[str, Any]) -> str:
    """SQLite and PostgreSQL side by side, each figure beside its own engine's floor."""
    pg = results["postgresql"]
    counts = sorted(int(key.removeprefix("workers_")) for key in pg if key.startswith("workers_"))
    header = ["figure", "SQLite, 1 proc"] + [f"PostgreSQL, {c} proc" for c in counts]
    columns = [results] + [pg[f"workers_{c}"] for c in counts]
    rows: list[list[str]] = []
    for key, label in READS.items():
        rows.append(
            [f"{label}: req/s (ratio to floor)"]
            + [f"{r['reads'][key]['rps']:,.0f} ({r['reads'][key]['ratio']:.0%})" for r in columns]
        )
        rows.append([f"{label}: p99 ms"] + [f"{r['reads'][key]['p99_ms']:.1f}" for r in columns])
    rows.append(
        ["push: notes/s (ratio to floor)"]
        + [f"{r['push']['notes_per_s']:,.0f} ({r['push']['ratio']:.1%})" for r in columns]
    )
    rows.append(["push floor: executemany notes/s"] + [f"{r['push']['floor_notes_per_s']:,.0f}" for r in columns])
    rows.append(
        ["push floor: COPY notes/s"]
        + [""]
        + [f"{r['push']['notes'] / r['push']['floor_copy_seconds']:,.0f}" for r in columns[1:]]
    )
    for key, label in PULLS.items():
        rows.append([f"pull, {label}: changes/s"] + [f"{r['pull'][key]['changes_per_s']:,.0f}" for r in columns])
    load, sqlite_load = pg["load_test"], results["load_test"]
    parts = [
        _table(
            f"\nSQLite and PostgreSQL ({pg['load']['server_version']}), each beside its own floor; "
            f"the event copied in {pg['load']['seconds']:.1f} s ({pg['load']['rows']:,} rows)",
            header,
            rows,
        ),
        f"Load test on PostgreSQL, {load['workers']} processes: {load['phones']} phones, {load['seconds']:.1f} s, "
        f"{load['errors']} errors ({load['pulls_refused']} pull pages refused, then retried); "
        f"{load['notes_stored_once']:,} of {load['notes_sent']:,} notes stored exactly once "
        f"(SQLite, 1 process: {sqlite_load['seconds']:.1f} s)",
    ]
    return "\n".join(parts)


def _size(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n / (1 << 10):g} KiB"


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += [
        "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in rows
    ]
    return "\n".join(lines)


def render(results: dict[str, Any], targets: list[Target]) -> str:
    """The human-readable summary printed at the end of a run."""
    meta = results["meta"]
    parts = [
        f"studyvisit benchmark — {meta['date']}, commit {meta['commit']}, {meta['nproc']} cores, Python {meta['python']}, "
        f"{'smoke' if meta['smoke'] else 'full'} run, medians of {meta['runs']} run(s); "
        f"CPU busy before the run: {meta['cpu_busy_before']:.0%}",
    ]
    reads = results["reads"]
    parts.append(
        _table(
            f"\nReads: {meta['connections']} connections, Accept-Encoding: gzip, {meta['duration_s']:g} s each "
            f"(generator: {reads['generator']['chosen']})",
            ["request", "body B", "req/s", "floor req/s", "ratio", "p50 ms", "p99 ms", "floor p99 ms"],
            [
                [
                    label,
                    f"{reads[key]['body_bytes']:,}",
                    f"{reads[key]['rps']:,.0f}",
                    f"{reads[key]['floor_rps']:,.0f}",
                    f"{reads[key]['ratio']:.0%}",
                    f"{reads[key]['p50_ms']:.1f}",
                    f"{reads[key]['p99_ms']:.1f}",
                    f"{reads[key]['floor_p99_ms']:.1f}",
                ]
                for key, label in READS.items()
            ],
        )
    )
    push = results["push"]
    parts.append(
        _table(
            f"\nPush: {push['devices']} devices x {push['notes_per_device']:,} notes, batches of {push['batch_size']}",
            ["", "notes", "seconds", "notes/s", "sqlite floor notes/s", "ratio", "batch p50 ms", "batch p99 ms"],
            [
                [
                    "push",
                    f"{push['notes']:,}",
                    f"{push['seconds']:.2f}",
                    f"{push['notes_per_s']:,.0f}",
                    f"{push['floor_notes_per_s']:,.0f}",
                    f"{push['ratio']:.1%}",
                    f"{push['batch_p50_ms']:.0f}",
                    f"{push['batch_p99_ms']:.0f}",
                ]
            ],
        )
    )
    uploads = results["uploads"]
    disk = uploads["disk"]
    parts_label = f"{_size(uploads['part_bytes'])} parts (Content-Range)"
    parts.append(
        _table(
            f"\nPhoto uploads: {uploads['photos']} JPEGs of ~{_size(uploads['photo_bytes_approx'])}, "
            f"{uploads['clients']} clients at once, HEAD then PUT; disk: write + fsync + rename per file, "
            f"same directory ({uploads['filesystem']})",
            ["upload", "MiB", "seconds", "requests", "MiB/s", "disk MiB/s", "ratio", "photo p50 ms", "photo p99 ms"],
            [
                [
                    "whole (one PUT)" if mode == "whole" else parts_label,
                    f"{up['bytes'] / (1 << 20):,.1f}",
                    f"{up['seconds']:.2f}",
                    f"{up['requests']:.0f}",
                    f"{up['mib_per_s']:,.1f}",
                    f"{up['disk_mib_per_s']:,.1f}",
                    f"{up['ratio']:.0%}",
                    f"{up['photo_p50_ms']:.0f}",
                    f"{up['photo_p99_ms']:.0f}",
                ]
                for mode, up in ((m, uploads[m]) for m in UPLOADS)
            ]
            + [
                [
                    "disk alone (one writer)",
                    f"{disk['bytes'] / (1 << 20):,.1f}",
                    f"{disk['seconds']:.2f}",
                    "",
                    f"{disk['mib_per_s']:,.1f}",
                    "",
                    "",
                    "",
                    "",
                ]
            ],
        )
    )
    pulls = {**{key: results["pull"][key] for key in PULLS}, "turin": results["turin"]}
    labels = {**PULLS, "turin": "Turin demo, participant initial sync"}
    parts.append(
        _table(
            "\nPulls (limit 5000; Turin: 500)",
            ["sync", "changes", "pages", "s gzip", "KB gzip", "s plain", "KB plain", "changes/s"],
            [
                [
                    labels[key],
                    f"{p['changes']:,.0f}",
                    f"{p['pages']:.0f}",
                    f"{p['seconds_gzip']:.3f}",
                    f"{p['bytes_gzip'] / 1000:,.1f}",
                    f"{p['seconds_identity']:.3f}",
                    f"{p['bytes_identity'] / 1000:,.1f}",
                    f"{p['changes_per_s']:,.0f}",
                ]
                for key, p in pulls.items()
            ],
        )
    )
    load = results["load_test"]
    parts.append(
        f"\nLoad test: {load['phones']} phones at once, {load['seconds']:.1f} s, {load['requests']:,} requests, "
        f"{load['errors']} errors ({load['pulls_refused']} of them pull pages refused, then retried); "
        f"{load['notes_stored_once']:,} of {load['notes_sent']:,} notes stored exactly once; "
        f"phone p50 {load['phone_p50_s']:.1f} s, p99 {load['phone_p99_s']:.1f} s"
    )
    rss = results["rss"]
    after = ", ".join(f"{name} {mb:.0f}" for name, mb in rss["peak_after_phase_mb"].items())
    parts.append(
        f"Server peak RSS: {rss['server_peak_mb']:.0f} MB (peak after each phase, MB: {after}; "
        f"Turin server: {rss['turin_server_peak_mb']:.0f} MB)"
    )
    if "postgresql" in results:
        parts.append(render_postgresql(results))
    foreign = results.get("foreign_cpu", {})
    parts.append(
        "CPU used by other processes during each phase (0% = a quiet machine): "
        + ", ".join(f"{name} {share:.0%}" for name, share in foreign.items())
    )
    parts.append(
        _table(
            "\nTargets",
            ["figure", "value", "target", "met"],
            [[t.name, t.shown, t.goal, "yes" if t.met else "NO"] for t in targets],
        )
    )
    return "\n".join(parts)
