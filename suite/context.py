"""RunContext: what the runner hands a reproduction's ``run(cfg, ctx)``."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

import torch

T = TypeVar("T")
log = logging.getLogger("suite")


def default_cache_dir() -> Path:
    """Where generated datasets and converted files are cached (``$SUITE_CACHE``)."""
    return Path(os.environ.get("SUITE_CACHE", Path.home() / ".cache" / "repro-suite"))


def default_data_root() -> Path | None:
    root = os.environ.get("SUITE_DATA")
    return Path(root) if root else None


@dataclass
class RunContext:
    """Per-run environment: scale, seed, device, folders, and whether this is a dry run.

    ``dry_run``: build the whole pipeline (data, models, optimisers) for the resolved config and
    return without training; the runner writes no record for a dry run.
    ``notes`` collects facts about the run (the training loop puts ``resumed_from_step`` there)
    that end up in the result record's ``notes``.
    ``run_dir`` holds the run's log and checkpoints; the training loop saves its state to
    ``checkpoint_path`` so that a preempted Slurm job resumes where it stopped.
    """

    scale: str
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    run_dir: Path = field(default_factory=lambda: Path("."))
    data_root: Path | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    dry_run: bool = False
    show_progress: bool = False
    # Facts about the run itself (e.g. ``resumed_from_step``) that the runner stores in the
    # record's ``notes``; and the checkpoints whose training already finished in this run.
    notes: dict[str, Any] = field(default_factory=dict)
    finished_checkpoints: set[str] = field(default_factory=set)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU torch.Generator seeded from the run seed (``offset`` separates streams)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    def log(self, msg: str, *args: Any) -> None:
        text = msg % args if args else msg
        log.info(text)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "log.txt", "a") as fh:
            fh.write(text + "\n")

    def progress(self, it: Iterable[T], **kw: Any) -> Iterator[T]:
        """tqdm over ``it`` when progress is shown (CLI runs), a plain iterator otherwise."""
        if not self.show_progress:
            return iter(it)
        from tqdm.auto import tqdm

        return iter(tqdm(it, leave=False, **kw))


def for_tests(scale: str = "smoke", seed: int = 0, tmp: Path | None = None, **kw: Any) -> RunContext:
    """A RunContext for calling a reproduction's pieces directly in a test."""
    import tempfile

    run_dir = tmp or Path(tempfile.mkdtemp(prefix="suite-run-"))
    return RunContext(scale=scale, seed=seed, run_dir=run_dir, **kw)
