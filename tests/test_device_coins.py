"""Coins on any device: every tensor of a match on ``settings.device``, the same numbers.

On the CPU (here, always): the ``strict_device`` fixture puts every tensor created without
an explicit device on torch's ``meta`` device, so a match (and the M-FOS meta-trainer) that
creates one and mixes it with its own tensors fails, as it would on a GPU; the GPU-only
code paths (the critic's gradient without merging repeated states, moving a checkpointed
match) are checked against the CPU's. On a GPU (tests marked ``gpu``, skipped without one):
matches of the ci profile and every agent's contract on cuda against the CPU, a seed alone
against the same seed in a batch, checkpoints across devices, and no host synchronisation
inside an episode.

Oracles: the CPU's numbers (float64, so rounding differences stay far below the
tolerances); the same seed in other company; the uninterrupted match.
"""

from __future__ import annotations

import dataclasses
import io
import math
import shutil
import traceback
import warnings
from collections import deque
from pathlib import Path
from typing import Any

import pytest
import test_coins_contract as contract
import torch
from rich.console import Console
from test_coins_protocol import make_spec

from recip_tourney import registry
from recip_tourney.agents.base import PairingContext
from recip_tourney.agents.coins_agent import CoinsAgent, CoinsEpisode, CoinsSetup, CoinsStep
from recip_tourney.agents.coins_influence import CoinsVoI
from recip_tourney.agents.coins_mfos_inputs import codes_of
from recip_tourney.agents.influence_critic import CRITIC_BLOCKS
from recip_tourney.config import load_config
from recip_tourney.envs import coins as env
from recip_tourney.pretrain import mfos_coins
from recip_tourney.pretrain.artifacts import Training, ensure
from recip_tourney.pretrain.cache import ArtifactCache
from recip_tourney.tournament.checkpoint import relocate
from recip_tourney.tournament.coins import CoinsMatch, CoinsSettings, play_coins
from recip_tourney.tournament.match import worker_numerics
from recip_tourney.tournament.runner import attach_artifacts, schedule
from tests.test_checkpoints import KilledError
from tests.test_checkpoints import interrupt_after as stop_after

GAME = "coins"
CUDA = "cuda"
F64 = torch.float64
#: Small M-FOS trainings (the ci profile's).
MFOS = {"meta_episodes": 2, "inner_episodes": 2, "train_batch": 8, "hidden": 4, "epochs": 2}
PAIRS = [("reciprocator", "nl"), ("nl", "reciprocator"), ("reciprocator", "reciprocator"),
         ("nl", "nl"), ("greedy", "random"), ("random", "greedy")]
gpu = pytest.mark.gpu


def train_mfos(folder: Path) -> list[dict[str, Any]]:
    """The artifact of a small M-FOS trained against the NL."""
    spec = make_spec("mfos", "nl", agent_params=MFOS)
    settings = CoinsSettings(**spec.settings).model_dump()
    pairing = PairingContext(spec.agent, spec.opponent, settings, {"nl": spec.opponent.params})
    specs = registry.agent(GAME, "mfos").cls.artifacts(pairing)
    payloads = ensure(specs, ArtifactCache(folder, packaged=False), progress=False)
    return [payloads[s.digest] for s in specs]


@pytest.fixture(scope="module")
def mfos_artifacts(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """:func:`train_mfos`, once per module."""
    return train_mfos(tmp_path_factory.mktemp("mfos-artifacts"))


def adam_names_its_devices() -> bool:
    """Whether this torch's Adam creates its step counters on a named device (torch 2.11's
    takes the default device, which ``strict_device`` makes ``meta``)."""
    weight = torch.zeros(1, device="cpu", requires_grad=True)
    weight.grad = torch.ones(1, device="cpu")
    default = torch.get_default_device()
    torch.set_default_device("meta")
    try:
        torch.optim.Adam([weight]).step()
    except RuntimeError:
        return False
    finally:
        torch.set_default_device(default)
    return True


def mfos_spec(artifacts: list[dict[str, Any]], **settings: Any):
    return dataclasses.replace(make_spec("mfos", "nl", agent_params=MFOS, **settings),
                               artifacts={"agent": artifacts})


def assert_records_close(got: list[dict], want: list[dict], atol: float) -> None:
    """Same matches, every curve and summary within ``atol`` (NaN where the other has NaN)."""
    assert [r["match_id"] for r in got] == [r["match_id"] for r in want]
    for mine, theirs in zip(got, want, strict=True):
        for key, curve in theirs["curves"].items():
            a, b = (torch.tensor(c, dtype=F64) for c in (mine["curves"][key], curve))
            assert torch.allclose(a, b, rtol=0, atol=atol, equal_nan=True), key
        for key, value in theirs["summary"].items():
            assert mine["summary"][key] == pytest.approx(value, abs=atol, nan_ok=True), key


# -- on the CPU: every tensor created on the match's device -------------------------------


@pytest.mark.parametrize("pair", PAIRS)
def test_a_match_names_the_device_of_every_tensor(pair, strict_device):
    with worker_numerics():
        records = play_coins(make_spec(*pair, seeds=(1, 2), episodes=4, device="cpu"))
    assert all(math.isfinite(r["summary"]["reward"]) for r in records)


def test_the_any_grid_estimator_names_the_device_of_every_tensor(strict_device):
    spec = make_spec("reciprocator", "nl", seeds=(1, 2), episodes=4, grid=4, device="cpu")
    assert CoinsSettings(**spec.settings).estimator == "future_q"
    with worker_numerics():
        records = play_coins(spec)
    assert all(math.isfinite(r["summary"]["reward"]) for r in records)


def test_mfos_names_the_device_of_every_tensor(mfos_artifacts, strict_device):
    with worker_numerics():
        records = play_coins(mfos_spec(mfos_artifacts, seeds=(1, 2), episodes=3, device="cpu"))
    assert all(math.isfinite(r["summary"]["reward"]) for r in records)


def test_the_mfos_trainer_names_the_device_of_every_tensor(tmp_path):
    if not adam_names_its_devices():
        pytest.skip(f"torch {torch.__version__}'s Adam puts its step on the default device")
    torch.set_default_device("meta")  # as strict_device, around the training only
    try:
        artifacts = train_mfos(tmp_path)
    finally:
        torch.set_default_device(None)
    assert artifacts[0]["player0"]["theta.weight"].device.type == "cpu"


def test_an_mfos_artifact_holds_cpu_tensors(mfos_artifacts):
    (payload,) = mfos_artifacts
    assert all(t.device.type == "cpu" for t in payload["player0"].values())


def test_a_reward_pair_no_step_pays_is_a_value_error_on_the_cpu():
    with pytest.raises(ValueError, match="no Coins step pays"):
        codes_of(torch.tensor([0.5], dtype=F64), torch.tensor([0.0], dtype=F64))


@pytest.mark.parametrize("value_time", [False, True])
def test_the_critic_gradient_is_the_same_without_merging_repeated_states(value_time):
    """The GPU's path (every minibatch row, no ``torch.unique``) against the CPU's."""
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    est = CoinsVoI(gens, samples=96, minibatch=32, epochs=1, value_time=value_time, dtype=F64)
    draw = torch.Generator().manual_seed(7)
    for _ in range(2):
        est.store(torch.randint(0, 9, (6, 2, 5, 4), generator=draw),
                  torch.randint(0, 5, (6, 2, 5, 2), generator=draw),
                  torch.randn(6, 2, 5, 2, generator=draw, dtype=F64))
    tables = est._tables()
    rows, mb, used = tables.rows, 32, 27  # repeated rows, and padding after the 27 used
    index = torch.randint(0, rows, (2, mb), generator=draw) + torch.arange(2).view(2, 1) * rows
    index[:, used:] = index[:, :1]
    weights = torch.zeros(mb, dtype=F64)
    weights[:used] = 1 / used
    grads = []
    for distinct in (True, False):
        flat = torch.zeros_like(est.flat)
        blocks = {name: est.view(f"v.{name}", flat) for name in CRITIC_BLOCKS}
        est._critic.minibatch_gradient(est._value_weights(), tables, index, weights, blocks,
                                       est._buffer, distinct=distinct)
        grads.append(flat)
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-12, atol=1e-15)


def tensors_in(obj: Any, seen: dict[int, Any] | None = None) -> list[Any]:
    """Every tensor and ``torch.device`` reachable from ``obj`` as :func:`relocate` walks."""
    seen = {} if seen is None else seen
    if id(obj) in seen:
        return []
    seen[id(obj)] = obj  # kept alive: a temporary's id is not reused
    if isinstance(obj, torch.Tensor | torch.device):
        return [obj]
    if isinstance(obj, torch.optim.Optimizer):  # Adam's step counters stay on the CPU
        moments = [v for state in obj.state.values() for k, v in state.items() if k != "step"]
        return tensors_in([obj.param_groups, moments], seen)
    if isinstance(obj, dict):
        return tensors_in(list(obj.values()), seen)
    if isinstance(obj, list | tuple | deque):
        return [x for item in obj for x in tensors_in(item, seen)]
    if type(obj).__module__.startswith("recip_tourney.") and hasattr(obj, "__dict__"):
        return tensors_in(list(vars(obj).values()), seen)
    return []


@pytest.mark.parametrize("grid", [3, 4])
def test_a_restored_match_moves_to_another_device_whole(grid):
    spec = make_spec("reciprocator", "nl", seeds=(1,), episodes=3, grid=grid)
    match = CoinsMatch(spec, CoinsSettings(**spec.settings))
    with worker_numerics():
        for _ in range(3):  # the estimator has fit and the learners have learnt
            match.play_episode()
    buffer = io.BytesIO()
    torch.save(match, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, map_location="cpu", weights_only=False)
    assert relocate(restored.players[0].ppo.nets.flat, "cpu") is restored.players[0].ppo.nets.flat
    moved = relocate(restored, "meta")
    found = tensors_in(moved)
    assert len(found) > 20 and all(x.type == "meta" if isinstance(x, torch.device)
                                   else x.device.type == "meta" for x in found)
    assert moved.device.type == moved.players[0].setup.device.type == "meta"
    assert all(g.device.type == "cpu" for g in moved.generators), "the draws stay on the CPU"
    if grid == 4:  # Adam's moments follow the parameters; its step counters stay on the CPU
        state = moved.estimator.optimizer.state[moved.estimator.weights[0]]
        assert state["exp_avg"].device.type == "meta" and state["step"].device.type == "cpu"


def test_relocated_views_still_share_their_storage():
    flat = torch.arange(12.0)
    moved = relocate({"flat": flat, "view": (flat[2:8].view(2, 3),), "gen": torch.Generator()},
                     "meta")
    assert moved["flat"].untyped_storage()._cdata == moved["view"][0].untyped_storage()._cdata
    assert moved["view"][0].shape == (2, 3) and moved["view"][0].storage_offset() == 2
    assert isinstance(moved["gen"], torch.Generator)


# -- on a GPU ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ci_units(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Every ordered pairing of the ci profile (float64), 4 episodes, with its artifacts."""
    cfg = load_config(GAME, "ci", overrides=["settings.episodes=4"])
    return attach_artifacts(cfg, schedule(cfg), ArtifactCache(
        tmp_path_factory.mktemp("ci-artifacts"), packaged=False), train=True,
        console=Console(quiet=True), progress=False)


def on(device: str, spec):
    return dataclasses.replace(spec, settings={**spec.settings, "device": device})


@gpu
@pytest.mark.parametrize("pair", [(a, b) for a in ("nl", "reciprocator", "mfos", "random",
                                                   "greedy") for b in ("nl", "reciprocator",
                                                                        "mfos", "random",
                                                                        "greedy")])
def test_ci_matches_on_cuda_are_the_cpu_matches(pair, ci_units):
    # float64: the devices round differently at ~1e-16, which a few episodes of learning
    # amplify by orders of magnitude but not to 1e-6 (an action flips only if a uniform
    # draw falls within that of a policy's CDF step)
    (unit,) = [u for u in ci_units if (u.agent.name, u.opponent.name) == pair]
    with worker_numerics():
        cpu = play_coins(on("cpu", unit))
    with worker_numerics(CUDA):
        cuda = play_coins(on(CUDA, unit))
    assert_records_close(cuda, cpu, 1e-6)


@gpu
@pytest.mark.parametrize("grid", [3, 4])
def test_a_seed_alone_is_the_same_seed_in_a_batch_of_eight_on_cuda(grid):
    # On the CPU this holds bit for bit (one thread); on a GPU the library may pick other
    # kernels (and summation orders) for other batch sizes, so the check is to 1e-6
    with worker_numerics(CUDA):
        (alone,) = play_coins(make_spec("reciprocator", "nl", seeds=(13,), grid=grid,
                                        device=CUDA))
        batch = play_coins(make_spec("reciprocator", "nl", seeds=tuple(range(10, 18)),
                                     grid=grid, device=CUDA))
    assert_records_close([alone], [batch[3]], 1e-6)


@gpu
@pytest.mark.parametrize("case", ["transition", "future_q", "mfos"])
def test_a_match_checkpointed_on_cuda_resumes_on_cuda_and_on_the_cpu(
        case, tmp_path, monkeypatch, mfos_artifacts):
    if case == "mfos":
        spec = mfos_spec(mfos_artifacts, seeds=(5, 6), device=CUDA)
    else:
        spec = make_spec("reciprocator", "nl", seeds=(5, 6), device=CUDA,
                         grid=3 if case == "transition" else 4)
    with worker_numerics(CUDA):
        expected = play_coins(spec)
    spec = dataclasses.replace(spec, checkpoints=str(tmp_path / "cuda"), checkpoint_every_s=0.0)
    stop_after(monkeypatch, 3)
    with pytest.raises(KilledError), worker_numerics(CUDA):
        play_coins(spec)
    monkeypatch.undo()
    shutil.copytree(tmp_path / "cuda", tmp_path / "copy")
    played = stop_after(monkeypatch, 99)
    with worker_numerics(CUDA):
        resumed = play_coins(spec)
    assert played == [4, 5], "only the missing episodes replay"
    assert_records_close(resumed, expected, 1e-9)
    played.clear()
    cpu = dataclasses.replace(on("cpu", spec), checkpoints=str(tmp_path / "copy"))
    with worker_numerics():
        resumed = play_coins(cpu)
    assert played == [4, 5], "the CPU run resumes from the GPU's checkpoint"
    assert_records_close(resumed, expected, 1e-6)


@gpu
@pytest.mark.parametrize("case", ["transition", "future_q", "mfos", "scripted"])
def test_an_episode_does_not_wait_for_the_gpu(case, mfos_artifacts):
    if case == "mfos":
        spec = mfos_spec(mfos_artifacts, seeds=(1, 2), episodes=6, device=CUDA)
    elif case == "scripted":
        spec = make_spec("greedy", "random", seeds=(1, 2), episodes=6, device=CUDA)
    else:
        spec = make_spec("reciprocator", "nl", seeds=(1, 2), episodes=6, device=CUDA,
                         grid=3 if case == "transition" else 4)
    match = CoinsMatch(spec, CoinsSettings(**spec.settings))
    syncs: list[str] = []

    def record(message, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        if "synchroniz" not in str(message):
            return
        frames = [f for f in traceback.extract_stack() if "recip_tourney" in f.filename]
        where = "; ".join(f"{Path(f.filename).name}:{f.lineno} {f.line}" for f in frames[-3:])
        syncs.append(f"{message} at {where}")

    with worker_numerics(CUDA):
        for _ in range(4):  # warm-up, first fits and updates (buffers are allocated once)
            match.play_episode()
        torch.cuda.synchronize()
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(2):  # one episode with a fit of the estimator, one without
                    match.play_episode()
            finally:
                torch.cuda.set_sync_debug_mode(0)
    assert not syncs, "\n".join(syncs[:10])


def build_on(device: str, name: str, me: int = 0, seed: int = 0, **params: Any) -> CoinsAgent:
    """:func:`test_coins_contract.build` on ``device``."""
    info = registry.agent(GAME, name)
    if info.learns and "epochs" in info.params.model_fields:
        params = {"epochs": 2} | params
    generators = [torch.Generator().manual_seed(seed + s) for s in range(contract.SEEDS)]
    setup = CoinsSetup(generators, F64, torch.device(device), 2, 3, me)
    return info.cls(info.params(**params), setup)


def play_on(agent: CoinsAgent, seed: int = 5) -> tuple[CoinsEpisode, torch.Tensor]:
    """:func:`test_coins_contract.play` on the agent's device: the same draws, on the CPU,
    copied over."""
    device = agent.setup.device
    gen = torch.Generator().manual_seed(seed)
    start = contract.random_states(seed)
    state = env.CoinsState(start.agents.to(device), start.coins.to(device))
    s, b, steps = contract.SEEDS, contract.BATCH, contract.STEPS
    obs_log, actions, rewards = [], [], []
    agent.begin_episode(b)
    with torch.no_grad():
        for _ in range(steps):
            obs = env.observe(state, 3, dtype=F64)[:, :, 0]
            noise = torch.rand(s, b, generator=gen, dtype=F64, device="cpu").to(device)
            mine = agent.act(CoinsStep(obs, state, noise))
            other = torch.randint(0, 5, (s, b), generator=gen, device="cpu").to(device)
            joint = torch.stack((mine, other), -1)
            respawn = torch.randint(0, 9, (s, b, 2), generator=gen, device="cpu").to(device)
            state, reward, _ = env.step(state, joint, respawn, 3, dtype=F64)
            obs_log.append(obs)
            actions.append(joint.movedim(-1, 0))
            rewards.append(reward.movedim(-1, 0))
    acts = torch.stack(actions)
    influence = torch.randn(steps, s, b, 2, 2, generator=gen, dtype=F64, device="cpu")
    episode = CoinsEpisode(torch.stack(obs_log), acts, torch.stack(rewards), 0,
                           influence.to(device))
    return episode, acts[:, 0]


class OnCuda:
    """The contract of :mod:`test_coins_contract` with the agent on cuda, and its actions and
    learning against the CPU's."""

    @pytest.fixture(autouse=True)
    def _on_cuda(self, monkeypatch: pytest.MonkeyPatch) -> Any:
        monkeypatch.setattr(contract, "build", lambda *a, **k: build_on(CUDA, *a, **k))
        monkeypatch.setattr(contract, "play", play_on)
        # as in a match on cuda (worker_numerics): scatter-adds in a fixed order, so that
        # equal inputs give equal bits
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        yield
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)

    def test_it_plays_and_learns_as_on_the_cpu(self):
        with worker_numerics():
            cpu, cuda = build_on("cpu", self.name), build_on(CUDA, self.name)
            episode, cpu_actions = play_on(cpu)
            cuda_episode, cuda_actions = play_on(cuda)
            assert torch.equal(cuda_actions.cpu(), cpu_actions)
            cpu_logs, cuda_logs = cpu.end_episode(episode), cuda.end_episode(cuda_episode)
        for key, value in cpu_logs.items():
            assert torch.allclose(cuda_logs[key].cpu(), value, atol=1e-9, equal_nan=True), key
        if self.learns:
            assert torch.allclose(cuda.ppo.nets.flat.cpu(), cpu.ppo.nets.flat, atol=1e-9)


@gpu
class TestCudaRandom(OnCuda, contract.TestCoinsRandom):
    pass


@gpu
class TestCudaGreedy(OnCuda, contract.TestCoinsGreedy):
    pass


@gpu
class TestCudaNaiveLearner(OnCuda, contract.TestCoinsNaiveLearner):
    pass


@gpu
class TestCudaReciprocator(OnCuda, contract.TestCoinsReciprocator):
    pass


@gpu
def test_mfos_trains_on_cuda_to_cpu_artifacts_and_checkpoints(tmp_path, monkeypatch):
    """The meta-trainer on cuda: the CPU's training (to 1e-6), CPU tensors in its artifact
    and checkpoints, and a checkpoint written on cuda resumes on the CPU."""
    monkeypatch.setattr(mfos_coins, "CHECKPOINT_EVERY", 1)
    spec = make_spec("mfos", "nl", agent_params=MFOS | {"meta_episodes": 3})
    settings = CoinsSettings(**spec.settings).model_dump()
    pairing = PairingContext(spec.agent, spec.opponent, settings, {"nl": spec.opponent.params})
    (artifact,) = registry.agent(GAME, "mfos").cls.artifacts(pairing)

    def train(device: str, folder: str, stop: int | None = None):
        training = Training(artifact, {}, ArtifactCache(tmp_path / folder, packaged=False),
                            total=3)
        training.device = torch.device(device)
        if stop is not None:
            real = training.on_step

            def on_step(row: dict) -> None:  # dies in meta-episode ``stop`` (0-based),
                real(row)  # after the checkpoint of the first ``stop``
                if row["episode"] == stop:
                    raise KilledError

            training.on_step = on_step
        return training, mfos_coins.train(training)

    with worker_numerics():
        _, (want, want_log) = train("cpu", "cpu")
    with worker_numerics(CUDA):
        training, (got, got_log) = train(CUDA, "cuda")
        with pytest.raises(KilledError):
            train(CUDA, "killed", stop=2)
    for name, tensor in want["player0"].items():
        assert got["player0"][name].device.type == "cpu"
        assert torch.allclose(got["player0"][name], tensor, atol=1e-6), name
    assert [r["reward"] for r in got_log] == pytest.approx([r["reward"] for r in want_log],
                                                           abs=1e-6)
    killed = Training(artifact, {}, ArtifactCache(tmp_path / "killed", packaged=False), total=3)
    saved = killed.resume()
    assert saved is not None and saved["step"] == 2
    assert all(t.device.type == "cpu" for t in tensors_in(saved["learners"])
               if isinstance(t, torch.Tensor))
    with worker_numerics():  # the rest of the training, on the CPU
        resumed, _ = mfos_coins.train(killed)
    for name, tensor in want["player0"].items():
        assert torch.allclose(resumed["player0"][name], tensor, atol=1e-6), name
