"""Round-robin schedule: roster x roster (self-play included) x seeds -> work units.

A :class:`MatchSpec` is plain picklable data. Seeds come from a stable key (game, master
seed, both players with their parameters, repetition index), never from a global RNG or the
order of completion: adding an agent or a seed changes no existing match, and any worker
count plays the same games.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any


def stable_hash(obj: Any, size: int = 16) -> str:
    """Hex digest of the canonical JSON of ``obj`` (sorted keys), ``size`` characters long."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:size]


@dataclass(frozen=True)
class Player:
    """A roster entry: registry name and its resolved parameters (JSON-able)."""

    name: str
    params: dict[str, Any]

    def key(self) -> list[Any]:
        """The part of a match key that identifies this player."""
        return [self.name, self.params]


@dataclass(frozen=True)
class SeedSlot:
    """One repetition of a pairing: its index, the derived seed and the match id."""

    index: int
    seed: int
    match_id: str


@dataclass(frozen=True)
class MatchSpec:
    """A unit of work: one ordered pairing and the repetitions still to play.

    ``agent`` moves first (the reference code's slot p1), ``opponent`` second. All seeds of
    a pairing run as one batch; each seed's games are drawn from its own generator, so a
    seed's numbers do not depend on which other seeds share the batch.
    """

    game: str
    settings: dict[str, Any]
    settings_hash: str
    agent: Player
    opponent: Player
    seeds: tuple[SeedSlot, ...]
    #: Pretrained artifacts by role (``agent``/``opponent``), in the order the agent
    #: names them: plain tensors that travel with the unit, so workers need no cache.
    artifacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict, compare=False)
    #: Cores the worker may use for the match's independent computations (a Coins match's
    #: two learners' updates, the estimator's model groups); the numbers do not depend on it.
    threads: int = field(default=1, compare=False)
    #: Folder where a game that supports it keeps mid-match checkpoints of the unit
    #: (:mod:`recip_tourney.tournament.checkpoint`), and the seconds between them; None:
    #: none. Neither changes a number.
    checkpoints: str | None = field(default=None, compare=False)
    checkpoint_every_s: float = field(default=600.0, compare=False)

    def without(self, finished: set[str]) -> MatchSpec | None:
        """The same unit minus finished match ids; None when nothing is left."""
        left = tuple(s for s in self.seeds if s.match_id not in finished)
        return replace(self, seeds=left) if left else None


def derive_seed(game: str, master_seed: int, agent: Player, opponent: Player, index: int) -> int:
    """A 63-bit seed from the stable key of one repetition of one ordered pairing."""
    key = [game, master_seed, agent.key(), opponent.key(), index]
    return int(stable_hash(key, 16), 16) & ((1 << 63) - 1)


def match_id(settings_hash: str, agent: Player, opponent: Player, index: int) -> str:
    """File-name-safe id of one match; differs whenever anything that shapes it differs."""
    return stable_hash([settings_hash, agent.key(), opponent.key(), index], 20)


def round_robin(
    game: str,
    settings: dict[str, Any],
    settings_hash: str,
    master_seed: int,
    roster: list[Player],
    n_seeds: int,
) -> list[MatchSpec]:
    """Every ordered pairing of ``roster`` (self-play included), each with ``n_seeds`` seeds."""
    specs = []
    for agent in roster:
        for opponent in roster:
            slots = tuple(
                SeedSlot(
                    i,
                    derive_seed(game, master_seed, agent, opponent, i),
                    match_id(settings_hash, agent, opponent, i),
                )
                for i in range(n_seeds)
            )
            specs.append(MatchSpec(game, settings, settings_hash, agent, opponent, slots))
    return specs
