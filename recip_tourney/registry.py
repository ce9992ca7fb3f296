"""One registry for games and agents, filled by decorators.

Games register the function that plays one match of that game (the game's *protocol*);
agents register their class under ``(game, name)`` so that the same name (``nl``) can mean
an exact-gradient learner in IPD-Analytic and a PPO learner in a rollout game. Everything
the CLI lists, validates and builds comes from here: there is no other table of names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from recip_tourney.errors import UserError

#: The IPDs' cooperation statistics: P(cooperate) overall, at the first move, and after each
#: joint action seen from the player's side.
IPD_STATISTICS = ("overall", "start", "CC", "CD", "DC", "DD")
IPD_STATISTICS_CAPTION = (
    "P(cooperate) of the row agent's final policy; overall = {overall}, start = first move, "
    "CD = own C and other's D last step"
)


@dataclass(frozen=True)
class GameInfo:
    """Metadata of a registered game.

    Attributes
    ----------
    name : str
        The CLI name (``ipd-analytic``).
    family : str
        Agents written for one family share an interface (``analytic``, ``rollout``).
    play : callable
        ``play(spec) -> list[dict]``: plays one
        :class:`~recip_tourney.tournament.schedule.MatchSpec` and returns one match record
        per seed.
    config : str
        File name of the shipped config under ``recip_tourney/configs``.
    settings : type[pydantic.BaseModel]
        Model of the game's ``settings`` section (sizes, discount, protocol).
    summary : str
        One line for ``recip-tourney list``.
    length : str
        The setting that counts a match's learning steps (``run --episodes`` sets it):
        ``episodes`` in rollout games, ``updates`` in IPD-Analytic.
    overall : str
        What the "overall" P(cooperate) of its cooperation table measures (for captions).
    reward : str
        What a payoff cell is (captions, axis labels): the IPDs' average reward per step,
        Coins' episode return.
    reward_range : (float, float)
        The payoff heatmap's colour range (widened when a mean falls outside).
    statistics : tuple of str
        The cooperation table's columns, in order (the keys of a record's ``cooperation``).
    statistics_caption : str
        What those columns measure (the cooperation table's caption).
    split_seeds : bool
        Whether a seed's numbers are the same to the last bit whichever seeds share its
        batch (tested per game): then a cluster may play every seed as its own unit.
    """

    name: str
    family: str
    play: Callable[..., list[dict[str, Any]]]
    config: str
    settings: type[BaseModel]
    summary: str
    length: str = "episodes"
    overall: str = "realised over the final episodes"
    reward: str = "average reward per step"
    reward_range: tuple[float, float] = (-3.0, 0.0)
    statistics: tuple[str, ...] = IPD_STATISTICS
    statistics_caption: str = IPD_STATISTICS_CAPTION
    split_seeds: bool = False


@dataclass(frozen=True)
class AgentInfo:
    """Metadata of a registered agent class.

    Attributes
    ----------
    name : str
        Roster name (``nl``, ``lola``, ``reciprocator``...).
    game : str
        The game this registration is for.
    cls : type
        The agent class; built as ``cls(params, ...)`` inside the worker.
    params : type[pydantic.BaseModel]
        Its parameter model (defaults = the paper's values, unknown keys rejected).
    learns : bool
        Whether the agent changes its policy during a match.
    summary : str
        First line of the class docstring.
    reference : str
        The paper the agent comes from.
    needs_pretraining : bool
        Whether a pretrained artifact must exist before a match.
    """

    name: str
    game: str
    cls: type
    params: type[BaseModel]
    learns: bool
    summary: str
    reference: str = ""
    needs_pretraining: bool = False


_GAMES: dict[str, GameInfo] = {}
_AGENTS: dict[tuple[str, str], AgentInfo] = {}
_PLUGIN_MODULES = (
    "recip_tourney.tournament.analytic",
    "recip_tourney.tournament.rollout",
    "recip_tourney.tournament.coins",
    "recip_tourney.agents",
)


PlayFn = Callable[..., list[dict[str, Any]]]


def register_game(
    name: str,
    *,
    family: str,
    config: str,
    settings: type[BaseModel],
    summary: str,
    length: str = "episodes",
    overall: str = "realised over the final episodes",
    reward: str = "average reward per step",
    reward_range: tuple[float, float] = (-3.0, 0.0),
    statistics: tuple[str, ...] = IPD_STATISTICS,
    statistics_caption: str = IPD_STATISTICS_CAPTION,
    split_seeds: bool = False,
) -> Callable[[PlayFn], PlayFn]:
    """Register ``play(spec) -> records`` (one record per seed) as game ``name``'s protocol."""

    def decorate(play: PlayFn) -> PlayFn:
        if name in _GAMES:
            raise RuntimeError(f"game {name!r} registered twice")
        if length not in settings.model_fields:
            raise RuntimeError(f"game {name!r}: {length!r} is not one of its settings")
        _GAMES[name] = GameInfo(
            name, family, play, config, settings, summary, length, overall, reward,
            reward_range, statistics, statistics_caption, split_seeds,
        )
        return play

    return decorate


def register_agent(
    name: str,
    *,
    games: tuple[str, ...],
    params: type[BaseModel],
    learns: bool,
    reference: str = "",
    needs_pretraining: bool = False,
) -> Callable[[type], type]:
    """Class decorator: register an agent class for each game in ``games``."""

    def decorate(cls: type) -> type:
        doc = (cls.__doc__ or "").strip().splitlines()
        summary = doc[0] if doc else ""
        for game in games:
            key = (game, name)
            if key in _AGENTS:
                raise RuntimeError(f"agent {name!r} registered twice for {game!r}")
            _AGENTS[key] = AgentInfo(
                name, game, cls, params, learns, summary, reference, needs_pretraining
            )
        cls.registry_name = name
        return cls

    return decorate


def _load_plugins() -> None:
    for module in _PLUGIN_MODULES:
        importlib.import_module(module)


def games() -> dict[str, GameInfo]:
    """All registered games by name."""
    _load_plugins()
    return dict(sorted(_GAMES.items()))


def game(name: str) -> GameInfo:
    """The game called ``name``; a :class:`UserError` listing the valid names otherwise."""
    known = games()
    if name not in known:
        raise UserError(f"unknown game {name!r}; valid games: {', '.join(known)}")
    return known[name]


def describe_reward(game_name: str) -> tuple[str, tuple[float, float]]:
    """What a payoff cell of ``game_name`` is and its heatmap range (the IPDs' defaults for a
    game this installation does not know, e.g. results written by a newer version)."""
    info = games().get(game_name)
    if info is None:
        return GameInfo.reward, GameInfo.reward_range
    return info.reward, info.reward_range


def describe_cooperation(game_name: str) -> tuple[tuple[str, ...], str]:
    """The cooperation table's columns of ``game_name`` and what they measure (the IPDs'
    for a game this installation does not know)."""
    info = games().get(game_name)
    if info is None:
        caption = IPD_STATISTICS_CAPTION.format(overall="as recorded")
        return IPD_STATISTICS, caption
    return info.statistics, info.statistics_caption.format(overall=info.overall)


def agents(game_name: str | None = None) -> list[AgentInfo]:
    """Registered agents, for one game or for all, sorted by game then name."""
    _load_plugins()
    found = [a for (g, _), a in _AGENTS.items() if game_name is None or g == game_name]
    return sorted(found, key=lambda a: (a.game, a.name))


def agent(game_name: str, name: str) -> AgentInfo:
    """The agent ``name`` of ``game_name``; a :class:`UserError` listing valid names otherwise."""
    game(game_name)
    key = (game_name, name)
    if key not in _AGENTS:
        valid = ", ".join(a.name for a in agents(game_name))
        raise UserError(f"unknown agent {name!r} for game {game_name}; valid agents: {valid}")
    return _AGENTS[key]
