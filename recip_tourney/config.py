"""Tournament configuration: shipped YAML, profile, user file, ``--set`` overrides, validation.

Resolution order (later wins): ``configs/<game>.yaml`` (the paper's settings), the profile
overlay ``configs/<game>.<profile>.yaml`` (e.g. ``ci``), the user's ``--config`` file, then
each ``--set dotted.key=value``. The result is validated against the game's settings model
and every agent's parameter model; anything unknown or out of range is a :class:`UserError`
naming the key and the valid choices.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recip_tourney import registry
from recip_tourney.device import NoCudaError, resolve_device_name
from recip_tourney.errors import UserError
from recip_tourney.tournament.schedule import Player, stable_hash

#: Profiles every game ships; a game may ship more (``configs/<game>.<profile>.yaml``).
PROFILES = ("paper", "ci")


class TournamentFile(BaseModel):
    """The top level of a config file."""

    model_config = ConfigDict(extra="forbid")

    game: str
    seed: int = Field(0, ge=0, description="master seed")
    seeds: int = Field(5, gt=0, description="repetitions of every ordered pairing")
    roster: list[str] = Field(min_length=1)
    pairings: list[tuple[str, str]] | None = Field(
        None, description="only these ordered pairings [agent, opponent] of roster agents; "
        "default: every ordered pairing")
    settings: dict[str, Any] = {}
    agents: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class Config:
    """A resolved, validated tournament configuration."""

    game: str
    seed: int
    seeds: int
    roster: tuple[Player, ...]
    settings: BaseModel
    agent_params: dict[str, dict[str, Any]]
    pairings: tuple[tuple[str, str], ...] | None = None

    @property
    def settings_hash(self) -> str:
        """Hash of what shapes every match (game, master seed, settings), not the roster.

        The device is left out: a match is the same experiment on the CPU or a GPU (each
        record says where it ran), so a results directory may hold both and a match
        checkpointed on one may finish on the other.
        """
        settings = self.settings.model_dump(exclude={"device"})
        return stable_hash([self.game, self.seed, settings])

    @property
    def device(self) -> str:
        """The device the matches run on (``settings.device`` with ``auto`` resolved)."""
        return resolve_device_name(getattr(self.settings, "device", "cpu"))

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (what the results directory records)."""
        return {
            "game": self.game,
            "seed": self.seed,
            "seeds": self.seeds,
            "roster": [p.name for p in self.roster],
            "settings": self.settings.model_dump(),
            "agents": self.agent_params,
            **({"pairings": [list(p) for p in self.pairings]} if self.pairings else {}),
        }


def load_yaml(path: Path | str) -> dict[str, Any]:
    """Read a YAML mapping; UserError with file and line for a malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """Parse YAML text that must hold a mapping (an empty file is an empty mapping)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"malformed YAML in {where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{source} must hold a mapping of config keys, not {type(data).__name__}")
    return data


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overlay`` into a copy of ``base`` (mappings merge, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one ``dotted.key=value`` (value parsed as YAML) to a copy of ``data``."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects key=value (e.g. settings.batch=256), got {assignment!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"--set {key}: value {raw!r} is not valid YAML ({problem})") from None
    nested: Any = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return merge(data, nested)


def profiles(game: str) -> tuple[str, ...]:
    """The profiles ``game`` ships: ``paper``, ``ci`` and any other overlay file."""
    stem = registry.game(game).config.removesuffix(".yaml")
    folder = resources.files("recip_tourney") / "configs"
    extra = sorted(
        f.name[len(stem) + 1 : -len(".yaml")] for f in folder.iterdir()
        if f.name.startswith(f"{stem}.") and f.name.endswith(".yaml")
    )
    return PROFILES + tuple(p for p in extra if p and p not in PROFILES)


def shipped_config(game: str, profile: str = "paper") -> dict[str, Any]:
    """The shipped config of ``game``, with the ``profile`` overlay applied."""
    valid = profiles(game)
    if profile not in valid:
        raise UserError(f"unknown profile {profile!r} for game {game}; "
                        f"valid profiles: {', '.join(valid)}")
    info = registry.game(game)
    folder = resources.files("recip_tourney") / "configs"
    data = parse_yaml((folder / info.config).read_text(encoding="utf-8"), info.config)
    if profile != "paper":
        name = info.config.replace(".yaml", f".{profile}.yaml")
        data = merge(data, parse_yaml((folder / name).read_text(encoding="utf-8"), name))
    return data


def _validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        key = f"{where}.{loc}" if where and loc else (where or loc)
        if err["type"] == "extra_forbidden":
            valid = ", ".join(model.model_fields) or "none"
            raise UserError(f"unknown config key {key}; valid keys: {valid}") from None
        if err["type"] == "missing":
            raise UserError(f"missing config key {key}") from None
        if isinstance(err.get("input"), dict):  # a check across keys: its message names them
            raise UserError(f"bad config: {err['msg'].removeprefix('Value error, ')}") from None
        raise UserError(f"bad config value {key}={err.get('input')!r}: {err['msg']}") from None


def resolve(data: dict[str, Any]) -> Config:
    """Validate a merged config mapping into a :class:`Config`."""
    top = _validate(TournamentFile, data, "")
    assert isinstance(top, TournamentFile)
    info = registry.game(top.game)
    settings = _validate(info.settings, top.settings, "settings")
    try:
        resolve_device_name(getattr(settings, "device", "cpu"))
    except NoCudaError as exc:
        raise UserError(str(exc)) from None
    known = {a.name: a for a in registry.agents(top.game)}
    for name in top.agents:
        if name not in known:
            raise UserError(
                f"unknown agent {name!r} in config key agents for game {top.game}; "
                f"valid agents: {', '.join(known)}"
            )
    params = {
        name: _validate(a.params, top.agents.get(name, {}), f"agents.{name}").model_dump()
        for name, a in known.items()
    }
    roster = []
    for name in top.roster:
        registry.agent(top.game, name)  # UserError listing valid names
        if name in (p.name for p in roster):
            raise UserError(f"agent {name!r} appears twice in the roster")
        roster.append(Player(name, params[name]))
    pairings = None
    if top.pairings is not None:
        names = [p.name for p in roster]
        for pair in top.pairings:
            for name in pair:
                if name not in names:
                    raise UserError(f"pairing {list(pair)} names {name!r}, which is not in the "
                                    f"roster; roster: {', '.join(names)}")
        pairings = tuple(dict.fromkeys(tuple(p) for p in top.pairings))
        if not pairings:
            raise UserError("config key pairings is empty; list [agent, opponent] pairs or "
                            "leave it out for every ordered pairing")
    return Config(top.game, top.seed, top.seeds, tuple(roster), settings, params, pairings)


def load_config(
    game: str | None = None,
    profile: str = "paper",
    config_file: Path | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """Resolve a tournament config from all its sources (see module docstring)."""
    user = load_yaml(config_file) if config_file else {}
    chosen = game or user.get("game") or "ipd-analytic"
    if user.get("game") not in (None, chosen):
        raise UserError(
            f"{config_file} is a config for game {user['game']!r}, but --game is {chosen!r}"
        )
    data = merge(shipped_config(chosen, profile), user)
    for assignment in overrides or []:
        data = apply_override(data, assignment)
    if data.get("game") != chosen:
        raise UserError(f"config key game cannot be changed to {data.get('game')!r}; use --game")
    return resolve(data)
