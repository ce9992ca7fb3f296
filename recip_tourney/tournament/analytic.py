"""The IPD-Analytic protocol: train both agents against each other with exact values.

Per update (spec 6.1): evaluate both current policies exactly, record both players'
average reward per step and P(cooperate) at these pre-update policies, then let the agent
(slot p1) update, then the opponent (slot p2, which may look at p1's new policy; not in
pairings with a meta-game agent such as M-FOS, played as its meta-game: both from the same
point). One unrecorded update comes first, as in the reference code's ``reset``. A match's
reward is the mean over the recorded updates and over the batch of games; its cooperation
statistics are those of the final policies.

Everything of a match lives on the settings' ``device``; the initial logits are drawn from
each seed's CPU generator and copied over, and the per-update records stay there as tensors
until the match ends, when they come back to the host in one go.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from recip_tourney.agents.base import MatchContext, build_agent
from recip_tourney.device import DeviceName, resolve_device
from recip_tourney.envs.ipd import STATES
from recip_tourney.envs.ipd_analytic import AnalyticIPD, View
from recip_tourney.registry import register_game
from recip_tourney.tournament.records import match_record
from recip_tourney.tournament.schedule import MatchSpec


class AnalyticSettings(BaseModel):
    """Settings of an IPD-Analytic tournament (defaults: the paper's protocol)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gamma: float = Field(0.96, gt=0.0, lt=1.0, description="inner discount")
    batch: int = Field(1024, gt=0, description="independent games per match")
    updates: int = Field(100, gt=0, description="recorded learning updates")
    warmup_updates: int = Field(1, ge=0, description="unrecorded updates at the start")
    init_std: float = Field(1.0, ge=0.0, description="std of learners' N(0, std) logits")
    dtype: Literal["float32", "float64"] = Field("float32", description="floating type")
    device: DeviceName = Field(
        "cpu", description="where tensors live: cpu, cuda, or auto (cuda when torch sees one)"
    )


_SUMMARY_KEYS = ("reward", "opponent_reward", "p_cooperate", "opponent_p_cooperate")


def _per_seed(x: torch.Tensor, n_seeds: int) -> torch.Tensor:
    """Mean over each seed's slice of the batch, accumulated in float64: shape (n_seeds,)."""
    return x.reshape(n_seeds, -1).mean(1, dtype=torch.float64)


def _cooperation(view: View, n_seeds: int) -> dict[str, torch.Tensor]:
    """P(cooperate) of the viewing player: overall (discounted visitation) and per state."""
    stats = {"overall": _per_seed(view.p_cooperate, n_seeds)}
    for i, state in enumerate(STATES):
        stats[state] = _per_seed(view.p_own[i], n_seeds)
    return stats


@register_game(
    "ipd-analytic",
    family="analytic",
    config="ipd-analytic.yaml",
    settings=AnalyticSettings,
    summary="Iterated prisoner's dilemma with exact discounted returns of memory-one policies",
    length="updates",
    overall="under the discounted visitation",
)
def play_analytic(spec: MatchSpec) -> list[dict[str, Any]]:
    """Play every seed of ``spec`` as one batch; return one match record per seed."""
    s = AnalyticSettings(**spec.settings)
    game = AnalyticIPD(s.gamma, getattr(torch, s.dtype), resolve_device(s.device))
    first = build_agent(spec.game, spec.agent, game, s.init_std)
    second = build_agent(spec.game, spec.opponent, game, s.init_std)
    n = len(spec.seeds)
    # M-MAML plays from each of its initialisations: every seed gets batch games per one
    games = s.batch * max(first.replicas, second.replicas)
    for role, player in (("agent", first), ("opponent", second)):
        player.prepare(MatchContext(role, spec.seeds, games, spec.artifacts.get(role, [])))
    starts_a, starts_b = [], []
    for slot in spec.seeds:
        generator = torch.Generator(device="cpu").manual_seed(slot.seed)
        starts_a.append(first.initial_logits(games, generator))
        starts_b.append(second.initial_logits(games, generator))
    theta_a, theta_b = torch.cat(starts_a, dim=1), torch.cat(starts_b, dim=1)

    # The reference's tournament lets the second mover see the first's new policy; pairings
    # with a meta-game agent (M-FOS) are played as its meta-game: both from the same point.
    sequential = not (first.meta_game or second.meta_game)
    summaries: list[torch.Tensor] = []  # per update, (4, n): see View.summary
    curves: dict[str, list[torch.Tensor]] = defaultdict(list)
    with torch.no_grad():
        for step in range(s.warmup_updates + s.updates):
            view = game.evaluate(theta_a, theta_b)
            other_side = view.flip()
            next_a = first.update(view, None)
            next_b = second.update(other_side, next_a if sequential else None)
            if step >= s.warmup_updates:
                summaries.append(view.summary().reshape(4, n, -1).mean(-1, dtype=torch.float64))
                for prefix, player in (("agent", first), ("opponent", second)):
                    for key, value in player.diagnostics().items():
                        curves[f"{prefix}.{key}"].append(_per_seed(value, n))
            theta_a, theta_b = next_a, next_b
        final = game.evaluate(theta_a, theta_b)
        cooperation = {"agent": _cooperation(final, n), "opponent": _cooperation(final.flip(), n)}

    # back to the host once, at the end of the match (no-ops on the CPU)
    per_update = torch.stack(summaries, dim=-1).cpu()  # (4, n, U)
    per_update[2:].clamp_(0.0, 1.0)  # probabilities: float32 rounding can reach 1 + 1e-7
    stacked = dict(zip(_SUMMARY_KEYS, per_update.unbind(0), strict=True))  # each (n, U)
    stacked.update({key: torch.stack(values, dim=1).cpu() for key, values in curves.items()})
    cooperation = {side: {state: v.cpu() for state, v in stats.items()}
                   for side, stats in cooperation.items()}
    return [
        match_record(
            spec,
            slot,
            summary={
                "reward": stacked["reward"][i].mean().item(),
                "opponent_reward": stacked["opponent_reward"][i].mean().item(),
            },
            cooperation={
                side: {state: v[i].item() for state, v in stats.items()}
                for side, stats in cooperation.items()
            },
            curves={key: v[i].tolist() for key, v in stacked.items()},
        )
        for i, slot in enumerate(spec.seeds)
    ]
