"""What each ``hpsearch`` command does, given its parsed arguments (:mod:`scripts.cli`
builds the parser and calls these). Heavy imports (torch, Ray) happen inside the commands so
``--help`` stays fast; bad input is a :class:`UserError`, shown as one line."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any


class UserError(Exception):
    """Bad input from the user: reported as one line, no traceback."""


def cmd_data_check(args: argparse.Namespace) -> int:
    from hpsearch.datamodules.check import check_all

    lines, failed = check_all(args.data_dir)
    for line in lines:
        print(line)
    return 1 if failed else 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from hpsearch.datamodules import DATASETS

    # Explicit only: training never downloads, so a missing dataset fails fast and offline runs
    # (and the tests) never touch the network.
    downloadable = [name for name, dataset in DATASETS.items() if dataset.download]
    if args.dataset != "all" and args.dataset not in downloadable:
        raise UserError(f"--dataset {args.dataset}: not a dataset hpsearch can download "
                        f"(choose from: {', '.join(downloadable)}, all)")
    for name in downloadable if args.dataset == "all" else [args.dataset]:
        folder, fetched = DATASETS[name].download(args.data_dir)
        print(f"{name}: {'downloaded into' if fetched else 'already in'} {folder}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from hpsearch.lightning_modules.presets import PRESETS
    from hpsearch.scripts.reports.format import render_table

    rows = [(name, p.dataset, f"{p.expected_params:,}", p.description)
            for name, p in PRESETS.items()]
    print(render_table(("preset", "dataset", "params", "what"), rows, right=(2,)))
    return 0


def _train_config(args: argparse.Namespace) -> Any:
    from hpsearch.search_spaces.errors import ConfigError
    from hpsearch.search_spaces.schema import load_yaml_mapping
    from hpsearch.search_spaces.train_config import (
        TrainConfig,
        preset_sections,
        train_config_from_sections,
    )

    if args.preset:
        from hpsearch.lightning_modules.presets import PRESETS

        if args.preset not in PRESETS:
            raise UserError(f"unknown preset '{args.preset}' (see `hpsearch presets`)")
        sections = preset_sections(args.preset)
        epochs, seed = PRESETS[args.preset].epochs, 0
    else:
        path = Path(args.config)
        raw = load_yaml_mapping(path, "config file")
        try:
            cfg = TrainConfig.from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        sections = cfg.to_dict()
        epochs, seed = cfg.max_epochs, cfg.seed
    if args.batch_size:
        sections["data"]["batch_size"] = args.batch_size
    return train_config_from_sections(
        sections,
        max_epochs=args.epochs or epochs,
        seed=seed if args.seed is None else args.seed,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from hpsearch.lightning_modules.summary import parameter_table
    from hpsearch.scripts.reports.format import format_metrics, format_parameter_table
    from hpsearch.scripts.train import train

    cfg = _train_config(args)
    result = train(
        cfg, data_dir=args.data_dir, accelerator=args.accelerator, progress_bar=True, run_test=True
    )
    print()
    print("Per-epoch:")
    for row in result.history:
        print("  " + format_metrics(row, keys=("epoch", "train_loss", "train_acc", "val_loss",
                                              "val_acc", "val_f1", "val_auc", "epoch_time_s")))
    print(f"Best val_acc {result.best_value:.4f} at epoch {result.best_epoch}; "
          f"training time {result.train_time_s:.1f} s")
    print("Test: " + format_metrics(result.test or {}))
    print()
    print(format_parameter_table(parameter_table(result.network)))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:

    from hpsearch.scripts.api import run
    from hpsearch.scripts.tune.options import SweepOptions, resume_command, sweep_flags
    from hpsearch.search_spaces.schema import load_yaml_mapping, parse_space

    raw = load_yaml_mapping(args.space)
    space = parse_space(raw, source=str(args.space))
    opts = SweepOptions(**{field.name: getattr(args, field.name) for _, field in sweep_flags()})
    outcome = run(space, raw, opts)
    print()
    if outcome.interrupted and not outcome.stopped_because:
        print(f"Interrupted after {outcome.wall_time_s:.1f} s. Resume with: "
              f"{resume_command(args.space, opts)}")
    best = outcome.best
    metric = space.objective.metric
    if best and isinstance(best.get(metric), (int, float)):
        print(f"Best trial {best['trial_id']} ({best['status']}): {metric} = {best[metric]:.4f} "
              f"at epoch {best['best_epoch']}")
    else:
        print(f"No trial has reported {metric} yet.")
    print(f"Sweep wall time {outcome.wall_time_s:.1f} s")
    print(f"Leaderboard: {outcome.leaderboard}")
    if best and not outcome.stopped_because:
        _say_next(outcome.exp_dir)
    if outcome.stopped_because:
        print(f"hpsearch: error: {outcome.stopped_because}: the sweep stopped with its state "
              f"saved; free some space, then resume with: {resume_command(args.space, opts)}",
              file=sys.stderr)
        return 1
    return 130 if outcome.interrupted else 0


def _say_next(exp_dir: Path) -> None:
    """The commands a user runs after a sweep, on this sweep's folder."""
    import shlex

    try:
        shown = exp_dir.relative_to(Path.cwd())
    except ValueError:
        shown = exp_dir
    folder = shlex.quote(str(shown))
    commands = {f"hpsearch {c} {folder}": what for c, what in (
        ("leaderboard", "the top trials"),
        ("report", "search.md: history, importances, early-stopping rungs"),
        ("retrain", "re-train the best trial and test it, with a report"))}
    width = max(map(len, commands))
    print("Next:")
    for command, what in commands.items():
        print(f"  {command:<{width}}  # {what}")


def cmd_status(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from hpsearch.scripts.reports.status import folder_state, folder_status

    exp_dir = Path(args.experiment)
    if not exp_dir.is_dir():
        raise UserError(f"{exp_dir}: no such results folder")
    if not args.watch:
        Console().print(folder_status(exp_dir))
        return 0
    from rich.live import Live

    with Live(folder_status(exp_dir), refresh_per_second=1) as live:
        while folder_state(exp_dir)[1] is not None:
            time.sleep(args.every)
            live.update(folder_status(exp_dir))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from hpsearch.scripts.experiment_folder import ExperimentFolder
    from hpsearch.scripts.leaderboard import summary_columns

    exp_dir = Path(args.experiment)
    if not exp_dir.is_dir():
        raise UserError(f"{exp_dir}: no such results folder")
    if args.rebuild:
        from hpsearch.scripts.tune.callback import rebuild_leaderboard  # imports Ray

        print(f"Rebuilt {rebuild_leaderboard(exp_dir)}")
    folder = ExperimentFolder(exp_dir)
    frame = folder.read_leaderboard()
    meta = folder.read_meta()
    cols = summary_columns(frame, meta)
    _print_table(f"{meta.experiment}: top {min(args.top, len(frame))} of {len(frame)}",
                 frame.head(args.top), cols)
    if len(meta.objectives) > 1 and "pareto_rank" in frame.columns:
        front = frame[frame["pareto_rank"] == 0]
        names = " vs ".join(f"{o.metric} ({o.mode})" for o in meta.objectives)
        _print_table(f"Pareto front: {len(front)} trial(s), {names}", front, cols)
        if folder.pareto_plot.is_file():
            print(f"Plot: {folder.pareto_plot}")
    return 0


def _print_table(title: str, frame: Any, cols: list[str]) -> None:
    from hpsearch.scripts.reports.format import render_table, short_headers

    headers = short_headers(cols)
    rows = [[None if _missing(row[c]) else row[c] for c in cols] for _, row in frame.iterrows()]
    print(render_table(headers, rows, title=title, width=shutil.get_terminal_size().columns))


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, (list, tuple)) and bool(pd.isna(value)))


def cmd_retrain(args: argparse.Namespace) -> int:
    import json

    from hpsearch.scripts.reports.retrain import RetrainOptions, retrain
    from hpsearch.scripts.reports.retrain_report import format_test_results

    out = retrain(
        Path(args.experiment),
        RetrainOptions(
            rank=args.rank, trial_id=args.trial, config=args.config, epochs=args.epochs,
            seed=args.seed, accelerator=args.accelerator, train_on=args.train_on,
            data_dir=args.data_dir, seeds=args.seeds,
        ),
    )
    print()
    print(format_test_results(json.loads((out.parent / "metrics.json").read_text())))
    print(f"Report: {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hpsearch.scripts.reports.export import export_config

    exp_dir = Path(args.experiment)
    if not exp_dir.is_dir():
        raise UserError(f"{exp_dir}: no such results folder")
    sys.stdout.write(export_config(exp_dir, rank=args.rank, trial_id=args.trial))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hpsearch.scripts.reports.search_report import write_search_report

    exp_dir = Path(args.experiment)
    if not exp_dir.is_dir():
        raise UserError(f"{exp_dir}: no such results folder")
    print(f"Report: {write_search_report(exp_dir)}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError("hpsearch dashboard needs optuna-dashboard: pip install -e "
                        "'.[dashboard]'") from None
    from hpsearch.scripts.experiment_folder import ExperimentFolder
    from hpsearch.scripts.study import load_study, open_journal

    exp_dir = Path(args.experiment)
    study = load_study(exp_dir)  # a folder without a study is one line, before serving
    print(f"Serving study {study.study_name} of {exp_dir} at http://{args.host}:{args.port}/ "
          "(Ctrl-C stops it)", flush=True)
    journal = ExperimentFolder(exp_dir).optuna_journal
    optuna_dashboard.run_server(open_journal(str(journal)), host=args.host,
                                port=args.port)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from hpsearch.scripts.reports.compare import compare

    table = compare(Path(args.results_dir))
    print(table)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from hpsearch.scripts.bench.run import run_bench

    # The quick run (CI's) must not overwrite the full figures the README quotes, nor a run
    # of some parts the figures of all.
    parts = "".join(f"-{p}" for p in args.only or ())
    out = args.out or f"results/bench{parts}{'' if args.full else '-quick'}.csv"
    space = Path(args.search_space) if args.search_space else None
    if space is not None and not space.is_file():
        raise UserError(f"--search-space {space}: search-space file not found")
    run_bench(quick=not args.full, out=Path(out), data_dir=args.data_dir, parts=args.only,
              search_space=space)
    return 0
