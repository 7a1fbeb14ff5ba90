"""A worker process for tests/test_workers.py: the real worker loop and storage, a cheap objective.

    python tests/search_worker.py STORAGE STUDY TRIALS [HANG_AT MARK_FILE]

With HANG_AT, this process's HANG_AT-th trial writes its number to MARK_FILE and sleeps (to be killed there).
With WORKER_BARRIER=DIR:N in the environment, the worker waits until N workers have signed in to DIR before its
first trial, so a slow start on a loaded machine cannot leave one worker doing all the trials.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from compressor.workers import open_storage, work  # noqa: E402


def wait_for_others(barrier: str) -> None:
    """Sign in to the barrier folder, then wait (at most 120 s) until all its workers have."""
    folder, count = Path(barrier.rsplit(":", 1)[0]), int(barrier.rsplit(":", 1)[1])
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(folder.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    url, study_name, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hang_at, mark = (int(sys.argv[4]), Path(sys.argv[5])) if len(sys.argv) > 5 else (None, None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(directions=["minimize", "minimize"], storage=storage, study_name=study_name,
                                load_if_exists=True, sampler=optuna.samplers.NSGAIISampler(population_size=4, seed=0))
    evaluated = []

    def objective(trial: optuna.Trial) -> list[float]:
        x = trial.suggest_float("x", -2.0, 2.0)
        evaluated.append(trial.number)
        if len(evaluated) == hang_at:
            mark.write_text(str(trial.number))
            time.sleep(600)
        time.sleep(0.05)  # long enough for two workers to interleave
        return [x * x, (x - 1) ** 2]

    if os.environ.get("WORKER_BARRIER"):
        wait_for_others(os.environ["WORKER_BARRIER"])
    work(study, objective, trials)


if __name__ == "__main__":
    main()
