"""What a pretrained artifact is, who trains it, and making sure the ones a run needs exist.

An :class:`ArtifactSpec` names a kind (``mmaml``, ``mfos``), a JSON-able key holding
everything that determines the result (game settings, the learner's parameters, the
opponent it trains against, the training seed) and the artifacts it depends on. Its digest
adds the learner's code version, so a change to a learner that changes its output (bump
its version) never reuses an old artifact. Trainers register per kind.

A training runs on a device (``ensure(..., device=...)``, :attr:`Training.device`); the
device is not part of the digest (an artifact is weights, wherever they were trained) but is
recorded in the artifact's meta. Payloads and checkpoints are saved as CPU tensors, so they
load anywhere; the agents that use them move them to their own device.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.console import Console

from recip_tourney.device import describe, resolve_device
from recip_tourney.errors import UserError
from recip_tourney.pretrain.cache import ArtifactCache
from recip_tourney.progress import progress_bar
from recip_tourney.tournament.schedule import stable_hash


@dataclass(frozen=True)
class ArtifactSpec:
    """One artifact to train or load.

    Attributes
    ----------
    kind : str
        The trainer (``mmaml``, ``mfos``).
    key : dict
        Everything that determines the artifact (JSON-able).
    label : str
        Human description, e.g. ``M-FOS vs lola, training seed 0``.
    requires : tuple of ArtifactSpec
        Artifacts the training needs first (e.g. M-MAML's initialisations for M-FOS vs
        M-MAML); their digests are part of this digest.
    pretrain_command : str
        The command that trains it by hand.
    """

    kind: str
    key: dict[str, Any] = field(hash=False)
    label: str
    requires: tuple[ArtifactSpec, ...] = ()
    pretrain_command: str = ""

    @property
    def digest(self) -> str:
        """Stable 20-character key digest (includes the learner's code version)."""
        trainer = _TRAINERS.get(self.kind)
        version = trainer.version if trainer else "?"
        return stable_hash(
            {
                "kind": self.kind,
                "version": version,
                "key": self.key,
                "requires": [r.digest for r in self.requires],
            },
            20,
        )


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (nested dicts, lists, tuples) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(item) for item in value)
    return value


@dataclass
class Training:
    """What a trainer gets besides its spec: dependencies, progress, checkpoints and the
    device to train on (``device``: the requirements' payloads are on the CPU)."""

    spec: ArtifactSpec
    requirements: dict[str, dict[str, Any]]
    cache: ArtifactCache
    on_step: Callable[[dict[str, Any]], None] = lambda row: None
    total: int = 0
    device: torch.device = torch.device("cpu")

    def resume(self) -> dict[str, Any] | None:
        """The checkpoint of an interrupted training of this artifact, if any (CPU tensors:
        the trainer loads them onto :attr:`device`)."""
        return self.cache.load_checkpoint(self.spec.kind, self.spec.digest)

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Save a checkpoint (a dict of tensors and plain values), its tensors on the CPU."""
        self.cache.save_checkpoint(self.spec.kind, self.spec.digest,
                                   {**to_cpu(state), "digest": self.spec.digest})


TrainFn = Callable[[Training], tuple[dict[str, Any], list[dict[str, Any]]]]


@dataclass(frozen=True)
class Trainer:
    """A registered trainer: ``train(training) -> (payload, log)`` and its code version."""

    kind: str
    version: str
    train: TrainFn
    steps: Callable[[ArtifactSpec], int]


_TRAINERS: dict[str, Trainer] = {}


def register_trainer(
    kind: str, *, version: str, steps: Callable[[ArtifactSpec], int]
) -> Callable[[TrainFn], TrainFn]:
    """Register the trainer of artifacts of ``kind``; ``steps(spec)`` sizes its progress bar."""

    def decorate(fn: TrainFn) -> TrainFn:
        _TRAINERS[kind] = Trainer(kind, version, fn, steps)
        return fn

    return decorate


def _flatten(specs: list[ArtifactSpec]) -> list[ArtifactSpec]:
    """Dependencies first, each digest once."""
    seen: dict[str, ArtifactSpec] = {}

    def visit(spec: ArtifactSpec) -> None:
        for dep in spec.requires:
            visit(dep)
        seen.setdefault(spec.digest, spec)

    for spec in specs:
        visit(spec)
    return list(seen.values())


def _describe(row: Mapping[str, Any]) -> str:
    parts = []
    for key, value in row.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4f}")
        elif key not in ("seconds",):
            parts.append(f"{key} {value}")
    return "  ".join(parts)


def ensure(
    specs: list[ArtifactSpec],
    cache: ArtifactCache,
    *,
    train: bool = True,
    console: Console | None = None,
    progress: bool = True,
    log_lines: bool = False,
    retrain: bool = False,
    device: str | torch.device = "cpu",
) -> dict[str, dict[str, Any]]:
    """Load every artifact of ``specs`` (and their dependencies), training the missing ones.

    Parameters
    ----------
    specs : list of ArtifactSpec
    cache : ArtifactCache
    train : bool
        False: a missing artifact is a :class:`UserError` naming the command that trains it.
    console : Console, optional
        Where notices, progress and log lines go (stderr by default).
    progress : bool
        Show a progress bar while training.
    log_lines : bool
        Print one line per training step (meta-episode / outer iteration).
    retrain : bool
        Train the top-level ``specs`` again even when cached (dependencies are reused).
    device : str or torch.device
        Where missing artifacts are trained (``cpu``, ``cuda``, ``auto`` or a device); not
        part of any digest.

    Returns
    -------
    dict
        Payload of every artifact by digest, as CPU tensors.
    """
    console = console or Console(stderr=True)
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    payloads: dict[str, dict[str, Any]] = {}
    top = {s.digest for s in specs}
    for spec in _flatten(specs):
        digest = spec.digest
        found = None if (retrain and digest in top) else cache.load(spec.kind, digest)
        for line in cache.notices:
            console.print(f"[yellow]{line}[/yellow]", highlight=False, soft_wrap=True)
        cache.notices.clear()
        if found is not None:
            payloads[digest] = found
            continue
        if not train:
            raise UserError(
                f"{spec.label} is not pretrained (artifact {digest} is not in {cache.root}); "
                f"train it with `{spec.pretrain_command}` or run without --no-pretrain"
            )
        payloads[digest] = _train(spec, payloads, cache, console, progress, log_lines, device)
    return payloads


def _train(
    spec: ArtifactSpec,
    payloads: dict[str, dict[str, Any]],
    cache: ArtifactCache,
    console: Console,
    progress: bool,
    log_lines: bool,
    device: torch.device,
) -> dict[str, Any]:
    trainer = _TRAINERS[spec.kind]
    total = trainer.steps(spec)
    cache.ensure_writable(spec.kind, spec.digest)
    console.print(
        f"[cyan]training {spec.label} ({total} steps); cached as {spec.kind}/{spec.digest} "
        f"in {cache.root}[/cyan]",
        highlight=False,
        soft_wrap=True,
    )
    start = time.perf_counter()
    with progress_bar(console, show=progress, last=True) as bar:
        task = bar.add_task(spec.label, total=total, last="")
        training = Training(
            spec, {d.digest: payloads[d.digest] for d in spec.requires}, cache, total=total,
            device=device,
        )

        def on_step(row: dict[str, Any]) -> None:
            text = _describe(row)
            bar.update(task, advance=1, last=text)
            if log_lines:
                bar.console.print(text, highlight=False, soft_wrap=True)

        training.on_step = on_step
        done = training.resume()
        if done is not None:
            bar.update(task, completed=int(done.get("step", 0)))
            console.print(f"resuming {spec.label} from step {done.get('step', 0)}",
                          highlight=False)
        threads = torch.get_num_threads()
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        # One thread: the trainings are thousands of small operations, which a second
        # thread does not speed up, and which run 10-50x slower when another process
        # holds a core (OpenMP workers wait on each other). Also fixes the BLAS
        # summation order, so an artifact does not depend on the machine's core count.
        # On a GPU, deterministic algorithms (sums in a fixed order), as in GPU matches.
        torch.set_num_threads(1)
        if device.type == "cuda":
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            payload, log = trainer.train(training)
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    payload = to_cpu(payload)
    meta = {
        "kind": spec.kind,
        "label": spec.label,
        "key": spec.key,
        "requires": [r.digest for r in spec.requires],
        "version": trainer.version,
        "command": spec.pretrain_command,
        "argv": sys.argv[1:],
        "seconds": round(time.perf_counter() - start, 1),
        "threads": 1,
        **describe(device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": _versions(),
    }
    folder = cache.save(spec.kind, spec.digest, payload, meta, log)
    console.print(f"saved {spec.label} to {folder}", highlight=False, soft_wrap=True)
    return payload


def _versions() -> dict[str, str]:
    from recip_tourney.tournament.runner import versions

    return versions()
