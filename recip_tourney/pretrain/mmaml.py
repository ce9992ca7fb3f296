"""M-MAML: a meta-learned initial policy for playing against naive learners (spec, section 4).

M-MAML (Kim et al. 2021, as improved in Lu et al. 2022's code) learns initial logits ``phi``
and its own step size ``alpha`` so that a naive learner started at ``phi`` does well over a
whole 100-step learning run against naive learners. The unroll is differentiated exactly,
including the path through the opponents' updates (the peer-learning term of Meta-MAPG).

In the tournament M-MAML is an NL with lr 1 started at ``phi``; the ten published ``phi`` are
in ``data/mmaml_published.yaml`` (:func:`published_initialisations`). :func:`meta_train`
reproduces the training that made them, with every independent initialisation in one batch.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import yaml

from recip_tourney.device import upload
from recip_tourney.envs.ipd import STATES
from recip_tourney.envs.ipd_analytic import AnalyticIPD

#: Opponents per initialisation and outer iteration in :func:`meta_train` (see its docstring).
DEFAULT_BATCH = 512


def published_initialisations(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The ten published M-MAML initial logits, shape (10, 5), rows in id order 0..9.

    Egocentric, states (start, CC, CD, DC, DD); decoded from the reference's
    ``data/mamaml_IPD_{0..9}.th`` and rounded to 3 decimals (spec, section 4).
    """
    path = importlib.resources.files("recip_tourney") / "data" / "mmaml_published.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if tuple(data["states"]) != STATES:
        raise ValueError(f"mmaml_published.yaml: states {data['states']} are not {STATES}")
    logits = torch.tensor(data["logits"], dtype=dtype, device="cpu")
    if logits.shape != (10, len(STATES)):
        raise ValueError(f"mmaml_published.yaml: logits of shape {tuple(logits.shape)}")
    return logits


@dataclass(frozen=True)
class MetaTrainResult:
    """Outcome of :func:`meta_train`.

    Attributes
    ----------
    logits : Tensor, shape (n_inits, 5), float64
        The learned initial logits ``phi``, egocentric (start, CC, CD, DC, DD).
    own_lr : Tensor, shape (n_inits,), float64
        The learned own step size ``alpha`` (recorded only; the tournament uses lr 1).
    log : list of dict
        One entry per outer iteration: ``iteration``; ``loss``, the mean over inits of the
        outer loss; ``reward`` and ``opponent_reward``, the mean per-step reward
        ``(1 - gamma) V`` over the unrolled steps, the batch and the inits.
    """

    logits: torch.Tensor
    own_lr: torch.Tensor
    log: list[dict]


@dataclass(frozen=True)
class Unroll:
    """One differentiable unroll of all initialisations side by side.

    ``loss`` (n_inits,) is each init's outer loss, the sum over steps and over its batch of
    the agent's unnormalised loss ``-V``; ``reward`` and ``opponent_reward`` are detached
    scalar means of ``(1 - gamma) V`` over steps, games and inits.
    """

    loss: torch.Tensor
    reward: torch.Tensor
    opponent_reward: torch.Tensor


def initial_meta_parameters(
    generator: torch.Generator, n_inits: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """``phi`` ~ N(0, 1), shape (n_inits, 5), then ``alpha`` ~ U(0, 1), shape (n_inits,).

    Drawn in float64 on the generator's device (the CPU) and then cast, so runs in any
    dtype start from the same point.
    """
    where = generator.device
    phi = torch.randn(n_inits, len(STATES), generator=generator, dtype=torch.float64,
                      device=where)
    alpha = torch.rand(n_inits, generator=generator, dtype=torch.float64, device=where)
    return phi.to(dtype), alpha.to(dtype)


def sample_opponents(
    generator: torch.Generator,
    n_inits: int,
    batch: int,
    init_std: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """N(0, init_std) opponent logits, state-major (5, n_inits * batch), block k for init k.

    Drawn game by game, (n_inits * batch, 5), in float64 on the generator's device (the
    CPU) and then cast, then copied to ``device``.
    """
    draw = torch.randn(n_inits * batch, len(STATES), generator=generator, dtype=torch.float64,
                       device=generator.device)
    return upload((init_std * draw).T.contiguous().to(dtype), device)


def unroll_outer_loss(
    env: AnalyticIPD,
    phi: torch.Tensor,
    alpha: torch.Tensor,
    opponents: torch.Tensor,
    *,
    steps: int,
    opponent_lr: float = 1.0,
) -> Unroll:
    """Unroll ``steps`` simultaneous exact-gradient steps of agents started at ``phi``.

    Parameters
    ----------
    env : AnalyticIPD
        The game (its dtype must be that of the tensors).
    phi : Tensor, shape (n_inits, 5)
        Initial agent logits, one row per initialisation.
    alpha : Tensor, shape (n_inits,)
        Each initialisation's agent step size.
    opponents : Tensor, shape (5, n_inits * batch)
        State-major opponent logits; columns ``k * batch ... (k + 1) * batch - 1`` face init k.
    steps : int
        Number of updates; the agent's loss is counted at each of the ``steps`` pre-update
        points (the initial one included, the final post-update one not).
    opponent_lr : float
        The naive opponents' step size.

    The inner gradients are the closed-form :meth:`View.gradient` (explicit differentiable
    ops), so one ``backward`` of ``loss`` gives the exact meta-gradient through both
    players' updates (the peer-learning term included) with no nested autograd."""
    n_inits = phi.shape[0]
    batch = opponents.shape[1] // n_inits
    if steps < 1 or opponents.shape != (len(STATES), n_inits * batch):
        raise ValueError(f"unroll: steps={steps}, opponents of shape {tuple(opponents.shape)}")
    agent = phi.T.repeat_interleave(batch, dim=1)  # (5, n_inits * batch)
    agent_lr = alpha.repeat_interleave(batch)  # (n_inits * batch,), broadcast over states
    other = opponents
    value = torch.zeros(n_inits * batch, dtype=phi.dtype, device=phi.device)  # V over steps
    other_value = torch.zeros_like(value)
    for _ in range(steps):
        view = env.evaluate(agent, other)
        value = value + view.value_own
        other_value = other_value + view.value_other.detach()
        # Simultaneous: both gradients at the same pre-update point.
        agent, other = (
            agent + agent_lr * view.gradient(),
            other + opponent_lr * view.flip().gradient(),
        )
    scale = (1 - env.gamma) / steps
    return Unroll(
        loss=-value.view(n_inits, batch).sum(1),
        reward=scale * value.detach().mean(),
        opponent_reward=scale * other_value.mean(),
    )


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (see :func:`meta_train`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def meta_train(
    *,
    n_inits: int = 10,
    iterations: int = 1000,
    unroll: int = 100,
    batch: int = DEFAULT_BATCH,
    outer_lr: float = 0.01,
    opponent_lr: float = 1.0,
    init_std: float = 1.0,
    gamma: float = 0.96,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    callback: Callable[[dict], None] | None = None,
    device: torch.device | str = "cpu",
) -> MetaTrainResult:
    """Meta-train ``n_inits`` independent M-MAML initialisations at once (spec, section 4).

    As written in the reference (S1 ``generate_mamaml``): per init, ``phi`` ~ N(0, 1) and
    ``alpha`` ~ U(0, 1), Adam(lr ``outer_lr``) for ``iterations`` outer iterations; each draws
    ``batch`` fresh N(0, ``init_std``) opponents per init and unrolls ``unroll`` simultaneous
    exact-gradient steps (opponent lr ``opponent_lr``, agent lr ``alpha``); the outer loss is
    the agent's unnormalised loss ``-V`` summed over the steps and the batch. All inits' games
    lie side by side in one batch of ``n_inits * batch`` games, one evaluation per step.

    Everything is drawn from one ``torch.Generator`` seeded with ``seed`` (meta-parameters
    first, then each iteration's opponents), so a call is deterministic.

    Device: the unrolls and Adam run on ``device``; the draws are made on the CPU and copied
    over, the host reads back one log entry per outer iteration, and the result is on the
    CPU.

    Threads: the run is single-threaded (``torch.set_num_threads(1)`` for its duration, the
    previous setting restored after). Thousands of tiny operations dominate the cost, so a
    second thread gains nothing (idle 2-core machine, batch 512: 0.26 s per iteration on 1
    thread, 0.29 s on 2), and when another process holds a core, the backward of
    ``index_select`` (``scatter_add_``, parallel at any size) made two threads 10-50 times
    slower. Results do not depend on the thread count.

    Batch size: the spec does not state the reference's ``b``. The default 512 is a cost
    choice. Median seconds per outer iteration of the full default (10 inits, 100 steps) on
    this project's 2-core CPU, one core busy with another job: 0.17 at batch 64, 0.20 at 128,
    0.22 at 256, 0.31 at 512 (0.49 at 1024). So 1000 iterations take about 5 minutes at 512,
    the largest of {64, 128, 256, 512}, within a 10-minute budget with a 2x margin.
    512 opponents per init and outer step keep the meta-gradient estimate smooth for Adam
    at lr 0.01; the sum (not mean) over the batch only scales the gradient, which Adam
    normalises away.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    phi0, alpha0 = initial_meta_parameters(generator, n_inits, dtype)
    phi = upload(phi0, device).clone().requires_grad_(True)
    alpha = upload(alpha0, device).clone().requires_grad_(True)
    # Adam is elementwise and init k's loss depends only on (phi[k], alpha[k]); all inits
    # take the same number of steps, so one Adam over the stacked parameters makes exactly
    # the updates of n_inits separate optimisers.
    optimiser = torch.optim.Adam([phi, alpha], lr=outer_lr)
    env = AnalyticIPD(gamma, dtype, device)
    log: list[dict] = []
    with _single_threaded():
        for iteration in range(iterations):
            opponents = sample_opponents(generator, n_inits, batch, init_std, dtype, device)
            out = unroll_outer_loss(
                env, phi, alpha, opponents, steps=unroll, opponent_lr=opponent_lr
            )
            optimiser.zero_grad()
            out.loss.sum().backward()
            optimiser.step()
            # one read-back per iteration, for the log (and the progress bar)
            loss, reward, opponent_reward = torch.stack(
                (out.loss.detach().mean(), out.reward, out.opponent_reward)).tolist()
            entry = {"iteration": iteration, "loss": loss, "reward": reward,
                     "opponent_reward": opponent_reward}
            log.append(entry)
            if callback is not None:
                callback(entry)
    return MetaTrainResult(
        logits=phi.detach().to(device="cpu", dtype=torch.float64).clone(),
        own_lr=alpha.detach().to(device="cpu", dtype=torch.float64).clone(),
        log=log,
    )
