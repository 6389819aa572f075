"""A library's multi-fidelity search, measured as is: SMAC 2's ``MultiFidelityFacade`` (a
random forest proposing configs, Hyperband deciding their budgets, in the manner of BOHB),
asked and told in one process, two trials at a time in threads, over the same space,
training path (``train()``) and budget of training epochs as ``hpsearch sweep``. Each SMAC
trial trains its config from scratch for its budget of epochs; the space's start points are
SMAC's additional initial configs. ``hpsearch bench --only search`` runs it as a command:

    python -m hpsearch.scripts.bench.smac_mf SPACE.yaml --seed 0 --events events.jsonl
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ConfigSpace import (
    AndConjunction,
    Categorical,
    Configuration,
    ConfigurationSpace,
    EqualsCondition,
    Float,
    GreaterThanCondition,
    InCondition,
    Integer,
)

from hpsearch.scripts.bench.plain_optuna import EpochLog, EpochSpender, baseline_parser
from hpsearch.scripts.train import EpochHistory, train
from hpsearch.search_spaces.distributions import ListDist
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.rungs import expected_trials
from hpsearch.search_spaces.schema import SearchSpace, load_space
from hpsearch.search_spaces.trials import flat_point, sampled_params, trial_config


def _hyperparameter(name: str, dist: Any) -> Any:
    if dist.type == "int":
        return Integer(name, (dist.low, dist.high), log=dist.log)
    if dist.type == "float":
        return Float(name, (dist.low, dist.high), log=dist.log)
    return Categorical(name, list(dist.values))


def config_space(space: SearchSpace, seed: int) -> ConfigurationSpace:
    """The space in ConfigSpace's terms, with Optuna's flat names: a list's length and its
    elements (element ``i`` active when the length exceeds ``i``), ``when`` as conditions."""
    cs = ConfigurationSpace(seed=seed)
    for param in space.search:
        if isinstance(param.dist, ListDist):
            length = _hyperparameter(f"{param.path}.length", param.dist.length)
            elements = [_hyperparameter(f"{param.path}.{i}", param.dist.each)
                        for i in range(param.dist.length.high)]
            cs.add([length, *elements])
            cs.add([GreaterThanCondition(e, length, i) for i, e in enumerate(elements)
                    if i >= param.dist.length.low])
            owned = [length, *elements]
        else:
            owned = [_hyperparameter(param.path, param.dist)]
            cs.add(owned)
        for hp in owned:
            conditions = [InCondition(hp, cs[parent], list(values)) if len(values) > 1
                          else EqualsCondition(hp, cs[parent], values[0])
                          for parent, values in param.when]
            if len(conditions) > 1:
                cs.add(AndConjunction(*conditions))
            elif conditions:
                cs.add(conditions[0])
    return cs


def start_configs(space: SearchSpace, cs: ConfigurationSpace) -> list[Configuration]:
    return [Configuration(cs, values=flat_point(space, point)) for point in space.start_points]


def run(space: SearchSpace, seed: int, events: Path, data_dir: str | None,
        jobs: int = 2) -> int:
    """Ask SMAC for trials until the epoch budget is spent; returns the trials run."""
    from smac import MultiFidelityFacade, Scenario
    from smac.runhistory.dataclasses import TrialValue

    budget = space.budget
    if budget.total_epochs is None:
        raise ConfigError(f"{space.source}: budget.total_epochs: needed for a SMAC run")
    torch.set_num_threads(1)  # one core per trial, as a 1-CPU Ray trial
    cs = config_space(space, seed)
    sign = -1.0 if space.objective.mode == "max" else 1.0  # SMAC minimizes a cost
    with tempfile.TemporaryDirectory(prefix="hpsearch-smac-") as tmp:
        scenario = Scenario(cs, deterministic=True, n_trials=expected_trials(space) * 4,
                            min_budget=budget.grace_period, max_budget=budget.max_epochs,
                            seed=seed, output_directory=Path(tmp))
        smac = MultiFidelityFacade(
            scenario, target_function=lambda config, seed, budget: 0.0,  # asked and told
            intensifier=MultiFidelityFacade.get_intensifier(scenario,
                                                            eta=budget.reduction_factor),
            initial_design=MultiFidelityFacade.get_initial_design(
                scenario, additional_configs=start_configs(space, cs)),
            overwrite=True, logging_level=40)
        log, lock, trials = EpochLog(events, budget.total_epochs), threading.Lock(), [0]
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                search()
            except BaseException as exc:  # re-raised in the main thread: the command fails
                errors.append(exc)

        def search() -> None:
            while True:
                with lock:
                    if log.epochs >= budget.total_epochs:
                        return
                    info, number = smac.ask(), trials[0]
                    trials[0] += 1
                epochs = max(1, round(info.budget or budget.max_epochs))
                short = dataclasses.replace(space, budget=budget.model_copy(
                    update={"max_epochs": epochs}))
                # ConfigSpace hands numpy scalars; the typed config takes plain Python ones.
                drawn = {k: getattr(v, "item", lambda v=v: v)() for k, v in info.config.items()}
                cfg = trial_config(short, sampled_params(space, drawn))
                result = train(cfg, data_dir=data_dir, callbacks=[EpochSpender(number, log)],
                               accelerator="cpu",
                               history=EpochHistory(space.objective.metric,
                                                    space.objective.mode))
                with lock:
                    smac.tell(info, TrialValue(cost=sign * result.best_value))

        threads = [threading.Thread(target=worker) for _ in range(jobs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return trials[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = baseline_parser(__spec__.name if __spec__ else __name__,
                           __doc__.splitlines()[0], "SMAC").parse_args(argv)
    trials = run(load_space(args.space), args.seed, Path(args.events), args.data_dir,
                 args.jobs)
    print(f"{trials} trials")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
