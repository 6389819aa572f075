"""An experiment's Optuna study: its journal file in the experiment folder, opened without Ray."""

from __future__ import annotations

from pathlib import Path

import optuna
from hpsearch.scripts.leaderboard import read_meta
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

OPTUNA_JOURNAL = "optuna.log"


def open_journal(path: str) -> JournalStorage:
    """The study's storage: Optuna's journal file, a tenth of SQLite's cost per ask or tell
    in the driver, and no database start-up."""
    return JournalStorage(JournalFileBackend(path))


def journal_path(exp_dir: Path) -> Path:
    return Path(exp_dir) / OPTUNA_JOURNAL


def load_study(exp_dir: Path) -> optuna.Study:
    """The sweep's study (its name is ``study_name`` in ``sweep.json``), live or finished."""
    from hpsearch.search_spaces.errors import ConfigError

    journal = journal_path(exp_dir)
    if not journal.is_file():
        raise ConfigError(f"{exp_dir}: no Optuna study ({OPTUNA_JOURNAL}) in it")
    return optuna.load_study(study_name=read_meta(exp_dir)["study_name"],
                             storage=open_journal(str(journal)))
