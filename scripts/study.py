"""An experiment's Optuna study: its journal file in the experiment folder, opened without Ray."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hpsearch.scripts.experiment_folder import ExperimentFolder


def open_journal(path: str) -> JournalStorage:
    """The study's storage: Optuna's journal file, a tenth of SQLite's cost per ask or tell
    in the driver, and no database start-up."""
    return JournalStorage(JournalFileBackend(path))


def load_study(exp_dir: Path) -> optuna.Study:
    """The sweep's study (its name is ``study_name`` in ``sweep.json``), live or finished."""
    from hpsearch.search_spaces.errors import ConfigError

    folder = ExperimentFolder(exp_dir)
    journal = folder.optuna_journal
    if not journal.is_file():
        raise ConfigError(f"{exp_dir}: no Optuna study ({journal.name}) in it")
    return optuna.load_study(study_name=folder.read_meta().study_name,
                             storage=open_journal(str(journal)))
