"""Spec of recip_tourney.config: where a tournament's config comes from, and what is refused.

Later sources win: the shipped paper config, then the profile (``ci``), then the user's
``--config`` file, then each ``--set dotted.key=value``. Every mistake is a
:class:`UserError` whose one-line message names the problem and the valid choices.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recip_tourney import registry
from recip_tourney.config import Config, load_config, load_yaml, parse_yaml, profiles
from recip_tourney.errors import UserError
from recip_tourney.tournament.runner import schedule

GAME = "ipd-analytic"
PAPER_ROSTER = ["nl", "lola", "mmaml", "mfos", "reciprocator"]
AGENTS = sorted(a.name for a in registry.agents(GAME))
SETTINGS_KEYS = ["gamma", "batch", "updates", "warmup_updates", "init_std", "dtype", "device"]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def user_error(*args: object, **kwargs: object) -> str:
    """The message of the UserError that ``load_config(*args, **kwargs)`` raises."""
    with pytest.raises(UserError) as info:
        load_config(*args, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


def roster(cfg: Config) -> list[str]:
    return [p.name for p in cfg.roster]


# --------------------------------------------------------------------------- resolution


def test_paper_config_is_the_default() -> None:
    cfg = load_config()
    assert cfg.game == GAME
    assert (cfg.seed, cfg.seeds) == (0, 5)
    assert roster(cfg) == PAPER_ROSTER
    s = cfg.settings.model_dump()
    assert (s["batch"], s["updates"], s["gamma"]) == (1024, 100, 0.96)
    assert cfg.agent_params["reciprocator"]["baseline_index"] == "as_implemented"
    # every registered agent has its (default) params, rostered or not
    assert sorted(cfg.agent_params) == AGENTS


def test_ci_profile_changes_only_its_keys() -> None:
    paper, ci = load_config(profile="paper"), load_config(profile="ci")
    assert ci.seeds == 2
    expected = {**paper.settings.model_dump(), "batch": 64, "updates": 20, "dtype": "float64"}
    assert ci.settings.model_dump() == expected
    assert roster(ci) == roster(paper) + ["tft", "alld"]
    tiny = {"mmaml": {"n_inits": 3, "iterations": 4, "unroll": 10, "meta_batch": 8},
            "mfos": {"meta_episodes": 3, "train_batch": 32, "hidden": 16,
                     "curriculum_decay": 0.4}}  # fmt: skip
    expected = {name: {**p, **tiny.get(name, {})} for name, p in paper.agent_params.items()}
    assert ci.agent_params == expected


def test_unknown_profile_is_refused() -> None:
    message = user_error(profile="huge")
    assert "huge" in message and "paper" in message and "ci" in message


def test_a_game_may_ship_its_own_profiles() -> None:
    assert profiles("coins") == ("paper", "ci", "figures")
    assert profiles("ipd-analytic") == ("paper", "ci")
    message = user_error(profile="figures")  # ipd-analytic has none
    assert "figures" in message and "valid profiles: paper, ci" in message


def test_pairings_restrict_the_schedule_to_the_listed_ordered_pairs() -> None:
    cfg = load_config("coins", "figures")
    pairs = [(s.agent.name, s.opponent.name) for s in schedule(cfg)]
    assert pairs == [("nl", "nl"), ("reciprocator", "nl"), ("reciprocator", "reciprocator"),
                     ("mfos", "nl"), ("mfos", "mfos")]
    full = {(s.agent.name, s.opponent.name): s for s in schedule(
        load_config("coins", "figures", None, ["pairings=null"]))}
    assert len(full) == 9
    for spec in schedule(cfg):  # the same matches (seeds, ids) as in the full round robin
        assert spec == full[(spec.agent.name, spec.opponent.name)]
    assert cfg.to_dict()["pairings"][0] == ["nl", "nl"]
    assert "pairings" not in load_config("coins").to_dict()


@pytest.mark.parametrize(("pairings", "expected"), [
    ("[[nl, greedy]]", "pairing ['nl', 'greedy'] names 'greedy', which is not in the roster"),
    ("[]", "config key pairings is empty"),
    ("[[nl]]", "missing config key pairings.0.1"),
])
def test_bad_pairings_are_refused(pairings: str, expected: str) -> None:
    with pytest.raises(UserError, match=re.escape(expected)):
        load_config("coins", "figures", None, [f"pairings={pairings}"])


def test_resolution_order_paper_then_profile_then_file_then_set(tmp_path: Path) -> None:
    user = write(
        tmp_path / "user.yaml",
        "seed: 7\nsettings:\n  batch: 16\n  updates: 3\nagents:\n  nl: {lr: 0.25}\n",
    )
    cfg = load_config(None, "ci", user, ["settings.batch=8", "agents.lola.lr=0.5"])
    s = cfg.settings.model_dump()
    assert s["gamma"] == 0.96  # paper
    assert cfg.seeds == 2  # ci profile over paper
    assert s["updates"] == 3  # user file over ci profile
    assert cfg.seed == 7  # user file over paper
    assert s["batch"] == 8  # --set over user file over ci profile
    assert cfg.agent_params["nl"] == {"lr": 0.25}  # user file
    assert cfg.agent_params["lola"] == {"lr": 0.5, "lookahead": 1.0}  # --set, merged deeply
    # the roster entries carry the resolved params
    assert dict((p.name, p.params) for p in cfg.roster)["nl"] == {"lr": 0.25}


def test_later_set_wins_over_earlier_set() -> None:
    cfg = load_config(None, "ci", None, ["settings.batch=8", "settings.batch=4"])
    assert cfg.settings.model_dump()["batch"] == 4


def test_set_accepts_lists_and_agent_params() -> None:
    cfg = load_config(
        None,
        "ci",
        None,
        ["roster=[nl,tft,reciprocator]", "agents.reciprocator.baseline_index=corrected"],
    )
    assert roster(cfg) == ["nl", "tft", "reciprocator"]
    params = dict((p.name, p.params) for p in cfg.roster)
    assert params["reciprocator"]["baseline_index"] == "corrected"
    assert params["reciprocator"]["rr_weight"] == 5.0  # the rest keep their defaults
    assert cfg.agent_params["reciprocator"]["baseline_index"] == "corrected"


def test_set_values_are_parsed_as_yaml() -> None:
    cfg = load_config(None, "ci", None, ["settings.gamma=0.5", "settings.dtype=float64"])
    s = cfg.settings.model_dump()
    assert s["gamma"] == 0.5 and s["dtype"] == "float64"


def test_user_file_may_name_its_game(tmp_path: Path) -> None:
    user = write(tmp_path / "user.yaml", f"game: {GAME}\nseeds: 3\n")
    assert load_config(None, "ci", user).seeds == 3
    assert load_config(GAME, "ci", user).seeds == 3


def test_an_empty_user_file_changes_nothing(tmp_path: Path) -> None:
    user = write(tmp_path / "empty.yaml", "# nothing here\n")
    assert load_config(None, "ci", user).to_dict() == load_config(None, "ci").to_dict()


def test_to_dict_records_the_resolved_config() -> None:
    cfg = load_config(None, "ci", None, ["roster=[tft,nl]", "agents.nl.lr=0.5"])
    data = cfg.to_dict()
    assert data["game"] == GAME
    assert data["roster"] == ["tft", "nl"]
    assert data["seeds"] == 2
    assert data["settings"]["batch"] == 64
    assert data["agents"]["nl"] == {"lr": 0.5}


# ------------------------------------------------------------------------ settings hash


def test_settings_hash_ignores_roster_seeds_and_agent_params() -> None:
    base = load_config(None, "ci").settings_hash
    assert load_config(None, "ci", None, ["roster=[nl,tft]"]).settings_hash == base
    assert load_config(None, "ci", None, ["seeds=4"]).settings_hash == base
    assert load_config(None, "ci", None, ["roster=[tft,nl,alld]", "seeds=1"]).settings_hash == base
    # agent params key each match id instead
    assert load_config(None, "ci", None, ["agents.nl.lr=0.5"]).settings_hash == base


@pytest.mark.parametrize(
    "override",
    [
        "settings.batch=32",
        "settings.updates=21",
        "settings.gamma=0.9",
        "settings.dtype=float32",
        "seed=1",
    ],
)
def test_settings_hash_changes_with_what_shapes_a_match(override: str) -> None:
    assert (
        load_config(None, "ci", None, [override]).settings_hash
        != load_config(None, "ci").settings_hash
    )


def test_settings_hash_is_stable() -> None:
    a, b = load_config(None, "ci"), load_config(None, "ci")
    assert a.settings_hash == b.settings_hash
    assert re.fullmatch(r"[0-9a-f]{16}", a.settings_hash)
    assert load_config(None, "paper").settings_hash != a.settings_hash


# ------------------------------------------------------------------------------- errors


def test_unknown_game_lists_valid_games() -> None:
    message = user_error("tetris")
    assert "tetris" in message
    for name in registry.games():
        assert name in message


def test_unknown_agent_in_roster_lists_valid_agents() -> None:
    message = user_error(None, "ci", None, ["roster=[nl,bogus]"])
    assert "'bogus'" in message
    for name in AGENTS:
        assert name in message


def test_unknown_agent_in_agents_section_lists_valid_agents() -> None:
    message = user_error(None, "ci", None, ["agents.bogus.lr=1"])
    assert "'bogus'" in message
    for name in AGENTS:
        assert name in message


def test_duplicate_roster_entry_is_refused() -> None:
    message = user_error(None, "ci", None, ["roster=[nl,tft,nl]"])
    assert "'nl'" in message and "twice" in message


def test_empty_roster_is_refused() -> None:
    assert "roster" in user_error(None, "ci", None, ["roster=[]"])


@pytest.mark.parametrize(
    ("override", "key", "valid"),
    [
        ("rounds=3", "rounds",
         ["game", "seed", "seeds", "roster", "pairings", "settings", "agents"]),
        ("settings.batchsize=3", "settings.batchsize", SETTINGS_KEYS),
        ("agents.nl.learning_rate=3", "agents.nl.learning_rate", ["lr"]),
        ("agents.lola.lr_=3", "agents.lola.lr_", ["lr", "lookahead"]),
    ],
)
def test_unknown_config_key_lists_valid_keys(override: str, key: str, valid: list[str]) -> None:
    message = user_error(None, "ci", None, [override])
    assert f"unknown config key {key};" in message
    listed = message.split("valid keys:")[1]
    assert [k.strip() for k in listed.split(",")] == valid


def test_unknown_key_in_a_user_file_is_refused(tmp_path: Path) -> None:
    user = write(tmp_path / "user.yaml", "settings:\n  batch: 16\n  lr: 0.1\n")
    assert "unknown config key settings.lr" in user_error(None, "ci", user)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("seeds=0", "seeds"),
        ("seeds=-2", "seeds"),
        ("seed=-1", "seed"),
        ("settings.batch=-1", "settings.batch"),
        ("settings.batch=0", "settings.batch"),
        ("settings.updates=0", "settings.updates"),
        ("settings.gamma=1.5", "settings.gamma"),
        ("settings.gamma=1.0", "settings.gamma"),
        ("settings.gamma=0", "settings.gamma"),
        ("settings.init_std=-0.1", "settings.init_std"),
        ("settings.batch=lots", "settings.batch"),
        ("settings.dtype=float16", "settings.dtype"),
        ("agents.nl.lr=-1", "agents.nl.lr"),
        ("agents.reciprocator.baseline_index=foo", "agents.reciprocator.baseline_index"),
        ("agents.reciprocator.opponent_view=post", "agents.reciprocator.opponent_view"),
        ("agents.random.p_cooperate=1.5", "agents.random.p_cooperate"),
        ("roster=nl", "roster"),
        ("settings=5", "settings"),
    ],
)
def test_bad_values_name_the_key(override: str, key: str) -> None:
    message = user_error(None, "ci", None, [override])
    assert message.startswith(f"bad config value {key}="), message


def test_bad_literal_lists_the_allowed_values() -> None:
    message = user_error(None, "ci", None, ["agents.reciprocator.baseline_index=foo"])
    assert "'foo'" in message
    assert "as_implemented" in message and "corrected" in message


def test_bad_values_in_a_user_file(tmp_path: Path) -> None:
    user = write(tmp_path / "user.yaml", "seeds: 0\n")
    assert user_error(None, "ci", user).startswith("bad config value seeds=0")


def test_game_cannot_be_changed_by_set() -> None:
    message = user_error(None, "ci", None, ["game=other-game"])
    assert "other-game" in message and "--game" in message


@pytest.mark.parametrize("assignment", ["settings.batch", "=3", ""])
def test_set_without_key_and_value_is_refused(assignment: str) -> None:
    assert "key=value" in user_error(None, "ci", None, [assignment])


def test_set_with_malformed_yaml_value_is_refused() -> None:
    message = user_error(None, "ci", None, ["roster=[nl, tft"])
    assert "--set roster" in message and "not valid YAML" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("seeds: 3\nsettings:\n  batch: [1, 2\n  updates: 4\n", 4),
        ("seeds: 3\nroster: [nl, tft]\n  bad: indent\n", 3),
        ("seeds: 3\n\tupdates: 4\n", 2),
        ('seeds: 3\ngame: "ipd-analytic\n', 3),
    ],
)
def test_malformed_yaml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    user = write(tmp_path / "broken.yaml", text)
    message = user_error(None, "ci", user)
    assert message.startswith("malformed YAML in ")
    assert re.search(rf"{re.escape(str(user))}:{line}:\d+", message), message


@pytest.mark.parametrize(
    ("text", "kind"), [("- nl\n- tft\n", "list"), ("just a string\n", "str"), ("42\n", "int")]
)
def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str, kind: str) -> None:
    user = write(tmp_path / "list.yaml", text)
    message = user_error(None, "ci", user)
    assert str(user) in message and "mapping" in message and kind in message


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    message = user_error(None, "ci", missing)
    assert str(missing) in message


def test_config_file_for_another_game_is_refused(tmp_path: Path) -> None:
    other = write(tmp_path / "other.yaml", "game: coin-game\nseeds: 2\n")
    message = user_error(GAME, "ci", other)
    assert str(other) in message and "'coin-game'" in message and GAME in message
    # without --game the file's game is used, and an unknown one lists the valid games
    message = user_error(None, "ci", other)
    assert "'coin-game'" in message and GAME in message


def test_parse_yaml_helpers() -> None:
    assert parse_yaml("", "x.yaml") == {}
    assert parse_yaml("a: {b: 1}\n", "x.yaml") == {"a": {"b": 1}}
    with pytest.raises(UserError, match=r"x\.yaml:1:\d+: mapping values are not allowed"):
        parse_yaml("a: b: c\n", "x.yaml")


def test_load_yaml_reads_a_file(tmp_path: Path) -> None:
    assert load_yaml(write(tmp_path / "ok.yaml", "seeds: 4\n")) == {"seeds": 4}
