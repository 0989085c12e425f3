"""Section 4: the quick profile end to end, read from an existing pipeline run (nothing is rerun).

Sources: results/<profile>/runs/<task>/<run>/run.json (wall_seconds: the run's whole loop; train_seconds:
the SAM/GD steps alone, measurements excluded), results/<profile>/runs.csv when aggregate has written it,
and Snakemake's per-job benchmark files results/<profile>/benchmarks/<task>/<run>.tsv (the job's wall and CPU
seconds, start-up included, its peak RSS and mean CPU load).
The tracker's share of a run is bounded above by 1 - train/wall (wall also holds checkpoints).
The span is from the earliest run's start (run.json's mtime less its wall time) to the last run.json.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pandas as pd

from common import Section, bound_ratio, fmt, md_table
from samedge.config import ConfigError
from samedge.runs import RECORD_FILE, find_runs, read_run, run_dir

# The quick profile before issue 12's solver: commit 2f56d95, `make pipeline PROFILE=quick` from a fresh
# clone on an idle 2-core machine (2026-12-01; its jobs need the venv on PATH, as that commit's README
# did not yet say): summed Snakemake job CPU seconds and the tracker share bound per task, the runs'
# first-to-last span, and the Snakemake run's wall time (its data fetch included, ~12 s).
BEFORE = {"cpu_seconds": {"cifar10": 387.4, "mnist": 121.7, "shakespeare": 120.7},
          "tracker_share": {"cifar10": 0.7823, "mnist": 0.4877, "shakespeare": 0.751}, "span_s": 441.3,
          "pipeline_s": 473.3}


def load_runs(results: Path, profile: str) -> list[dict]:
    """The run.json records of the profile's runs under results/runs (read and checked through the
    run contract), each with its finish time and its Snakemake benchmark row."""
    try:
        keys = find_runs(results / "runs")
    except ConfigError:  # no runs at all
        return []
    runs = []
    for key in keys:
        record = read_run(results / "runs", key).record
        if record.get("profile") == profile:
            record["finished_at"] = (run_dir(results / "runs", key) / RECORD_FILE).stat().st_mtime
            job = results / "benchmarks" / key.task / f"{key.name}.tsv"
            record["job"] = pd.read_csv(job, sep="\t").iloc[-1].to_dict() if job.is_file() else None
            runs.append(record)
    return runs


def pipeline_run(results: Path) -> tuple[str, float] | None:
    """The newest Snakemake run of the workspace of `results` (a profile's folder, results/<profile>)
    that completed its whole DAG (its log under
    .snakemake/log names `localrule all` and "(100%) done"): the log's name and its wall seconds,
    from the start time in the name (Snakemake's local time) to the log's last write."""
    for log in sorted((results.parent.parent / ".snakemake" / "log").glob("*.snakemake.log"), reverse=True):
        text = log.read_text(errors="replace")
        if "localrule all" in text and "(100%) done" in text:
            start = datetime.strptime(log.name.split(".snakemake")[0], "%Y-%m-%dT%H%M%S.%f")
            return log.name, log.stat().st_mtime - start.timestamp()
    return None


def _job_sum(runs: list[dict], key: str) -> float:
    return sum(r["job"][key] for r in runs) if all(r["job"] for r in runs) else float("nan")


def section(results: Path, profile: str = "quick") -> Section:
    sec = Section(f"4. The {profile} profile end to end")
    runs = load_runs(results, profile)
    runs_csv = results / "runs.csv"
    if not runs:
        sec.lines.append(f"No {profile} run found: no run.json with profile '{profile}' under {results}/runs. "
                         "Run `make pipeline` (or `snakemake --cores all`) first; nothing here is measured.")
        return sec
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_task[r["task"]].append(r)
    total_wall = sum(r["wall_seconds"] for r in runs)
    rows = []
    for task, rs in by_task.items():
        wall = sum(r["wall_seconds"] for r in rs)
        train = sum(r["train_seconds"] for r in rs)
        done = sum(r["status"] == "completed" for r in rs)
        per_meas = sum(r["total_hvps"] for r in rs) / max(sum(r.get("measurements", 0) for r in rs), 1)
        rows.append([task, len(rs), f"{done} / {len(rs) - done}", wall, wall / total_wall, 1 - train / wall,
                     sum(r["total_hvps"] for r in rs), per_meas, _job_sum(rs, "s"), _job_sum(rs, "cpu_time"),
                     max((r["job"]["max_rss"] for r in rs if r["job"]), default=float("nan")),
                     rs[0].get("device", "")])
        sec.add(f"{task}: summed job CPU seconds (Snakemake benchmark)", _job_sum(rs, "cpu_time"), "s")
        sec.add(f"{task}: summed run wall seconds", wall, "s")
        sec.add(f"{task}: share of the summed wall time", wall / total_wall)
        sec.target(f"{task}: tracker share of its runs (upper bound: 1 - train/wall)", 1 - train / wall, 0.25,
                   note=f"before: {fmt(BEFORE['tracker_share'].get(task, float('nan')))}")
        every = rs[0]["config"]["train"].get("measure_every_steps")
        if every:
            sec.add(f"{task}: measurement cadence for a 25% tracker share",
                    every * bound_ratio(0.25) * (wall - train) / train, "steps",
                    note=f"now every {every} steps; at the current cost per measurement")
        if task in BEFORE["cpu_seconds"]:
            sec.add(f"{task}: summed job CPU seconds, now / before", _job_sum(rs, "cpu_time") / BEFORE["cpu_seconds"][task],
                    note=f"before: {fmt(BEFORE['cpu_seconds'][task])} s")
    start = min(r["finished_at"] - r["wall_seconds"] for r in runs)
    span = max(r["finished_at"] for r in runs) - start
    sec.add("all runs: summed wall seconds", total_wall, "s")
    if (pipeline := pipeline_run(results)) is not None:
        sec.add("the pipeline end to end: its last complete Snakemake run", pipeline[1], "s",
                note=f".snakemake/log/{pipeline[0]}; before: {fmt(BEFORE['pipeline_s'])} s")
    sec.add("first run start to last run end", span, "s", note=f"the pipeline's runs in parallel, as run; "
            f"before: {fmt(BEFORE['span_s'])} s")
    cpu = _job_sum(runs, "cpu_time")
    sec.add("all training jobs: CPU seconds, now / before", cpu / sum(BEFORE["cpu_seconds"].values()),
            note=f"{fmt(cpu)} s now, {fmt(sum(BEFORE['cpu_seconds'].values()))} s before; CPU time is what load "
                 "does not inflate")
    sec.lines.append(f"{len(runs)} runs of profile '{profile}' under {results}/runs"
                     + (f"; {runs_csv} lists {len(pd.read_csv(runs_csv))} runs." if runs_csv.is_file()
                        else f"; {runs_csv} not written yet (aggregate has not run)."))
    sec.lines += ["", *md_table(["task", "runs", "completed / other", "summed run wall s", "share of wall",
                                 "tracker share <=", "HVPs", "HVPs / measurement", "summed job s", "summed job CPU s",
                                 "max job RSS MB", "device"], rows)]
    loads = [r["job"]["mean_load"] for r in runs if r["job"]]
    if loads:
        sec.lines.append(f"\nJobs ran at a mean CPU load of {fmt(min(loads))}-{fmt(max(loads))} % of one core "
                         "(start-up, file writes and, on a shared machine, other users' work), so wall seconds overstate "
                         "the work; CPU seconds do not.")
    sec.lines.append(f"\nSummed run time {fmt(total_wall)} s; first start to last end {fmt(span)} s. The tracker "
                     "share is 1 - train/wall of each task's runs, an upper bound: wall also holds checkpoints and "
                     "metric rows. Section 3 measures the share itself, for MNIST.")
    return sec
