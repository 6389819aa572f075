"""The sweep's record (``sweep.json``): what ran, how, and how long, as one frozen model.

Written when a sweep starts and after each of its runs (see
:class:`hpsearch.scripts.experiment_folder.ExperimentFolder`), read by the reports, the
status table and ``--resume``. A change is a new record (:meth:`SweepMeta.started`,
:meth:`SweepMeta.after_run`, ``model_copy(update=...)``); the file keeps its keys, the
fields below, in this order.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hpsearch.search_spaces.schema import Objective


class SweepMeta(BaseModel):
    """One sweep's record. The fields an old or hand-made record may lack have defaults; the
    ones every reader needs (its name, objective, epochs and trials) do not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment: str
    space_file: str = ""
    space: dict[str, Any] = Field(default_factory=dict)  # the space file's mapping, as read
    # The command-line options that replaced the file's values (SweepOptions field -> value).
    overrides: dict[str, Any] = Field(default_factory=dict)
    objective: Objective  # the first objective, logged every epoch
    objectives: tuple[Objective, ...] = ()  # all of them; read as (objective,) when absent
    sampler: dict[str, Any] = Field(default_factory=dict)
    scheduler: dict[str, Any] = Field(default_factory=dict)
    max_epochs: int
    num_samples: int
    params: tuple[str, ...] = ()  # the searched config paths, the leaderboard's columns
    dataset: str | None = None
    family: str | None = None
    seed: int | None = None
    code_version: str = ""
    study_name: str = ""  # the Optuna study's, in the folder's journal
    storage: str | None = None  # --storage: where Ray keeps the experiment, if not here
    wall_time_s: float = 0.0  # over every run of the sweep
    run_started_at: float | None = None  # the latest run's start (time.time())
    compute: dict[str, float] | None = None  # see scripts.compute.sweep_compute
    # --warm-start: the folder, its study, the trials carried over and their start points.
    warm_start: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _objectives_default_to_the_objective(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("objectives") and "objective" in data:
            return {**data, "objectives": [data["objective"]]}
        return data

    def started(self, at: float) -> SweepMeta:
        """The record of a run starting at ``at`` (``time.time()``)."""
        return self.model_copy(update={"run_started_at": at})

    def after_run(self, elapsed_s: float, compute: dict[str, float]) -> SweepMeta:
        """The record after one more run of ``elapsed_s`` seconds; ``compute``: the sweep's
        compute with that run's added."""
        return self.model_copy(update={"wall_time_s": self.wall_time_s + elapsed_s,
                                       "compute": compute})

    def to_json(self) -> dict[str, Any]:
        """The record as ``sweep.json`` holds it (without ``warm_start`` when there was none,
        so that the records of earlier sweeps are written back as they were)."""
        return self.model_dump(mode="json", exclude={"warm_start"} if self.warm_start is None
                               else None)
