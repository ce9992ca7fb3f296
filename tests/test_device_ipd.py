"""IPD-Analytic and IPD-Rollout on a device: everything of a match lives on ``settings.device``.

Without a GPU: every agent's matches and every trainer run under ``strict_device`` (tensors
made without a device land on ``meta``, so a tensor left behind on the default device fails
or, where torch lets a product through, gives other numbers: the records must equal a plain
run's bit for bit). With one (``gpu`` marker): the ci profiles on cuda equal the CPU's,
seeds do not depend on their batch-mates there, every agent's contract holds on cuda, and
pretraining on cuda saves CPU tensors.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import test_agents as analytic_contract
import test_rollout_contract as rollout_contract
import torch
from conftest import tiny_artifacts

from recip_tourney import registry
from recip_tourney.agents.base import MatchContext, PairingContext, agent_class
from recip_tourney.agents.bernoulli_ppo import GroupedPPO, MemoryOneNets, log_policy
from recip_tourney.agents.gaussian_ppo import GPU_CHUNK, GaussianActorCritic, GaussianPPO, Rollout
from recip_tourney.agents.reciprocator_rollout import RolloutReciprocator
from recip_tourney.agents.rollout import EpisodeView, build_rollout_agent
from recip_tourney.config import load_config
from recip_tourney.envs.ipd_analytic import AnalyticIPD
from recip_tourney.envs.ipd_rollout import other_side
from recip_tourney.pretrain import mfos as mfos_training
from recip_tourney.pretrain.artifacts import ensure
from recip_tourney.pretrain.cache import CHECKPOINT, META, ArtifactCache
from recip_tourney.tournament.analytic import AnalyticSettings, play_analytic
from recip_tourney.tournament.match import play_match
from recip_tourney.tournament.rollout import (
    RolloutSettings,
    episode_noises,
    play_episode,
    play_rollout,
)
from recip_tourney.tournament.schedule import MatchSpec, Player, SeedSlot, round_robin

ANALYTIC, ROLLOUT = "ipd-analytic", "ipd-rollout"
F64 = torch.float64


def player(game: str, name: str, **params: Any) -> Player:
    return Player(name, registry.agent(game, name).params(**params).model_dump())


def spec_of(game: str, settings: dict, first: Player, second: Player, seeds=(11, 12)) -> MatchSpec:
    slots = tuple(SeedSlot(i, seed, f"m{seed}") for i, seed in enumerate(seeds))
    return MatchSpec(game, settings, "h", first, second, slots)


def with_artifacts(spec: MatchSpec) -> MatchSpec:
    """The tiny ci artifacts for M-FOS (its self-play one, whoever the opponent) and M-MAML."""
    artifacts = {}
    for role, side in (("agent", spec.agent), ("opponent", spec.opponent)):
        if side.name == "mfos" or (side.name == "mmaml" and side.params["init"] == "trained"):
            artifacts[role] = tiny_artifacts(side.name)
    return replace(spec, artifacts=artifacts)


def analytic_roster() -> list[Player]:
    names = [a.name for a in registry.agents(ANALYTIC) if a.name != "mmaml"]
    return [player(ANALYTIC, n) for n in names] + [
        player(ANALYTIC, "mmaml"), player(ANALYTIC, "mmaml", init="trained", n_inits=3)]


def rollout_roster() -> list[Player]:
    return [player(ROLLOUT, a.name) for a in registry.agents(ROLLOUT)] + [
        player(ROLLOUT, "tft", carry_over=True),
        player(ROLLOUT, "reciprocator", balance="cumulative", reward_aliasing=True,
               lagged_logs=True)]


def pairings(game: str, roster: list[Player], settings: dict) -> list[MatchSpec]:
    """Every player against the Reciprocator, moving first and second."""
    rc = player(game, "reciprocator")
    specs = [spec_of(game, settings, p, rc) for p in roster]
    specs += [spec_of(game, settings, rc, p) for p in roster]
    return [with_artifacts(s) for s in specs]


# Small, but long enough for every schedule: the analytic Reciprocator's baseline refresh
# (10 updates), the rollout one's (every 3 episodes), TFT's carried-over opening.
ANALYTIC_SMALL = {"batch": 2, "updates": 11, "dtype": "float64"}
ROLLOUT_SMALL = {"batch": 4, "steps": 3, "episodes": 4, "table_last": 2, "dtype": "float64"}


def play(spec: MatchSpec) -> list[dict]:
    return (play_analytic if spec.game == ANALYTIC else play_rollout)(spec)


@pytest.fixture(scope="module")
def small_matches() -> list[tuple[MatchSpec, list[dict]]]:
    """Every agent's small matches of both games and their records from a plain run."""
    specs = pairings(ANALYTIC, analytic_roster(), ANALYTIC_SMALL)
    specs += pairings(ROLLOUT, rollout_roster(), ROLLOUT_SMALL)
    return [(spec, play(spec)) for spec in specs]


# ------------------------------------------------------------------- CPU: strict devices
def test_device_setting_defaults_to_cpu_and_is_validated():
    assert AnalyticSettings().device == RolloutSettings().device == "cpu"
    for settings in (AnalyticSettings, RolloutSettings):
        assert settings(device="auto").device == "auto"
        with pytest.raises(ValueError):
            settings(device="tpu")


def test_every_agent_plays_on_the_match_device_only(small_matches, strict_device):
    names = {s.agent.name for s, _ in small_matches if s.game == ANALYTIC}
    assert names == {a.name for a in registry.agents(ANALYTIC)}
    assert {s.agent.name for s, _ in small_matches if s.game == ROLLOUT} == {
        a.name for a in registry.agents(ROLLOUT)}
    for spec, plain in small_matches:
        strict = play(replace(spec, settings={**spec.settings, "device": "cpu"}))
        # as text: the same floats bit for bit (repr round-trips), NaN (lagged logs) included
        assert json.dumps(strict) == json.dumps(plain), (spec.game, spec.agent, spec.opponent)


def _ci_specs(*pairs: tuple[str, str]) -> list:
    """The ci profile's trainable artifacts of ``pairs`` (me, against)."""
    cfg = load_config(ANALYTIC, "ci", overrides=["agents.mmaml.init=trained"])
    specs = []
    for me, against in pairs:
        pairing = PairingContext(Player(me, cfg.agent_params[me]),
                                 Player(against, cfg.agent_params[against]),
                                 cfg.settings.model_dump(), cfg.agent_params)
        specs += agent_class(ANALYTIC, me).trainable_artifacts(pairing)
    return specs


def _interrupt_training_after(episodes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The M-FOS trainer stops (KeyboardInterrupt) after ``episodes`` meta-episodes, and
    checkpoints after every one; undo with ``monkeypatch.undo()``."""
    original, calls = mfos_training.play_against_learner, {"n": 0}

    def stop(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > episodes:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(mfos_training, "CHECKPOINT_EVERY", 1)
    monkeypatch.setattr(mfos_training, "play_against_learner", stop)


TRAININGS = (("mfos", "nl"), ("mfos", "mfos"), ("mfos", "mmaml"), ("mmaml", "nl"))


def _tensors(payload: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(payload, torch.Tensor):
        return {prefix: payload}
    out: dict[str, torch.Tensor] = {}
    items = payload.items() if isinstance(payload, dict) else enumerate(payload)
    for key, value in items:
        if isinstance(value, dict | list | tuple | torch.Tensor):
            out.update(_tensors(value, f"{prefix}.{key}"))
    return out


@pytest.fixture(scope="module")
def plain_trainings() -> dict[str, dict]:
    specs = _ci_specs(*TRAININGS)
    cache = ArtifactCache(Path(tempfile.mkdtemp(prefix="plain-")), packaged=False)
    return ensure(specs, cache, progress=False)


def test_every_trainer_runs_on_its_device_only(plain_trainings, strict_device, tmp_path):
    specs = _ci_specs(*TRAININGS)
    kinds = {s.kind for s in specs} | {r.kind for s in specs for r in s.requires}
    assert kinds == {"mfos", "mmaml"}
    strict = ensure(specs, ArtifactCache(tmp_path, packaged=False), progress=False, device="cpu")
    assert strict.keys() == plain_trainings.keys()
    for digest, payload in strict.items():
        ours, theirs = _tensors(payload), _tensors(plain_trainings[digest])
        assert ours.keys() == theirs.keys()
        for name, tensor in ours.items():
            assert tensor.device.type == "cpu" and torch.equal(tensor, theirs[name]), name
    meta = json.loads(next(tmp_path.glob(f"mfos/*/{META}")).read_text())
    assert meta["device"] == "cpu" and "gpu" not in meta


def test_a_checkpoint_holds_cpu_tensors_and_resumes_under_strict_devices(
        tmp_path, monkeypatch, strict_device):
    specs = _ci_specs(("mfos", "nl"))
    cache = ArtifactCache(tmp_path, packaged=False)
    _interrupt_training_after(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        ensure(specs, cache, progress=False)
    state = torch.load(tmp_path / "mfos" / specs[0].digest / CHECKPOINT, weights_only=True)
    assert state["step"] == 2
    assert all(t.device.type == "cpu" for t in _tensors(state).values())
    monkeypatch.undo()
    resumed = ensure(specs, cache, progress=False)[specs[0].digest]
    whole = ensure(specs, ArtifactCache(tmp_path / "whole", packaged=False), progress=False)
    for name, tensor in _tensors(resumed).items():
        assert torch.equal(tensor, _tensors(whole[specs[0].digest])[name]), name


def test_the_gpu_sums_per_group_equal_the_cpus():
    """On a GPU, sums per group are products with one-hot tables; here on the CPU they
    must give the CPU's bincount / index_add_ sums, losses and gradients."""
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    ppo = GroupedPPO(MemoryOneNets(2, generators, F64), lr=0.005, gamma=0.96, epochs=2,
                     clip=0.1, entropy=0.02)
    episode = rollout_contract.random_episode(seeds=3, steps=7, batch=50)
    sparse = ppo.group_sums(episode.obs, episode.own, episode.own_reward)
    dense = ppo._group_sums_dense(episode.obs, episode.own, episode.own_reward)
    for name in ("count", "total", "state_count", "state_total", "squares"):
        torch.testing.assert_close(getattr(dense, name), getattr(sparse, name), msg=name)
    old = log_policy(ppo.nets.forward()[0]) + 0.01
    for ours, theirs in zip(ppo.loss_and_gradient(dense, old), ppo.loss_and_gradient(sparse, old),
                            strict=True):
        torch.testing.assert_close(ours, theirs)
    counts = RolloutReciprocator._count_dense(episode)
    reciprocator = rollout_contract.build("reciprocator", seeds=3)
    assert torch.equal(counts, reciprocator._count(episode))


def test_noise_drawn_ahead_on_a_helper_thread_is_the_same_noise():
    def generators():
        return [torch.Generator().manual_seed(seed) for seed in (3, 4)]

    cpu = torch.device("cpu")
    ahead = list(episode_noises(generators(), 3, 5, F64, cpu, 4, prefetch=True))
    in_turn = list(episode_noises(generators(), 3, 5, F64, cpu, 4, prefetch=False))
    assert len(ahead) == 4 and all(torch.equal(a, b) for a, b in zip(ahead, in_turn,
                                                                     strict=True))


def test_the_device_branches_run_on_the_meta_device():
    """What runs only off the CPU (dense sums, noise drawn ahead, large PPO chunks), with
    shapes alone on torch's meta device: every tensor stays there."""
    meta, generators = torch.device("meta"), [torch.Generator().manual_seed(i) for i in range(3)]
    for pair in (("reciprocator", "nl"), ("tft", "reciprocator")):
        players = tuple(build_rollout_agent(ROLLOUT, name, {}, generators, torch.float32, meta)
                        for name in pair)
        for noise in episode_noises(generators, 4, 6, torch.float32, meta, 4, prefetch=True):
            obs, actions, rewards = play_episode(players, generators, 4, 6, torch.float32,
                                                 noise=noise)
            views = (EpisodeView(obs, actions[:, 0], actions[:, 1], rewards, 0),
                     EpisodeView(other_side(obs), actions[:, 1], actions[:, 0], rewards, 1))
            for agent, view in zip(players, views, strict=True):
                logs = agent.end_episode(view).values()
                assert all(v.device == meta and v.shape == (3,) for v in logs)
        assert all(p.p_cooperate().device == meta for p in players)
    ppo = GaussianPPO(GaussianActorCritic(10, 5, 16, torch.Generator(), torch.float32, meta))
    samples = (torch.rand(40, d, device=meta) for d in (10, 5))
    stats = ppo.update(Rollout(*samples, torch.rand(40, device=meta),
                               torch.rand(4, 10, device=meta)))
    assert ppo.chunk == GPU_CHUNK and all(v.device == meta for v in stats.values())


# ------------------------------------------------------------------------- GPU: cuda
def _records(spec: MatchSpec, device: str) -> list[dict]:
    records = play_match(replace(spec, settings={**spec.settings, "device": device}))
    assert all("error" not in r for r in records), records[0].get("error")
    return records


def _assert_close(ours: list[dict], theirs: list[dict], atol: float = 1e-6) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a["match_id"] == b["match_id"]
        for key in ("summary", "curves", "cooperation"):
            left, right = a[key], b[key]
            assert left.keys() == right.keys(), key
            for name in left:
                x = torch.tensor(left[name] if key != "cooperation" else list(
                    left[name].values()), dtype=F64)
                y = torch.tensor(right[name] if key != "cooperation" else list(
                    right[name].values()), dtype=F64)
                torch.testing.assert_close(x, y, atol=atol, rtol=0, equal_nan=True,
                                           msg=f"{key}.{name}")


def _ci_matches(game: str) -> list[MatchSpec]:
    cfg = load_config(game, "ci")
    settings = cfg.settings.model_dump()
    specs = round_robin(game, settings, cfg.settings_hash, cfg.seed, list(cfg.roster),
                        cfg.seeds)
    cache = ArtifactCache(Path(tempfile.mkdtemp(prefix="ci-")), packaged=False)
    out = []
    for spec in specs:
        artifacts = {}
        for role, me, other in (("agent", spec.agent, spec.opponent),
                                ("opponent", spec.opponent, spec.agent)):
            pairing = PairingContext(me, other, settings, cfg.agent_params)
            needed = agent_class(game, me.name).artifacts(pairing)
            if needed:
                payloads = ensure(needed, cache, progress=False)
                artifacts[role] = [payloads[s.digest] for s in needed]
        out.append(replace(spec, artifacts=artifacts))
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("game", [ANALYTIC, ROLLOUT])
def test_ci_profile_on_cuda_equals_the_cpu(game):
    for spec in _ci_matches(game):
        _assert_close(_records(spec, "cuda"), _records(spec, "cpu"))


@pytest.mark.gpu
@pytest.mark.parametrize(("game", "first", "second"), [
    (ANALYTIC, "reciprocator", "lola"), (ANALYTIC, "mfos", "nl"), (ANALYTIC, "mmaml", "nl"),
    (ROLLOUT, "nl", "reciprocator"), (ROLLOUT, "reciprocator", "tft")])
def test_on_cuda_a_seed_alone_equals_that_seed_in_a_batch_of_8(game, first, second):
    settings = ANALYTIC_SMALL if game == ANALYTIC else {**ROLLOUT_SMALL, "batch": 16}
    seeds = tuple(range(21, 29))
    spec = with_artifacts(spec_of(game, settings, player(game, first), player(game, second),
                                  seeds))
    batched = _records(spec, "cuda")
    alone = _records(replace(spec, seeds=spec.seeds[5:6]), "cuda")
    _assert_close(batched[5:6], alone)


@pytest.mark.gpu
def test_pretraining_on_cuda_saves_cpu_tensors_close_to_the_cpus(plain_trainings, tmp_path):
    specs = _ci_specs(("mfos", "nl"), ("mmaml", "nl"))
    on_gpu = ensure(specs, ArtifactCache(tmp_path, packaged=False), progress=False,
                    device="cuda")
    for spec in specs:
        ours, theirs = _tensors(on_gpu[spec.digest]), _tensors(plain_trainings[spec.digest])
        for name, tensor in ours.items():
            assert tensor.device.type == "cpu", name
            torch.testing.assert_close(tensor, theirs[name], atol=1e-6, rtol=0)
        meta = json.loads((tmp_path / spec.kind / spec.digest / META).read_text())
        assert meta["device"] == "cuda" and meta["gpu"]


@pytest.mark.gpu
def test_a_training_on_cuda_resumes_from_its_cpu_checkpoint(tmp_path, monkeypatch):
    specs = _ci_specs(("mfos", "nl"))
    whole = ensure(specs, ArtifactCache(tmp_path / "whole", packaged=False), progress=False,
                   device="cuda")[specs[0].digest]
    cache = ArtifactCache(tmp_path / "cut", packaged=False)
    _interrupt_training_after(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        ensure(specs, cache, progress=False, device="cuda")
    monkeypatch.undo()
    resumed = ensure(specs, cache, progress=False, device="cuda")[specs[0].digest]
    for name, tensor in _tensors(resumed).items():
        torch.testing.assert_close(tensor, _tensors(whole)[name], atol=1e-9, rtol=0)


# Every agent's contract (tests/test_agents.py, tests/test_rollout_contract.py) on cuda:
# the contract classes run with their helpers patched to build agents and data on cuda.
def _cuda_analytic_build(name: str, dtype: torch.dtype = F64, **params: object):
    info = registry.agent(ANALYTIC, name)
    if name == "mmaml":
        params = {"init": "trained", "n_inits": 3, **params}
    agent = info.cls(info.params(**params), AnalyticIPD(0.96, dtype, "cuda"), 1.0)
    if info.needs_pretraining:
        agent.prepare(MatchContext("agent", (SeedSlot(0, 1, "m"),), 16, tiny_artifacts(name)))
    return agent


def _on_cuda(fn):
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(t.cuda() for t in out)
        fields = {k: v.cuda() if isinstance(v, torch.Tensor) else v
                  for k, v in vars(out).items()}
        return type(out)(**fields)
    return wrapped


def _cuda_round_robin(game, settings, *args):
    return round_robin(game, {**settings, "device": "cuda"}, *args)


class _AnalyticOnCuda:
    @pytest.fixture(autouse=True)
    def _cuda(self, monkeypatch):
        monkeypatch.setattr(analytic_contract, "build", _cuda_analytic_build)
        monkeypatch.setattr(analytic_contract, "AnalyticIPD", partial(AnalyticIPD,
                                                                      device="cuda"))
        monkeypatch.setattr(analytic_contract, "random_logits",
                            _on_cuda(analytic_contract.random_logits))
        monkeypatch.setattr(analytic_contract, "round_robin", _cuda_round_robin)


class _RolloutOnCuda:
    @pytest.fixture(autouse=True)
    def _cuda(self, monkeypatch):
        def build(name, seeds=2, seed=0, **params):
            info = registry.agent(ROLLOUT, name)
            generators = [torch.Generator().manual_seed(seed + s) for s in range(seeds)]
            return info.cls(info.params(**params), generators, F64, "cuda")

        monkeypatch.setattr(rollout_contract, "build", build)
        monkeypatch.setattr(rollout_contract, "random_episode",
                            _on_cuda(rollout_contract.random_episode))
        monkeypatch.setattr(rollout_contract, "round_robin", _cuda_round_robin)

    def test_act_samples_from_the_policy(self):
        agent = rollout_contract.build(self.name)
        policy = agent.p_cooperate()
        obs = torch.randint(0, 5, (2, 400), generator=torch.Generator().manual_seed(1)).cuda()
        noise = torch.rand(2, 400, generator=torch.Generator().manual_seed(2), dtype=F64).cuda()
        defects = agent.act(obs, noise, policy)
        assert defects.device.type == "cuda" and defects.dtype == torch.bool
        torch.testing.assert_close(defects, noise >= policy.gather(1, obs))


def _contract_classes(base: type, on_cuda: type) -> dict[str, type]:
    """``TestCuda<Agent>``: the base contract of every agent with a contract test, on cuda."""
    classes = {}
    for cls in base.__subclasses__():
        if cls.__module__ == __name__:
            continue
        name = f"TestCuda{cls.__name__.removeprefix('Test')}"
        classes[name] = type(name, (on_cuda, base), {
            "name": cls.name, "learns": cls.learns, "pytestmark": [pytest.mark.gpu]})
    return classes


globals().update(_contract_classes(analytic_contract.AgentContract, _AnalyticOnCuda))
globals().update(_contract_classes(rollout_contract.RolloutAgentContract, _RolloutOnCuda))
