"""`mailtriage import` and `mailtriage run`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mailtriage.cli.common import Subparsers, open_app, print_json
from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console


def add_intake_commands(sub: Subparsers) -> None:
    p = sub.add_parser("import", help="import .eml files, directories, mbox files, Maildirs")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("run", help="run the service (worker) until SIGTERM/SIGINT")
    p.set_defaults(func=cmd_run)


def cmd_import(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.intake.files import may_hold_many
    from mailtriage.runners import pool

    if pool.pool_processes(settings.worker.processes) > 1 and may_hold_many(
        args.paths, pool.POOL_THRESHOLD
    ):
        # Many messages: the parser pool will be wanted. Its fork server imports the
        # pipeline on the other core while this process imports the rest.
        pool.start_fork_server()
    from mailtriage.backfill import import_paths

    with open_app(settings) as app:
        if not args.json and out.is_terminal:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
            )

            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=Console(stderr=True),
            ) as progress:
                read = progress.add_task("read", total=None)
                done = progress.add_task("processed", total=None)

                def on_read(n: int) -> None:
                    progress.advance(read, n)
                    progress.update(done, total=progress.tasks[read].completed)

                report = import_paths(
                    app,
                    args.paths,
                    on_read=on_read,
                    on_processed=lambda n: progress.advance(done, n),
                )
        else:
            report = import_paths(app, args.paths)
    count_imported(report.read)
    if args.json:
        print_json(report.to_dict())
    else:
        out.print(" ".join(f"{k}={v}" for k, v in report.to_dict().items()))
    return 0


def count_imported(read: int) -> None:
    """With ``$PROMETHEUS_MULTIPROC_DIR`` shared with a running daemon, the messages
    read here show up in its /metrics (source "file"); without it nobody would see them."""
    from mailtriage.ops import multiproc

    shared = os.environ.get(multiproc.ENV)
    if read and shared and os.path.isdir(shared):
        from mailtriage.ops import metrics

        metrics.RECEIVED.labels(source="file").inc(read)


def cmd_run(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.ops import multiproc

    multiproc.prepare()  # before anything imports prometheus-client (ops/multiproc.py)
    from mailtriage.service import run_service

    return run_service(settings)
