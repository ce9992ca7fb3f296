"""Spec of the ``recip-tourney`` command line, end to end (in-process, ``ci`` profile).

- ``run`` plays every ordered pairing x seed, stores one JSON file per match next to a
  ``run.json`` manifest and prints the payoff table; it resumes a directory of the same
  settings, recomputes corrupt files (moved aside, never deleted), refuses to mix settings
  or agent parameters unless ``--force`` (which moves the old directory aside).
- ``table`` renders a results directory; ``check`` compares it with a golden CSV; ``list``
  shows the registry.
- Every user mistake: exit code 2, one line on stderr, no traceback.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from cli_invoke import cli, ok, one_line_error
from conftest import PAYOFF_COLUMNS
from typer.testing import CliRunner, Result

import recip_tourney
from recip_tourney import registry
from recip_tourney.cli import app
from recip_tourney.config import load_config
from recip_tourney.tournament import runner as runner_module
from recip_tourney.tournament.match import play_match

GAME = "ipd-analytic"
AGENTS = "nl,tft,alld"
SEEDS = 2
N_MATCHES = 3 * 3 * SEEDS
COOPERATION_COLUMNS = [
    "agent",
    "opponent",
    "state",
    "p_cooperate_mean",
    "p_cooperate_sem",
    "p_cooperate_std",
    "p_cooperate_ci95_low",
    "p_cooperate_ci95_high",
    "opponent_p_cooperate_mean",
    "opponent_p_cooperate_sem",
    "opponent_p_cooperate_std",
    "opponent_p_cooperate_ci95_low",
    "opponent_p_cooperate_ci95_high",
    "n_seeds",
]
STATES = ["overall", "start", "CC", "CD", "DC", "DD"]

# ----------------------------------------------------------------------------- helpers


def run(out: Path, *extra: object, agents: str = AGENTS, seeds: int = SEEDS) -> Result:
    """``run --profile ci --jobs 1 --quiet`` with a small roster into ``out``."""
    return cli(
        "run", "--profile", "ci", "--jobs", 1, "--quiet", "--out", out,
        "--agents", agents, "--seeds", seeds, *extra,
    )  # fmt: skip


def run_ok(out: Path, *extra: object, **kwargs: object) -> Result:
    result = run(out, *extra, **kwargs)  # type: ignore[arg-type]
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def payoff_csv(out: Path) -> str:
    return ok("table", out, "--format", "csv", "--table", "payoff").stdout


def cooperation_csv(out: Path) -> str:
    return ok("table", out, "--format", "csv", "--table", "cooperation").stdout


def match_files(out: Path) -> list[Path]:
    return sorted((out / "matches").glob("*.json"))


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: contents and modification time."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """A finished ``ci`` run of nl, tft, alld with 2 seeds (read-only: copy to modify)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    return out, run_ok(out)


@pytest.fixture
def done(finished: tuple[Path, Result]) -> Path:
    return finished[0]


@pytest.fixture
def copy_of_done(done: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run, for tests that modify it."""
    copy = tmp_path / "out"
    shutil.copytree(done, copy)
    return copy


# --------------------------------------------------------------------------------- run


def test_run_writes_manifest_and_one_file_per_match(finished: tuple[Path, Result]) -> None:
    out, result = finished
    assert (out / "run.json").is_file()
    files = match_files(out)
    assert len(files) == N_MATCHES
    records = [json.loads(f.read_text()) for f in files]
    assert {f.stem for f in files} == {r["match_id"] for r in records}
    pairings = {(r["agent"], r["opponent"]) for r in records}
    names = AGENTS.split(",")
    assert pairings == {(a, b) for a in names for b in names}
    assert sorted(r["seed_index"] for r in records) == sorted(list(range(SEEDS)) * 9)
    assert not list(out.glob("**/*.tmp"))
    assert f"{N_MATCHES} matches played, 0 reused" in result.stderr


def test_run_prints_the_payoff_table(finished: tuple[Path, Result]) -> None:
    _, result = finished
    assert f"{GAME}: average reward per step" in result.stdout
    for name in AGENTS.split(","):
        assert re.search(rf"\b{name}\b", result.stdout)
    assert "±" in result.stdout  # default statistic: sem


def test_run_json_records_config_versions_and_seeds(done: Path) -> None:
    manifest = json.loads((done / "run.json").read_text())
    cfg = load_config(None, "ci", None, [f"roster=[{AGENTS}]", f"seeds={SEEDS}"])
    assert manifest["game"] == GAME
    assert manifest["settings_hash"] == cfg.settings_hash
    assert manifest["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["versions"]["recip_tourney"] == recip_tourney.__version__
    assert manifest["runs"][0]["jobs"] == 1
    schedule = {e["match_id"]: e for e in manifest["schedule"]}
    assert len(schedule) == N_MATCHES
    for file in match_files(done):
        record = json.loads(file.read_text())
        entry = schedule[record["match_id"]]
        assert entry["seed"] == record["seed"]
        assert (entry["agent"], entry["opponent"], entry["seed_index"]) == (
            record["agent"],
            record["opponent"],
            record["seed_index"],
        )
        assert record["settings_hash"] == cfg.settings_hash


def test_run_stat_option_changes_the_printed_spread(tmp_path: Path) -> None:
    result = run_ok(tmp_path / "out", "--stat", "mean", agents="tft,alld", seeds=1)
    assert "±" not in result.stdout
    assert "mean over seeds" in result.stdout


# ------------------------------------------------------------------------------- table


def test_table_csv_has_the_documented_columns(done: Path) -> None:
    payoff = pd.read_csv(io.StringIO(payoff_csv(done)))
    assert list(payoff.columns) == PAYOFF_COLUMNS
    names = AGENTS.split(",")
    assert list(zip(payoff.agent, payoff.opponent, strict=True)) == [
        (a, b) for a in names for b in names
    ]
    assert (payoff.n_seeds == SEEDS).all()
    assert payoff[PAYOFF_COLUMNS[2:]].notna().all().all()
    coop = pd.read_csv(io.StringIO(cooperation_csv(done)))
    assert list(coop.columns) == COOPERATION_COLUMNS
    assert len(coop) == 9 * len(STATES)
    assert list(coop.state[: len(STATES)]) == STATES
    assert coop.p_cooperate_mean.between(0, 1).all()


def test_table_csv_both_to_stdout_is_the_payoff_table(done: Path) -> None:
    both = ok("table", done, "--format", "csv").stdout
    assert both == payoff_csv(done)


def test_table_csv_both_to_a_file_writes_a_cooperation_sibling(done: Path, tmp_path: Path) -> None:
    target = tmp_path / "tables" / "results.csv"
    result = ok("table", done, "--format", "csv", "--table", "both", "-o", target)
    assert result.stdout == ""
    sibling = tmp_path / "tables" / "results.cooperation.csv"
    assert target.read_text() == payoff_csv(done)
    assert sibling.read_text() == cooperation_csv(done)
    assert list(pd.read_csv(sibling).columns) == COOPERATION_COLUMNS
    assert str(target) in result.stderr and str(sibling) in result.stderr


@pytest.mark.parametrize("which", ["payoff", "cooperation"])
def test_table_csv_single_table_to_a_file(done: Path, tmp_path: Path, which: str) -> None:
    target = tmp_path / f"{which}.csv"
    ok("table", done, "--format", "csv", "--table", which, "-o", target)
    expected = payoff_csv(done) if which == "payoff" else cooperation_csv(done)
    assert target.read_text() == expected
    assert not (tmp_path / f"{which}.cooperation.csv").exists()


def test_table_markdown(done: Path) -> None:
    payoff = ok("table", done, "--format", "markdown", "--table", "payoff").stdout
    assert payoff.startswith(f"{GAME}: average reward per step, mean ± SEM over seeds")
    header = next(line for line in payoff.splitlines() if line.startswith("| agent \\ opponent"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == AGENTS.split(",")
    assert "P(cooperate)" not in payoff
    both = ok("table", done, "--format", "markdown").stdout
    assert payoff.rstrip("\n") in both
    assert "P(cooperate)" in both and "| tft vs alld" in both


@pytest.mark.parametrize(
    ("stat", "pattern"),
    [
        ("mean", r"\| -?\d\.\d{3} / -?\d\.\d{3} +\|"),
        ("sem", r"-?\d\.\d{3} ± \d\.\d{3} / "),
        ("std", r"-?\d\.\d{3} ± \d\.\d{3} / "),
        ("ci95", r"-?\d\.\d{3} \[-?\d\.\d{2}, -?\d\.\d{2}\] / "),
    ],
)
def test_table_stat_option(done: Path, stat: str, pattern: str) -> None:
    text = ok("table", done, "--format", "markdown", "--table", "payoff", "--stat", stat).stdout
    assert re.search(pattern, text), text
    if stat == "mean":
        assert "±" not in text and "[" not in text


def test_sem_and_std_differ(done: Path) -> None:
    sem = ok("table", done, "--format", "markdown", "--table", "payoff", "--stat", "sem").stdout
    std = ok("table", done, "--format", "markdown", "--table", "payoff", "--stat", "std").stdout
    assert "SEM" in sem and "standard deviation" in std
    assert sem.splitlines()[2:] != std.splitlines()[2:]


def test_table_latex(done: Path) -> None:
    text = ok("table", done, "--format", "latex").stdout
    assert text.startswith("% ")
    assert text.count("\\begin{tabular}") == 2
    assert "\\toprule" in text and "$\\pm$" in text


def test_table_json(done: Path, tmp_path: Path) -> None:
    document = json.loads(ok("table", done, "--format", "json").stdout)
    assert document["game"] == GAME
    assert len(document["payoff"]) == 9
    assert len(document["cooperation"]) == 9 * len(STATES)
    assert len(document["per_seed"]) == N_MATCHES
    target = tmp_path / "all.json"
    ok("table", done, "--format", "json", "-o", target)
    assert json.loads(target.read_text()) == document


def test_table_in_the_terminal(done: Path) -> None:
    text = ok("table", done).stdout
    assert "average reward per step" in text and "P(cooperate)" in text
    text = ok("table", done, "--table", "payoff").stdout
    assert "average reward per step" in text and "P(cooperate)" not in text


# ------------------------------------------------------------------------------- check


def test_check_against_a_golden_of_the_same_run(done: Path, tmp_path: Path) -> None:
    golden = tmp_path / "golden.csv"
    ok("table", done, "--format", "csv", "--table", "payoff", "-o", golden)
    result = ok("check", done, "--against", golden)
    assert "all 9 cells within atol=1e-06" in result.stdout


def test_check_reports_a_moved_cell(done: Path, tmp_path: Path) -> None:
    golden = tmp_path / "golden.csv"
    ok("table", done, "--format", "csv", "--table", "payoff", "-o", golden)
    frame = pd.read_csv(golden)
    cell = (frame.agent == "tft") & (frame.opponent == "alld")
    frame.loc[cell, "reward_mean"] += 1e-3
    frame.to_csv(golden, index=False)
    result = cli("check", done, "--against", golden)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "1 of 9 cells moved beyond atol=1e-06:"
    moved = [line for line in lines if "reward_mean" in line]
    assert len(moved) == 1
    assert re.search(r"\btft\b.*\balld\b.*reward_mean", moved[0])
    # within a looser tolerance it passes
    loose = ok("check", done, "--against", golden, "--atol", 0.01)
    assert "all 9 cells within atol=0.01" in loose.stdout


# -------------------------------------------------------------------------------- list


def test_list_shows_games_and_agents_with_metadata() -> None:
    text = ok("list").stdout
    assert "Games" in text and "Agents" in text
    for game in registry.games().values():
        assert game.name in text and game.family in text
    for agent in registry.agents():
        assert re.search(rf"│ {agent.name} +│", text), agent.name
    assert "yes" in text and "no" in text
    assert "…" not in text  # nothing truncated at 100 columns


def test_list_truncates_nothing_in_a_narrow_terminal() -> None:
    text = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["list"]).stdout
    assert "…" not in text
    for agent in registry.agents():
        assert re.search(rf"│ {agent.name} +│", text), agent.name


def test_list_shows_parameter_defaults() -> None:
    text = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["list", "--game", GAME]).stdout
    for agent in registry.agents(GAME):
        for key, value in agent.params().model_dump().items():
            assert f"{key}={value}" in text


# --------------------------------------------------------------------- reproducibility


def test_results_do_not_depend_on_the_number_of_jobs(tmp_path: Path) -> None:
    agents = "nl,lola,reciprocator,tft"
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    run_ok(serial, agents=agents)
    result = cli(
        "run", "--profile", "ci", "--jobs", 2, "--quiet", "--out", parallel,
        "--agents", agents, "--seeds", SEEDS,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(match_files(parallel)) == 4 * 4 * SEEDS
    assert payoff_csv(serial) == payoff_csv(parallel)
    assert cooperation_csv(serial) == cooperation_csv(parallel)


def test_same_command_twice_plays_nothing_and_changes_no_record(copy_of_done: Path) -> None:
    before = snapshot(copy_of_done / "matches")
    result = run_ok(copy_of_done)
    assert f"0 matches played, {N_MATCHES} reused" in result.stderr
    assert snapshot(copy_of_done / "matches") == before


# ------------------------------------------------------------------------------ resume


def test_adding_agents_resumes_and_keeps_finished_matches(done: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_ok(out, agents="nl,tft")
    first = snapshot(out / "matches")
    assert len(first) == 2 * 2 * SEEDS
    result = run_ok(out)
    err = result.stderr
    assert f"resuming: {len(first)} of {N_MATCHES} matches already in" in err
    assert "skipped" in err
    assert f"{N_MATCHES - len(first)} matches played, {len(first)} reused" in err
    now = snapshot(out / "matches")
    assert len(now) == N_MATCHES
    assert {name: now[name] for name in first} == first
    # same numbers as a fresh run of the full roster
    assert payoff_csv(out) == payoff_csv(done)
    assert cooperation_csv(out) == cooperation_csv(done)
    manifest = json.loads((out / "run.json").read_text())
    assert len(manifest["runs"]) == 2
    assert len(manifest["schedule"]) == N_MATCHES


def test_adding_seeds_keeps_the_first_seeds(copy_of_done: Path) -> None:
    before = snapshot(copy_of_done / "matches")
    result = run_ok(copy_of_done, seeds=SEEDS + 1)
    assert f"9 matches played, {N_MATCHES} reused" in result.stderr
    now = snapshot(copy_of_done / "matches")
    assert len(now) == N_MATCHES + 9
    assert {name: now[name] for name in before} == before
    payoff = pd.read_csv(io.StringIO(payoff_csv(copy_of_done)))
    assert (payoff.n_seeds == SEEDS + 1).all()


def test_an_interrupted_run_completes_to_the_same_results(done: Path, copy_of_done: Path) -> None:
    files = match_files(copy_of_done)
    records = {f: json.loads(f.read_text()) for f in files}
    # a whole pairing (both seeds) and one seed of another pairing
    key = {f: (r["agent"], r["opponent"], r["seed_index"]) for f, r in records.items()}
    lost = [f for f, k in key.items() if k[:2] == ("nl", "tft") or k == ("alld", "nl", 1)]
    assert len(lost) == 3
    for file in lost:
        file.unlink()
    # a temporary file left behind by a killed write is not a record
    (copy_of_done / "matches" / f".{lost[0].name}.abc.tmp").write_text('{"half":')
    result = run_ok(copy_of_done)
    assert f"3 matches played, {N_MATCHES - 3} reused" in result.stderr
    assert len(match_files(copy_of_done)) == N_MATCHES
    assert payoff_csv(copy_of_done) == payoff_csv(done)
    assert cooperation_csv(copy_of_done) == cooperation_csv(done)


def test_ctrl_c_keeps_finished_matches_and_the_same_command_resumes(
    done: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def interrupted_after_three(spec: object) -> list[dict[str, object]]:
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(spec)
        return play_match(spec)  # type: ignore[arg-type]

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(runner_module, "play_match", interrupted_after_three)
        result = run(out)
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.stderr and "resume" in result.stderr
    assert str(out) in result.stderr
    saved = snapshot(out / "matches")
    assert len(saved) == 3 * SEEDS  # three pairings, each with all its seeds
    result = run_ok(out)
    assert f"resuming: {len(saved)} of {N_MATCHES} matches already in {out}" in result.stderr
    assert {name: snapshot(out / "matches")[name] for name in saved} == saved
    assert payoff_csv(out) == payoff_csv(done)


# ----------------------------------------------------------------------------- corrupt


def test_a_truncated_match_file_stops_table_and_is_recomputed_by_run(
    done: Path, copy_of_done: Path
) -> None:
    victim = match_files(copy_of_done)[4]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    line = one_line_error(cli("table", copy_of_done, "--format", "csv"))
    assert str(victim) in line
    assert "corrupt" in line

    result = run_ok(copy_of_done)
    err = result.stderr
    assert str(victim) in err
    assert f"1 matches played, {N_MATCHES - 1} reused" in err
    moved = list((copy_of_done / "corrupt").iterdir())
    assert len(moved) == 1
    assert moved[0].name.startswith(victim.name)
    assert moved[0].read_bytes() == data[: len(data) // 2]  # kept, not deleted
    assert str(moved[0]) in err
    assert json.loads(victim.read_text())["match_id"] == victim.stem
    assert payoff_csv(copy_of_done) == payoff_csv(done)
    assert cooperation_csv(copy_of_done) == cooperation_csv(done)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda r: {**r, "match_id": "0" * 20}, id="wrong-id"),
        pytest.param(lambda r: {k: v for k, v in r.items() if k != "summary"}, id="no-summary"),
        pytest.param(lambda r: {**r, "summary": {"reward": "high"}}, id="bad-summary"),
        pytest.param(lambda r: [r], id="not-an-object"),
    ],
)
def test_invalid_match_records_are_moved_aside_and_recomputed(
    done: Path, copy_of_done: Path, damage: object
) -> None:
    victim = match_files(copy_of_done)[0]
    victim.write_text(json.dumps(damage(json.loads(victim.read_text()))))  # type: ignore[operator]
    assert str(victim) in one_line_error(cli("table", copy_of_done))
    run_ok(copy_of_done)
    assert len(list((copy_of_done / "corrupt").iterdir())) == 1
    assert payoff_csv(copy_of_done) == payoff_csv(done)


def test_the_same_file_corrupt_twice_keeps_both_copies(
    copy_of_done: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20250101-120000")  # same second
    victim = match_files(copy_of_done)[0]
    for text in ("{", "[1, 2"):
        victim.write_text(text)
        run_ok(copy_of_done)
    kept = sorted(p.read_text() for p in (copy_of_done / "corrupt").iterdir())
    assert kept == sorted(["{", "[1, 2"])


# ------------------------------------------------------------------------ refuse to mix


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("settings.batch=32", "different settings"),
        ("settings.updates=21", "different settings"),
        ("seed=3", "different settings"),
        ("agents.nl.lr=0.5", "agent 'nl'"),
    ],
)
def test_a_different_setting_or_agent_param_is_refused(
    copy_of_done: Path, override: str, words: str
) -> None:
    before = snapshot(copy_of_done)
    siblings = sorted(copy_of_done.parent.iterdir())
    line = one_line_error(run(copy_of_done, "--set", override))
    assert words in line and str(copy_of_done) in line and "--force" in line
    assert snapshot(copy_of_done) == before
    assert sorted(copy_of_done.parent.iterdir()) == siblings


def test_force_moves_the_old_results_aside(copy_of_done: Path) -> None:
    before = snapshot(copy_of_done)
    old_hash = json.loads((copy_of_done / "run.json").read_text())["settings_hash"]
    result = run_ok(copy_of_done, "--set", "settings.batch=32", "--force")
    aside = list(copy_of_done.parent.glob(f"{copy_of_done.name}.old-*"))
    assert len(aside) == 1
    assert snapshot(aside[0]) == before  # nothing deleted or changed
    assert str(aside[0]) in result.stderr
    manifest = json.loads((copy_of_done / "run.json").read_text())
    assert manifest["settings_hash"] != old_hash
    assert manifest["config"]["settings"]["batch"] == 32
    assert len(manifest["runs"]) == 1
    assert len(match_files(copy_of_done)) == N_MATCHES
    assert f"{N_MATCHES} matches played, 0 reused" in result.stderr


def test_force_twice_in_the_same_second_keeps_both_old_dirs(
    copy_of_done: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20250101-120000")
    first = snapshot(copy_of_done)
    run_ok(copy_of_done, "--set", "settings.batch=32", "--force", agents="tft,alld", seeds=1)
    second = snapshot(copy_of_done)
    run_ok(copy_of_done, "--set", "settings.batch=16", "--force", agents="tft,alld", seeds=1)
    aside = sorted(copy_of_done.parent.glob(f"{copy_of_done.name}.old-*"))
    assert len(aside) == 2
    assert sorted(map(snapshot, aside), key=len) == sorted([first, second], key=len)


def test_force_on_a_compatible_dir_starts_over(copy_of_done: Path) -> None:
    result = run_ok(copy_of_done, "--force")
    assert f"{N_MATCHES} matches played, 0 reused" in result.stderr
    assert len(list(copy_of_done.parent.glob(f"{copy_of_done.name}.old-*"))) == 1


def test_results_of_another_game_are_refused(copy_of_done: Path) -> None:
    manifest_file = copy_of_done / "run.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["game"] = "coin-game"
    manifest_file.write_text(json.dumps(manifest))
    before = snapshot(copy_of_done)
    line = one_line_error(run(copy_of_done))
    assert "'coin-game'" in line and GAME in line
    assert snapshot(copy_of_done) == before


def test_a_corrupt_manifest_is_refused(copy_of_done: Path) -> None:
    (copy_of_done / "run.json").write_text("{not json")
    before = snapshot(copy_of_done)
    line = one_line_error(run(copy_of_done))
    assert str(copy_of_done / "run.json") in line
    assert snapshot(copy_of_done) == before
    assert str(copy_of_done / "run.json") in one_line_error(cli("table", copy_of_done))


def test_force_moves_aside_a_dir_with_a_corrupt_manifest(copy_of_done: Path) -> None:
    (copy_of_done / "run.json").write_text("{not json")
    before = snapshot(copy_of_done)
    run_ok(copy_of_done, "--force")
    (aside,) = copy_of_done.parent.glob(f"{copy_of_done.name}.old-*")
    assert snapshot(aside) == before
    assert len(match_files(copy_of_done)) == N_MATCHES


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def bad_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("seeds: 2\nsettings:\n  batch: [64\n  updates: 3\n")
    return path


RUN = ("run", "--profile", "ci", "--jobs", "1", "--quiet", "--agents", "tft,alld")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(("--game", "tetris"), [r"unknown game 'tetris'", GAME], id="game"),
        pytest.param(
            ("--agents", "nl,bogus"),
            ["unknown agent 'bogus'", *(a.name for a in registry.agents(GAME))],
            id="agent",
        ),
        pytest.param(("--agents", " , "), ["--agents"], id="empty-agents"),
        pytest.param(("--set", "rounds=3"), ["unknown config key rounds", "valid keys"], id="key"),
        pytest.param(("--set", "settings.lr=3"), ["unknown config key settings.lr"], id="skey"),
        pytest.param(("--seeds", "0"), ["--seeds", "positive"], id="seeds"),
        pytest.param(("--jobs", "0"), ["--jobs", "positive"], id="jobs"),
        pytest.param(("--set", "settings.batch=-5"), ["settings.batch=-5"], id="batch"),
        pytest.param(("--set", "agents.nl.lr=-1"), ["agents.nl.lr=-1"], id="lr"),
        pytest.param(("--agents", "nl,tft,nl"), ["'nl' appears twice"], id="duplicate"),
        pytest.param(("--set", "nonsense"), ["key=value"], id="set-syntax"),
        pytest.param(("--profile", "huge"), ["unknown profile 'huge'"], id="profile"),
        pytest.param(("--stat", "median"), ["unknown statistic 'median'", "ci95"], id="stat"),
    ],
)
def test_bad_run_input_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], expected: list[str]
) -> None:
    out = tmp_path / "out"
    line = one_line_error(cli(*RUN, "--out", out, *args))
    for text in expected:
        assert text in line, line
    assert not out.exists()  # bad input creates nothing


def test_bad_yaml_file_names_file_and_line(tmp_path: Path, bad_yaml: Path) -> None:
    line = one_line_error(cli(*RUN, "--out", tmp_path / "out", "--config", bad_yaml))
    assert f"{bad_yaml}:4:" in line


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert str(missing) in one_line_error(cli(*RUN, "--out", tmp_path / "o", "--config", missing))


def test_config_file_of_another_game(tmp_path: Path) -> None:
    other = tmp_path / "coin.yaml"
    other.write_text("game: coin-game\n")
    line = one_line_error(cli(*RUN, "--out", tmp_path / "o", "--game", GAME, "--config", other))
    assert "coin-game" in line


def test_unwritable_out_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = blocker / "results"
    line = one_line_error(cli(*RUN, "--out", out))
    assert str(out) in line
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(("--format", "xml"), ["unknown format 'xml'", "markdown", "csv"], id="fmt"),
        pytest.param(("--stat", "foo"), ["unknown statistic 'foo'", "sem"], id="stat"),
        pytest.param(("--table", "wins"), ["unknown table 'wins'", "payoff"], id="table"),
        pytest.param(("-o", "x.txt"), ["-o needs --format"], id="o-without-format"),
    ],
)
def test_bad_table_options(done: Path, args: tuple[str, ...], expected: list[str]) -> None:
    line = one_line_error(cli("table", done, *args))
    for text in expected:
        assert text in line, line


def test_table_on_a_missing_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    assert str(missing) in one_line_error(cli("table", missing))
    assert not missing.exists()


def test_table_on_a_dir_that_is_not_results(tmp_path: Path) -> None:
    assert "run.json" in one_line_error(cli("table", tmp_path))


def test_table_to_an_unwritable_file(done: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "payoff.csv"
    assert str(target) in one_line_error(cli("table", done, "--format", "csv", "-o", target))


def test_check_against_a_missing_golden(done: Path, tmp_path: Path) -> None:
    missing = tmp_path / "golden.csv"
    line = one_line_error(cli("check", done, "--against", missing))
    assert str(missing) in line and "does not exist" in line


def test_check_against_a_file_that_is_not_a_payoff_csv(done: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "golden.csv"
    bogus.write_text("a,b\n1,2\n")
    assert "reward_mean" in one_line_error(cli("check", done, "--against", bogus))


def test_check_negative_atol(done: Path, tmp_path: Path) -> None:
    golden = tmp_path / "golden.csv"
    ok("table", done, "--format", "csv", "--table", "payoff", "-o", golden)
    assert "--atol" in one_line_error(cli("check", done, "--against", golden, "--atol", "-1"))


def test_list_unknown_game() -> None:
    assert GAME in one_line_error(cli("list", "--game", "tetris"))


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    """The same contract through the real console script (not only in-process)."""
    command = shutil.which("recip-tourney", path=str(Path(sys.executable).parent))
    assert command is not None
    proc = subprocess.run(
        [command, "run", "--profile", "ci", "--agents", "nl,bogus", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown agent 'bogus'" in lines[0]
