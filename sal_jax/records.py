"""The records of a ladder run: a level's finished training (`LevelRun`) and a level's training in progress
(`Progress`). Each owns its JSON form (`record` / `from_record`): what a checkpoint stores beside the arrays,
and what results.json reports; nothing else reads or writes those fields by name."""
from __future__ import annotations

import dataclasses
from typing import Any

from sal_jax.levels import Variables


@dataclasses.dataclass
class LevelRun:
    """One level trained once (one round of SAL, or a baseline): its result and per-epoch history."""

    name: str
    level: int                      # 1-based, 1 = top
    round: int                      # 1-based
    variables: Variables            # the trained level (no projections)
    history: list[dict[str, float]]  # one row per epoch: train terms, test metrics, cumulative train time
    train_time: float               # seconds of training: setup and training calls (compilation, evaluation,
                                    # checkpoints and logging excluded)
    steps: int
    compiles: dict[str, int]        # compilations of the train and eval steps (1 each when all is well)
    compile_time: float = 0.0       # seconds compiling them (absent from records written before it was kept)
    diverged: bool = False          # its last epoch's training CE is worse than twice uniform guessing's
    # Members only (sal_jax.member_loop): where the member's training went non-finite, one line; "" if not.
    # (A lone training that goes non-finite raises TrainingDiverged instead.) A stacked run of members holds
    # a list per member here and in steps and diverged, and its history rows a list per metric.
    failure: str = ""
    # FLOPs (XLA's count, sal_jax.compute_budget; None in records written before they were counted): one
    # train step's, and the whole training's (steps x step + the teacher cache's pass; an earlier part's
    # included, as in train_time). Members: every member's (a member that failed stopped earlier).
    step_flops: int | None = None
    flops: int | None = None
    # The compute-matched baseline only: the FLOPs it was given (SAL's) and the step count they buy.
    flop_budget: int | None = None
    step_budget: int | None = None

    def record(self) -> dict[str, Any]:
        """Everything but the variables, as JSON: what a checkpoint stores of a finished phase, and what
        results.json reports of it."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "variables"}
        if not record["failure"]:  # only a member that failed has one: other records keep their fields
            del record["failure"]
        for name in ("flop_budget", "step_budget"):  # only a compute-matched baseline has them
            if record[name] is None:
                del record[name]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], variables: Variables) -> "LevelRun":
        return cls(**record, variables=variables)

    @property
    def final_test_accuracy(self) -> float:
        return self.history[-1]["test_accuracy"]  # the last epoch is always evaluated

    @property
    def best_test_accuracy(self) -> float:
        return max(row["test_accuracy"] for row in self.history if "test_accuracy" in row)


@dataclasses.dataclass
class Progress:
    """Where a level's training stands: everything besides the train state needed to resume exactly."""

    epoch: int = 0                      # epochs completed
    step_in_epoch: int = 0              # steps done in the current epoch
    train_time: float = 0.0             # seconds of training so far
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    sums: dict[str, Any] | None = None  # the current epoch's metric sums so far (on device)
    monitor: dict[str, Any] | None = None  # what a family's epoch hook keeps between epochs (JSON; sal_jax.hooks)
    failures: dict[str, str] = dataclasses.field(default_factory=dict)  # members that went non-finite: {index: line}

    def record(self) -> dict[str, Any]:
        """The JSON part (the sums are arrays, saved apart; `has_sums` says whether there are any)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "sums"}
        return {**fields, "has_sums": self.sums is not None}

    @classmethod
    def from_record(cls, record: dict[str, Any], sums: Any = None) -> "Progress":
        return cls(**{k: v for k, v in record.items() if k != "has_sums"}, sums=sums)
