"""A sweep's trial as a training config file, for ``hpsearch train --config``."""

from __future__ import annotations

from pathlib import Path

import yaml

from hpsearch.scripts.reports.retrain import RetrainOptions, resolve_run
from hpsearch.search_spaces.errors import replaced


def export_config(exp_dir: Path, rank: int | None = None, trial_id: str | None = None) -> str:
    """The YAML of the trial at ``rank`` (default: the best) or ``trial_id``, with
    ``max_epochs`` set to the trial's best epoch, as ``hpsearch retrain`` trains it."""
    cfg, epochs, source = resolve_run(exp_dir, RetrainOptions(rank=rank, trial_id=trial_id))
    cfg = replaced(cfg, max_epochs=epochs)
    metric = source["sweep_metric"]
    header = (f"# {source['experiment']}: trial {source['trial_id']} (rank {source['rank']}, "
              f"{source['status']}), {metric} {source['sweep_value']:.4f} at epoch {epochs}\n"
              "# Train it with: hpsearch train --config THIS_FILE\n")
    return header + yaml.safe_dump(cfg.to_dict(), sort_keys=False)
