"""The ``hpsearch`` command line.

Every command turns bad input into one ``hpsearch: error: ...`` line and exit status 2;
heavy imports (torch, Ray) happen inside the commands so ``--help`` stays fast. This module
builds the parser and runs the command; the commands themselves are in
:mod:`scripts.cli_commands`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hpsearch.scripts.cli_commands import (
    UserError,
    cmd_bench,
    cmd_compare,
    cmd_dashboard,
    cmd_data_check,
    cmd_data_download,
    cmd_export,
    cmd_leaderboard,
    cmd_presets,
    cmd_report,
    cmd_retrain,
    cmd_status,
    cmd_sweep,
    cmd_train,
)

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _user_errors() -> tuple[type[BaseException], ...]:
    from hpsearch.datamodules.errors import DataError
    from hpsearch.scripts.train import MetricNotLoggedError
    from hpsearch.scripts.versions import VersionMismatch
    from hpsearch.search_spaces.errors import ConfigError

    return (UserError, ConfigError, DataError, MetricNotLoggedError, FileNotFoundError,
            VersionMismatch)


def _positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _duration(text: str) -> float:
    from hpsearch.scripts.tune.options import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _existing_dir(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such directory")
    return text


_FLAG_TYPES: dict[str, dict[str, Any]] = {
    "positive_int": {"type": _positive_int},
    "positive_float": {"type": _positive_float},
    "int": {"type": int},
    "non_negative_int": {"type": _non_negative_int},
    "path": {"type": Path},
    "existing_dir": {"type": _existing_dir},
    "duration": {"type": _duration},
    "flag": {"action": "store_true"},
    "on_off": {"action": argparse.BooleanOptionalAction},
}


def _add_sweep_flags(p: argparse.ArgumentParser) -> None:
    """One flag per field of :class:`~scripts.tune.options.SweepOptions`, its one definition."""
    from hpsearch.scripts.tune.options import sweep_flags

    for flag, field in sweep_flags():
        kind = _FLAG_TYPES.get(field.metadata["cli"].get("type", ""), {})
        p.add_argument(flag, dest=field.name, default=field.default, help=field.metadata["help"],
                       **kind)


def _add_accelerator(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"],
                   help="where to train (default: auto, a GPU if one is visible)")


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=_existing_dir, default=None,
        help="folder holding the datasets (default: $HPSEARCH_DATA_DIR, else ./data)",
    )

DESCRIPTION = ("Hyperparameter search for image classifiers: Ray Tune runs the trials, "
               "Optuna picks them, Lightning trains them.")
EPILOG = """typical commands:
  hpsearch sweep search_spaces/mnist_cnn.yaml     run a sweep (results/mnist_cnn)
  hpsearch leaderboard results/mnist_cnn          its top trials
  hpsearch retrain results/mnist_cnn --seeds 5    re-train the best, test with error bars
  hpsearch export results/mnist_cnn > best.yaml   the best trial as a config file"""


class _VersionAction(argparse.Action):
    """``--version``: the git lookup runs only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        from importlib.metadata import version

        from hpsearch.scripts.provenance import code_version

        print(f"hpsearch {version('hpsearch')} (code {code_version()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hpsearch", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction,
                        help="print hpsearch's version and the code's git commit, and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    check = data_sub.add_parser("check", help="load every dataset and print split sizes")
    _add_data_dir(check)
    check.set_defaults(func=cmd_data_check)
    dl = data_sub.add_parser("download", help="download MNIST / Fashion-MNIST (needs internet)")
    dl.add_argument("--dataset", default="all",
                    help="which to download: a dataset with a download (mnist, fashion_mnist) "
                    "or all (default)")
    dl.add_argument("--data-dir", default=None,
                    help="where to put them (default: $HPSEARCH_DATA_DIR, else ./data)")
    dl.set_defaults(func=cmd_data_download)

    sub.add_parser("presets", help="list the lab's models as presets").set_defaults(
        func=cmd_presets
    )

    tr = sub.add_parser("train", help="train one config locally and print its metrics")
    src = tr.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help="a preset name (see `hpsearch presets`)")
    src.add_argument("--config", help="a YAML file with data/model/optimizer/max_epochs/seed")
    tr.add_argument("--epochs", type=_positive_int,
                    help="epochs to train (default: the preset's or the config's max_epochs)")
    tr.add_argument("--batch-size", type=_positive_int,
                    help="mini-batch size (default: the preset's or the config's)")
    tr.add_argument("--seed", type=int, help="random seed (default: the config's seed)")
    _add_accelerator(tr)
    _add_data_dir(tr)
    tr.set_defaults(func=cmd_train)

    sw = sub.add_parser("sweep", help="run a Ray Tune + Optuna sweep from a search-space file")
    sw.add_argument("space", help="search-space YAML file (see search_spaces/)")
    _add_sweep_flags(sw)
    sw.set_defaults(func=cmd_sweep)

    st = sub.add_parser("status", help="the live table of a sweep, also one running in "
                        "another shell or on a cluster head, from the files it writes")
    st.add_argument("experiment", help="results/<experiment>")
    st.add_argument("--watch", action="store_true",
                    help="refresh in place until the sweep ends (default: print once)")
    st.add_argument("--every", type=_positive_float, default=2.0,
                    help="seconds between refreshes with --watch (default: 2)")
    st.set_defaults(func=cmd_status)

    lb = sub.add_parser("leaderboard", help="print the top trials of an experiment")
    lb.add_argument("experiment", help="results/<experiment>")
    lb.add_argument("--top", type=_positive_int, default=10,
                    help="how many trials to show (default: 10)")
    lb.add_argument("--rebuild", action="store_true",
                    help="rebuild leaderboard.csv from the Ray experiment folder first")
    lb.set_defaults(func=cmd_leaderboard)

    rt = sub.add_parser("retrain", help="re-train a sweep's best trial with a full report")
    rt.add_argument("experiment", help="results/<experiment>")
    pick = rt.add_mutually_exclusive_group()
    pick.add_argument("--rank", type=_positive_int, default=None,
                      help="re-train the trial at this leaderboard rank (default: 1, the "
                      "best)")
    pick.add_argument("--trial", help="trial id from the leaderboard (default: --rank 1)")
    pick.add_argument("--config", help="a YAML training config instead of a trial (as "
                      "`hpsearch export` writes; default: --rank 1)")
    rt.add_argument("--epochs", type=_positive_int,
                    help="epochs to train (default: the trial's best epoch, or the config's "
                    "max_epochs)")
    rt.add_argument("--seed", type=int,
                    help="random seed (default: the trial's or the config's own seed)")
    rt.add_argument("--seeds", type=_positive_int, default=1, metavar="K",
                    help="re-train K times with seeds S, S+1, ..., S+K-1 (S: --seed or the "
                    "trial's seed) and report the test metrics' mean, std and 95%% interval; "
                    "the model, plots and per-class figures are seed S's (default 1)")
    _add_accelerator(rt)
    rt.add_argument("--train-on", default="train", choices=["train", "train+val"],
                    help="train+val also fits the validation split, so the validation "
                    "figures are no longer held out (default: train)")
    _add_data_dir(rt)
    rt.set_defaults(func=cmd_retrain)

    ex = sub.add_parser("export", help="print a trial's training config as YAML, for "
                        "`hpsearch train --config`")
    ex.add_argument("experiment", help="results/<experiment>")
    which = ex.add_mutually_exclusive_group()
    which.add_argument("--rank", type=_positive_int, default=None,
                       help="the trial at this leaderboard rank (default: 1, the best)")
    which.add_argument("--trial", help="trial id from the leaderboard (default: --rank 1)")
    ex.set_defaults(func=cmd_export)

    rp = sub.add_parser("report", help="draw the search (history, parallel coordinates, "
                        "importances, rungs) into results/<experiment>/search.md")
    rp.add_argument("experiment", help="results/<experiment>")
    rp.set_defaults(func=cmd_report)

    db = sub.add_parser("dashboard", help="serve an experiment's Optuna study in "
                        "optuna-dashboard (live or finished; needs the dashboard extra)")
    db.add_argument("experiment", help="results/<experiment>")
    db.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default: 127.0.0.1, this machine only)")
    db.add_argument("--port", type=_positive_int, default=8080,
                    help="port to listen on (default: 8080)")
    db.set_defaults(func=cmd_dashboard)

    cp = sub.add_parser("compare", help="one comparison table of every experiment")
    cp.add_argument("results_dir", nargs="?", default="results",
                    help="the folder of experiment folders (default: results)")
    cp.set_defaults(func=cmd_compare)

    bn = sub.add_parser("bench", help="benchmark training speed, sweep efficiency and HOG")
    mode = bn.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a run of seconds (the default)")
    mode.add_argument("--full", action="store_true", help="the figures the README quotes")
    bn.add_argument("--only", nargs="*", choices=["train", "sweep", "hog", "gpu", "search"],
                    help="the parts to run (default: all): training speed, sweep efficiency, "
                    "HOG extraction, GPU paths, search efficiency against random search and "
                    "plain Optuna")
    bn.add_argument("--search-space", help="the one space the search part searches "
                    "(default: bench_hog_mlp.yaml for --quick; for --full, bench_hog_mlp, "
                    "bench_mnist_mlp and the held-out bench_fashion_mlp in search_spaces/)")
    bn.add_argument("--out", help="CSV to write (default: results/bench[-PARTS].csv for "
                    "--full, results/bench[-PARTS]-quick.csv otherwise)")
    _add_data_dir(bn)
    bn.set_defaults(func=cmd_bench)
    return parser


def _one_line(exc: BaseException, with_type: bool = True) -> str:
    text = str(exc).strip()
    lines = text.splitlines()
    first = lines[0] if lines else ""
    if first.startswith("Traceback"):  # a remote error's text: its last line says what
        first = next((ln.strip() for ln in reversed(lines) if ln.strip()), first)
    if with_type or not first:
        return f"{type(exc).__name__}: {first}".rstrip(": ")
    return first


def _is_user_error(exc: BaseException) -> bool:
    try:
        return isinstance(exc, _user_errors())
    except Exception:
        # hpsearch's own packages fail to import: a dataset or family registered twice (its
        # message names both modules), which the user of that code can fix.
        return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("hpsearch: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if _is_user_error(exc):
            print(f"hpsearch: error: {_one_line(exc, with_type=False)}", file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get("HPSEARCH_DEBUG"):  # a bug or an environment failure
            raise
        print(f"hpsearch: error: {_one_line(exc)} (set HPSEARCH_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
