"""The GPU check: the ``gpu`` tests, then the four GPU benchmarks, and one table.

Run on a machine with CUDA and torch already installed (no network needed) through
``make gpu-check``, which installs this package without touching torch first. Prints the
GPU tests' result and a table of workload, seconds per episode, the issue's target, peak
GPU memory, GPU and torch; writes the table and every benchmark's JSON to ``--out``.
Each step has a time limit, so the whole check ends in well under 8 minutes on an H200.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

COINS = ["bench_coins.py", "--device", "cuda", "--seeds", "8", "--warmup", "3", "--episodes", "2",
         "--pairs", "reciprocator:nl,nl:nl"]
#: (name, script and arguments, target seconds per episode or None, extra environment).
BENCHMARKS: list[tuple[str, list[str], float | None, dict[str, str]]] = [
    ("coins", COINS, None, {}),
    ("coins-graphs", COINS, None, {"RECIP_TOURNEY_CUDA_GRAPHS": "1"}),
    ("coins-mfos", ["bench_coins_mfos.py", "--device", "cuda", "--meta-episodes", "2"], 3.0, {}),
    ("ipd-analytic-mfos", ["bench_mfos.py", "--device", "cuda", "--episodes", "3"], 0.3, {}),
    ("ipd-rollout", ["bench_ipd_rollout.py", "--device", "cuda", "--seeds", "8"], 0.010, {}),
]
#: Targets of workloads that one benchmark reports several of, by workload name.
TARGETS = {"coins reciprocator vs nl": 1.0, "coins nl vs nl": 0.5}


def target_of(workload: str, default: float | None) -> float | None:
    """The issue's target for ``workload`` (with or without CUDA graphs)."""
    return TARGETS.get(workload.removesuffix(" (CUDA graphs)"), default)


def run(command: list[str], limit: float, log: Path, extra: dict[str, str] | None = None
        ) -> tuple[int, float, str]:
    """Run ``command`` with a time limit; its output goes to ``log`` and its tail back."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=limit, check=False)
        code, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code = 124
        text = _text(exc.stdout) + _text(exc.stderr) + f"\n[stopped after {limit:.0f} s]"
    log.write_text(text, encoding="utf-8")
    return code, time.perf_counter() - start, text


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def rows_of(path: Path) -> list[dict]:
    """The rows a benchmark wrote (a row, or a list of rows)."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, list) else [data]


def main() -> int:
    """Run the check; exit 1 when a GPU test or a benchmark failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check")))
    parser.add_argument("--tests-limit", type=float, default=180.0, help="seconds for pytest")
    parser.add_argument("--bench-limit", type=float, default=120.0, help="seconds each")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device; nothing to check", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    gpu, version = torch.cuda.get_device_name(0), torch.__version__
    print(f"gpu-check on {gpu}, torch {version}, CUDA {torch.version.cuda}", flush=True)
    failed = 0
    if not args.skip_tests:
        code, seconds, text = run([sys.executable, "-m", "pytest", "-m", "gpu", "-q",
                                   "-p", "no:cacheprovider", "-rfEs"],
                                  args.tests_limit, args.out / "pytest-gpu.log")
        summary = [line for line in text.splitlines() if line.strip()][-1:] or ["(no output)"]
        print(f"pytest -m gpu: {summary[0]} ({seconds:.0f} s, exit {code})", flush=True)
        if code != 0:
            failed += 1
            print("\n".join(text.splitlines()[-60:]))
    table = []
    for name, command, target, extra in BENCHMARKS:
        report = args.out / f"bench-{name}.json"
        report.unlink(missing_ok=True)
        code, seconds, text = run([sys.executable, str(HERE / command[0]), *command[1:],
                                   "--json", str(report)], args.bench_limit,
                                  args.out / f"bench-{name}.log", extra)
        rows = rows_of(report)
        print(f"{name}: exit {code} in {seconds:.0f} s, {len(rows)} row(s)", flush=True)
        if code != 0 or not rows:
            failed += 1
            print("\n".join(text.splitlines()[-25:]))
        for row in rows:
            row.setdefault("target_s", target_of(row.get("workload", ""), target))
            table.append(row)
    lines = [f"GPU check {time.strftime('%Y-%m-%d')}: {gpu}, torch {version}",
             "| workload | s per episode | target | peak GPU MiB | GPU | torch |",
             "|---|---|---|---|---|---|"]
    for row in table:
        target, per = row.get("target_s"), row.get("seconds_per_episode")
        verdict = "" if target is None or per is None else (
            " (met)" if per <= target else " (missed)")
        lines.append(f"| {row.get('workload')} | {_number(per, '.4g')} |"
                     f" {'-' if target is None else f'<= {target:g}'}{verdict} |"
                     f" {_number(row.get('peak_gpu_mib'), '.0f')} | {row.get('gpu') or gpu} |"
                     f" {row.get('torch', version)} |")
    text = "\n".join(lines)
    (args.out / "gpu-check.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
