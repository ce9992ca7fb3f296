"""Running a tournament on a dask cluster (joblib's dask backend over dask.distributed).

A ``LocalCluster`` of 2 single-threaded worker processes on loopback stands in for a real
cluster: its scheduler address is passed to ``--scheduler`` exactly as a researcher passes a
remote one. Oracles: the same config run on loky (tables and records equal to the last bit);
a worker killed in the middle of a match; a client killed in the middle of a run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.cli_invoke import cli, ok, one_line_error

distributed = pytest.importorskip("distributed")

ROLLOUT = ["--game", "ipd-rollout", "--profile", "ci", "--agents", "nl,reciprocator,tft"]
#: Long enough (about a second a match) that a worker can be killed in the middle of one.
LONG_ROLLOUT = ["--game", "ipd-rollout", "--profile", "ci", "--agents", "nl,reciprocator",
                "--set", "settings.episodes=80"]
ANALYTIC = ["--game", "ipd-analytic", "--profile", "ci", "--agents", "nl,lola,reciprocator,tft"]


def local_cluster() -> distributed.LocalCluster:
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=":0")


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as running:
        yield running


def records(out: Path) -> dict[str, dict]:
    """Every stored match record by id, without its wall time."""
    found = {}
    for file in (out / "matches").glob("*.json"):
        record = json.loads(file.read_text())
        record.pop("elapsed_s", None)
        found[file.stem] = record
    return found


def payoff_csv(out: Path) -> str:
    return ok("table", out, "--format", "csv", "--table", "payoff").stdout


@pytest.fixture(scope="module")
def loky_runs(tmp_path_factory) -> dict[str, Path]:
    """The loky runs every dask run is compared with."""
    base = tmp_path_factory.mktemp("loky")
    runs = {"rollout": (ROLLOUT, base / "rollout"), "analytic": (ANALYTIC, base / "analytic"),
            "long": (LONG_ROLLOUT, base / "long")}
    for args, out in runs.values():
        ok("run", *args, "--jobs", "2", "--out", out, "--quiet")
    return {name: out for name, (_, out) in runs.items()}


@pytest.mark.parametrize(("name", "args"), [("rollout", ROLLOUT), ("analytic", ANALYTIC)])
def test_a_dask_run_equals_a_loky_run_to_the_last_bit(cluster, loky_runs, tmp_path, name, args):
    out = tmp_path / name
    result = ok("run", *args, "--backend", "dask", "--scheduler", cluster.scheduler_address,
                "--out", out, "--quiet")
    assert payoff_csv(out) == payoff_csv(loky_runs[name])
    assert records(out) == records(loky_runs[name])
    assert "matches played, 0 reused" in result.stderr
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["runs"][-1]["backend"] == "dask"


def test_without_a_scheduler_dask_starts_a_local_cluster(loky_runs, tmp_path):
    out = tmp_path / "local"
    ok("run", *ROLLOUT, "--backend", "dask", "--jobs", "2", "--out", out, "--quiet")
    assert payoff_csv(out) == payoff_csv(loky_runs["rollout"])


def test_a_worker_killed_mid_match_costs_only_that_match(loky_runs, tmp_path):
    """The scheduler reruns the lost match on a live worker; the numbers are unchanged."""
    out = tmp_path / "killed"
    killed: list[str] = []
    with local_cluster() as running, distributed.Client(running) as client:
        pids = client.run(os.getpid)

        def kill_a_busy_worker() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                busy = [w for w, tasks in client.processing().items() if tasks]
                started = any((out / "matches").glob("*.json"))  # past the first matches
                if busy and started:
                    time.sleep(0.3)  # well inside its next match
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                time.sleep(0.05)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        ok("run", *LONG_ROLLOUT, "--backend", "dask", "--scheduler",
           running.scheduler_address, "--out", out, "--quiet")
        killer.join()
    assert killed, "no worker was killed: the matches ended too soon"
    assert payoff_csv(out) == payoff_csv(loky_runs["long"])
    assert records(out) == records(loky_runs["long"])


def test_a_killed_client_resumes_from_the_results_directory(cluster, loky_runs, tmp_path):
    out = tmp_path / "client"
    command = [sys.executable, "-c", "from recip_tourney.cli import main; main()", "run",
               *LONG_ROLLOUT, "--backend", "dask", "--scheduler", cluster.scheduler_address,
               "--out", str(out), "--quiet"]
    client = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and client.poll() is None:
        if len(list((out / "matches").glob("*.json"))) >= 2:
            break
        time.sleep(0.05)
    os.killpg(client.pid, signal.SIGKILL)
    client.wait()
    stored = len(list((out / "matches").glob("*.json")))
    assert 0 < stored < 8, stored
    result = ok("run", *LONG_ROLLOUT, "--backend", "dask", "--scheduler",
                cluster.scheduler_address, "--out", out, "--quiet")
    assert f"resuming: {stored} of 8" in result.stderr
    assert records(out) == records(loky_runs["long"])


def test_dask_without_the_extra_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    line = one_line_error(cli("run", *ROLLOUT, "--backend", "dask", "--out", tmp_path / "x"))
    assert "pip install 'recip-tourney[dask]'" in line
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--backend", "ray"], "unknown backend 'ray'; valid choices: loky, dask"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "add --backend dask"),
    ],
)
def test_bad_backend_options_are_one_line(tmp_path, args, needle):
    assert needle in one_line_error(cli("run", *ROLLOUT, *args, "--out", tmp_path / "x"))


def test_an_unreachable_scheduler_is_one_line(monkeypatch, tmp_path):
    from recip_tourney.tournament import backends

    monkeypatch.setattr(backends, "CONNECT_TIMEOUT_S", 1)
    line = one_line_error(cli("run", *ROLLOUT, "--backend", "dask", "--scheduler",
                              "tcp://127.0.0.1:9", "--out", tmp_path / "x", "--quiet"))
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in line


def test_a_scheduler_without_workers_is_one_line(monkeypatch, tmp_path):
    from recip_tourney.tournament import backends

    monkeypatch.setattr(backends, "CONNECT_TIMEOUT_S", 1)
    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as empty:
        line = one_line_error(cli("run", *ROLLOUT, "--backend", "dask", "--scheduler",
                                  empty.scheduler_address, "--out", tmp_path / "x", "--quiet"))
    assert "no dask worker joined the dask cluster at" in line and "dask worker" in line
