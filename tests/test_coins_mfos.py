"""Coins M-FOS: networks, meta-state, returns, training into the cache, tournament play."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from cli_invoke import cli, ok, one_line_error
from rich.console import Console
from torch import nn
from torch.nn import functional

from recip_tourney.agents import coins_mfos_nets as nets_module
from recip_tourney.agents.base import PairingContext, agent_class
from recip_tourney.agents.coins_agent import CoinsEpisode, CoinsSetup
from recip_tourney.agents.coins_mfos import MFOSCoinsParams, MFOSLearner, meta_returns
from recip_tourney.agents.coins_mfos_nets import MFOSNets, dense_inputs, reward_levels
from recip_tourney.config import load_config
from recip_tourney.pretrain import mfos_coins
from recip_tourney.pretrain.artifacts import ensure
from recip_tourney.pretrain.cache import ARTIFACT, META, ArtifactCache
from recip_tourney.tournament.coins import CoinsMatch, CoinsSettings
from recip_tourney.tournament.match import play_match, worker_numerics
from recip_tourney.tournament.runner import attach_artifacts, schedule
from recip_tourney.tournament.schedule import Player

F64 = torch.float64
LEVELS = len(reward_levels())


def random_inputs(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 9, (*shape, 4), generator=g),
            torch.randint(0, LEVELS, shape, generator=g))


def reference(nets: MFOSNets, seed: int, cells: torch.Tensor, codes: torch.Tensor):
    """Seed ``seed``'s meta-episode through torch.nn modules (spec 4.6, written plainly)."""
    p, n = nets.params[seed], nets.hidden
    steps, episodes, batch = codes.shape
    x = dense_inputs(cells, codes, 3, F64).view(steps, episodes * batch, 7, 3, 3)
    outs = []
    for k in range(3):
        conv1 = nn.Conv2d(7, n, 3, padding=1, padding_mode="circular").double()
        conv2 = nn.Conv2d(n, n, 3, padding=1, padding_mode="circular").double()
        linear, gru = nn.Linear(9 * n, n).double(), nn.GRU(n, n).double()
        with torch.no_grad():
            for module, name in ((conv1, "conv1"), (conv2, "conv2"), (linear, "linear")):
                module.weight.copy_(p[f"towers.{name}.weight"][k])
                module.bias.copy_(p[f"towers.{name}.bias"][k])
            for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(gru, f"{part}_l0").copy_(p[f"towers.gru.{part}"][k])
        h = functional.relu(conv2(functional.relu(conv1(x.flatten(0, 1))))).flatten(1)
        outs.append(gru(functional.relu(linear(h)).view(steps, -1, n))[0])
    a, v, t = outs
    made = torch.sigmoid(t[-1].view(episodes, batch, n).mean(1) @ p["theta.weight"].T
                         + p["theta.bias"])
    thetas = torch.cat([torch.ones(1, n, dtype=F64), made[:-1]]).view(1, episodes, 1, n)
    logits = (thetas * a.relu().view(steps, episodes, batch, n)) @ p["actor.weight"].T
    values = (thetas * v.relu().view(steps, episodes, batch, n)) @ p["critic.weight"].T
    log_probs = functional.log_softmax(logits + p["actor.bias"], -1).reshape(-1, 5)
    return log_probs, (values + p["critic.bias"]).reshape(-1), thetas.view(episodes, n)


def make_nets(seeds, hidden=6, table=None, dtype=F64) -> MFOSNets:
    return MFOSNets(hidden, [torch.Generator().manual_seed(50 + s) for s in seeds], dtype,
                    table=table)


# -- networks ----------------------------------------------------------------------------


@pytest.mark.parametrize("table", [True, False])
def test_networks_match_torch_modules_and_theta_is_ones_then_sigmoid(table):
    nets = make_nets([0, 1], table=table)
    cells, codes = random_inputs((2, 4, 3, 5), 1)  # S, T, E, B
    log_probs, values, thetas = nets.evaluate(cells, codes)
    assert log_probs.shape == (2, 60, 5) and values.shape == (2, 60) and thetas.shape == (2, 3, 6)
    assert torch.equal(thetas[:, 0], torch.ones(2, 6, dtype=F64))
    assert bool(((thetas[:, 1:] > 0) & (thetas[:, 1:] < 1)).all())
    for seed in range(2):
        mine = (log_probs[seed], values[seed], thetas[seed])
        for got, want in zip(mine, reference(nets, seed, cells[seed], codes[seed]), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_table_and_dense_modes_agree_with_gradients():
    cells, codes = random_inputs((1, 3, 2, 4), 2)
    grads = []
    for table in (True, False):
        nets = make_nets([0], table=table)
        for t in nets.parameters():
            t.requires_grad_(True)
        log_probs, values, _ = nets.evaluate(cells, codes)
        (log_probs.sin().sum() + values.cos().sum()).backward()
        grads.append([t.grad for t in nets.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_acting_and_conditioning_follow_the_evaluated_meta_episode():
    nets = make_nets([0, 1])
    cells, codes = random_inputs((2, 4, 2, 5), 3)
    log_probs, _, thetas = nets.evaluate(cells, codes)
    noise = torch.rand(2, 5, generator=torch.Generator().manual_seed(4), dtype=F64)
    ones = torch.ones(2, 6, dtype=F64)
    actions, _ = nets.act(cells[:, 0, 0], codes[:, 0, 0], torch.zeros(2, 5, 6, dtype=F64),
                          ones, noise)
    cdf = log_probs[:, :5].exp().cumsum(-1)  # step 0 of inner episode 0
    assert torch.equal(actions, (cdf[..., :-1] <= noise.unsqueeze(-1)).sum(-1))
    theta = nets.condition(cells[:, :, 0].transpose(0, 1), codes[:, :, 0].transpose(0, 1))
    torch.testing.assert_close(theta, thetas[:, 1], rtol=0, atol=1e-12)


def test_reward_levels_are_what_a_coins_step_pays():
    pairs = {tuple(x) for x in reward_levels()[:-1, :2].tolist()}
    assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1), (-2, 1), (1, -2), (-1, 1), (1, -1),
                     (-1, -1), (2, -2), (-2, 2)}
    assert reward_levels()[-1].tolist() == [0.0, 0.0, 1.0]


# -- per-seed independence ---------------------------------------------------------------


def _learn(seeds, dtype, table):
    """Two inner episodes and one update of a learner holding ``seeds``."""
    steps, batch = 4, 6
    setup = CoinsSetup([torch.Generator().manual_seed(100 + s) for s in seeds], dtype,
                       torch.device("cpu"), 2, 3, 0)
    learner = MFOSLearner(MFOSCoinsParams(hidden=4, epochs=3, lr=0.01), setup, table)
    levels = reward_levels()[:-1, :2].to(dtype)
    for e in range(2):
        per_seed = []
        for s in seeds:
            g = torch.Generator().manual_seed(1000 * s + e)
            cells = torch.randint(0, 9, (steps, batch, 4), generator=g)
            obs = torch.zeros(steps, batch, 4, 9, dtype=dtype).scatter_(-1, cells[..., None], 1)
            paid = levels[torch.randint(0, len(levels), (steps, batch), generator=g)]
            acts = torch.randint(0, 5, (steps, 2, batch), generator=g)
            per_seed.append((obs.view(steps, batch, 4, 3, 3), acts, paid.transpose(1, 2)))
        obs, acts, paid = (torch.stack(x, dim=2 if x[0].dim() == 3 else 1)
                           for x in zip(*per_seed, strict=True))
        learner.end_episode(CoinsEpisode(obs, acts, paid, 0))
    return learner, learner.update()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("table", [True, False])
def test_a_seed_learns_bit_identically_alone_or_batched(dtype, table):
    with worker_numerics():
        alone, diag_alone = _learn([1], dtype, table)
        batched, diag_batched = _learn([0, 1, 2], dtype, table)
    for name, value in alone.nets.state_dict(0).items():
        assert torch.equal(value, batched.nets.state_dict(1)[name]), name
    assert torch.equal(alone.theta[0], batched.theta[1])
    for key, value in diag_alone.items():
        assert torch.equal(value[0], diag_batched[key][1]), key


# -- returns -----------------------------------------------------------------------------


def test_meta_returns_on_a_hand_computed_example():
    # 2 inner episodes of 2 steps, 2 games, gamma 0.5
    rewards = torch.tensor([[1.0, 3.0], [2.0, 0.0], [0.0, 4.0], [2.0, 2.0]], dtype=F64)
    got = meta_returns(rewards, 0.5, 2)
    # last inner episode, per game: t3 = r3; t2 = r2 + 0.5 r3
    # batch means: M3 = 2; M2 = 2 + 0.5 * 2 = 3
    # entering episode 0 from its end, each game restarts from M2 = 3:
    # t1 = r1 + 0.5 * 3; t0 = r0 + 0.5 t1
    want = torch.tensor([[1 + 0.5 * 3.5, 3 + 0.5 * 1.5], [3.5, 1.5], [1.0, 5.0], [2.0, 2.0]],
                        dtype=F64)
    assert torch.equal(got, want)


# -- the meta-state in a real match ------------------------------------------------------


def _ci(**agents) -> tuple:
    sets = [f"agents.mfos.{k}={v}" for k, v in agents.items()]
    cfg = load_config("coins", "ci", overrides=sets)
    return cfg, Player("mfos", cfg.agent_params["mfos"])


def test_the_meta_state_seen_while_playing_is_the_one_learned_from(monkeypatch):
    cfg, _ = _ci()
    key = {"seed": 3, "settings": {"steps": 6, "grid": 3, "layout": "egocentric",
                                   "dtype": "float64"},
           "mfos": {**MFOSCoinsParams(hidden=4, inner_episodes=2, train_batch=16)
                    .model_dump(exclude={"train_seed"})}}
    (learner,) = mfos_coins._learners(key, 1)
    seen = []
    act = nets_module.MFOSNets.act

    def spy(self, cells, codes, *rest):  # noqa: ANN001, ANN002
        seen.append((cells.clone(), codes.clone()))
        return act(self, cells, codes, *rest)

    monkeypatch.setattr(nets_module.MFOSNets, "act", spy)
    assert torch.equal(learner.theta, torch.ones(1, 4, dtype=F64))
    mfos_coins.play_meta_episode([learner], Player("greedy", {}), mfos_coins.settings_of(key),
                                 7, 2)
    assert bool(((learner.theta > 0) & (learner.theta < 1)).all())
    cells, codes = (torch.stack(x).view(2, 6, *x[0].shape) for x in zip(*seen, strict=True))
    for e, (mem_cells, mem_codes, _, rewards) in enumerate(learner.memory):
        assert torch.equal(mem_cells, cells[e]) and torch.equal(mem_codes, codes[e])
        assert (mem_codes[0] == LEVELS - 1).all() and (mem_codes[1:] < LEVELS - 1).all()
        assert torch.equal(reward_levels()[mem_codes[1:], 0], rewards[:-1])  # own, one late
    nothing = [tuple(x) for x in reward_levels().tolist()].index((0.0, 0.0, 0.0))
    assert any(((m[1] != nothing) & (m[1] != LEVELS - 1)).any() for m in learner.memory)


# -- training into the cache -------------------------------------------------------------


def specs_for(against: str, **agents):
    cfg, me = _ci(**agents)
    pairing = PairingContext(me, Player(against, cfg.agent_params[against]),
                             cfg.settings.model_dump(), cfg.agent_params)
    return agent_class("coins", "mfos").artifacts(pairing)


def test_keys_name_what_determines_the_artifact():
    (nl,) = specs_for("nl")
    assert nl.kind == "mfos-coins" and nl.key["against"]["name"] == "nl"
    assert nl.pretrain_command == "recip-tourney pretrain mfos --game coins --against nl"
    assert "influence" not in nl.key["settings"]
    assert "influence" in specs_for("reciprocator")[0].key["settings"]
    assert specs_for("nl", lr=0.001)[0].digest != nl.digest
    assert specs_for("nl", train_seed=1)[0].digest != nl.digest
    assert specs_for("greedy")[0].digest != nl.digest
    assert specs_for("mfos")[0].key["curriculum_opponent"]["epochs"] == 3


def test_pretrain_writes_the_artifact_and_resumes_to_the_same_one(tmp_path, monkeypatch):
    monkeypatch.setattr(mfos_coins, "CHECKPOINT_EVERY", 1)
    (spec,) = specs_for("nl", meta_episodes=3)
    whole = ensure([spec], ArtifactCache(tmp_path / "whole", packaged=False),
                   progress=False)[spec.digest]
    folder = tmp_path / "whole" / "mfos-coins" / spec.digest
    meta = json.loads((folder / META).read_text())
    assert meta["digest"] == spec.digest and meta["version"] == mfos_coins.VERSION
    rows = [json.loads(x) for x in (folder / "log.jsonl").read_text().splitlines()[1:]]
    assert [r["episode"] for r in rows] == [0, 1, 2]
    assert all({"reward", "opponent_reward", "seconds"} <= set(r) for r in rows)
    assert (folder / ARTIFACT).is_file() and not (folder / "checkpoint.pt").exists()

    original, calls = mfos_coins.play_meta_episode, {"n": 0}

    def dies_in_the_third(*args, **kwargs):  # noqa: ANN002, ANN003
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(mfos_coins, "play_meta_episode", dies_in_the_third)
    cut = ArtifactCache(tmp_path / "cut", packaged=False)
    with pytest.raises(KeyboardInterrupt):
        ensure([spec], cut, progress=False)
    assert (tmp_path / "cut" / "mfos-coins" / spec.digest / "checkpoint.pt").is_file()
    monkeypatch.setattr(mfos_coins, "play_meta_episode", original)
    resumed = ensure([spec], cut, progress=False)[spec.digest]
    for name, value in whole["player0"].items():
        assert torch.equal(value, resumed["player0"][name]), name
    log = (tmp_path / "cut" / "mfos-coins" / spec.digest / "log.jsonl").read_text()
    assert len(log.splitlines()) == 1 + 3


def test_self_play_curriculum_trains_two_players(tmp_path):
    (spec,) = specs_for("mfos", curriculum_decay=0.5, meta_episodes=3)
    payload = ensure([spec], ArtifactCache(tmp_path, packaged=False),
                     progress=False)[spec.digest]
    assert set(payload) == {"player0", "player1"}
    lines = (tmp_path / "mfos-coins" / spec.digest / "log.jsonl").read_text().splitlines()
    log = [json.loads(x) for x in lines[1:]]
    # lambda = 0.5, 0, -0.5: the last two meta-episodes are certainly self-play
    assert [row["self_play"] for row in log][1:] == [True, True]


def test_the_pretrain_command_trains_coins_mfos_and_logs_every_meta_episode(tmp_path):
    result = ok("pretrain", "mfos", "--game", "coins", "--against", "greedy", "--profile", "ci",
                "--cache-dir", tmp_path)
    rows = [line for line in result.stderr.splitlines() if line.startswith("episode ")]
    assert len(rows) == 2 and "reward" in rows[0] and "opponent_reward" in rows[0]
    (folder,) = (tmp_path / "mfos-coins").iterdir()
    assert str(folder) in result.stdout
    line = one_line_error(cli("pretrain", "nl", "--game", "coins", "--profile", "ci"))
    assert "valid choices: mfos" in line


# -- the tournament ----------------------------------------------------------------------


def test_a_tournament_match_plays_the_frozen_trained_meta_policy(tmp_path):
    cfg, _ = _ci()
    cfg = replace(cfg, roster=tuple(p for p in cfg.roster if p.name in ("mfos", "nl")))
    units = [u for u in schedule(cfg) if u.agent.name == "mfos" and u.opponent.name == "nl"]
    (unit,) = attach_artifacts(cfg, units, ArtifactCache(tmp_path, packaged=False),
                               train=True, console=Console(quiet=True), progress=False)
    records = play_match(unit)
    assert len(records) == cfg.seeds
    assert all(isinstance(r["summary"]["reward"], float) for r in records)
    # frozen: the weights it plays are the artifact's; theta follows the last episode
    match = CoinsMatch(unit, CoinsSettings(**unit.settings))
    mfos = match.players[0]
    before = mfos.nets.state_dict(0)
    assert torch.equal(mfos.theta, torch.ones_like(mfos.theta))
    for _ in range(2):
        match.play_episode()
    assert all(torch.equal(v, mfos.nets.state_dict(0)[k]) for k, v in before.items())
    assert all(torch.equal(v, unit.artifacts["agent"][0]["player0"][k])
               for k, v in before.items())
    assert bool(((mfos.theta > 0) & (mfos.theta < 1)).all())


# -- learning ----------------------------------------------------------------------------


def test_meta_training_against_a_random_walker_raises_the_reward():
    key = {"seed": 5, "settings": {"steps": 8, "grid": 3, "layout": "egocentric",
                                   "dtype": "float32"},
           "mfos": MFOSCoinsParams(hidden=8, inner_episodes=2, train_batch=32, epochs=4,
                                   lr=0.01).model_dump(exclude={"train_seed"})}
    (learner,) = mfos_coins._learners(key, 1)
    settings = mfos_coins.settings_of(key)
    rewards = []
    with worker_numerics():
        for episode in range(30):
            rewards.append(mfos_coins.play_meta_episode(
                [learner], Player("random", {}), settings, mfos_coins._seed(key, episode), 2)[0])
            learner.update()
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5  # per step
    assert last > first + 0.04, rewards  # about +0.3 coins' worth per 8-step episode
