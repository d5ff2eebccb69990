"""Store cost per message, in one process: SQL statements and milliseconds.

Usage: python bench/store.py [--corpus DIR] [--count N] [--rounds R]

Accepts the first N messages of the corpus (default: the shared corpus at
/tmp/corpus-2400, ``../shared/bench/make_corpus.py --count 2400 --seed 11``) into a fresh
SQLite database, then processes them with one worker in this process (no pool, so
nothing else runs meanwhile) and prints, per message: the SQL statements the worker
sent, the milliseconds of its store step (lookups, conversation match, writes, outbox,
SLA clocks: one transaction per claimed batch) and of its analysis step. With
--rounds R it does that R times, each on a fresh database, and prints the medians
(these machines are noisy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def one_round(files: list[Path]) -> tuple[float, float, float]:
    """(statements, store ms, analyse ms) per message."""
    from sqlalchemy import event

    from mailtriage import worker as worker_module
    from mailtriage.app import App
    from mailtriage.config import load_settings
    from mailtriage.inbox import Incoming

    with tempfile.TemporaryDirectory(prefix="mt-store-") as tmp:
        work = Path(tmp)
        config = work / "bench.toml"
        config.write_text("[triage]\nocr = false\n[worker]\nprocesses = 1\n", encoding="utf-8")
        os.environ.update(
            MAILTRIAGE_STORAGE_DIR=str(work / "var"),
            MAILTRIAGE_DATABASE_URL="",
            MAILTRIAGE_CONFIG=str(config),
        )
        settings = load_settings(config)
        spent = {"store": 0.0, "analyse": 0.0}
        processor = worker_module.Processor
        store, analyse = processor._store, processor._analyse

        def timed_store(self: Any, group: Any) -> Any:
            start = time.perf_counter()
            try:
                return store(self, group)
            finally:
                spent["store"] += time.perf_counter() - start

        def timed_analyse(self: Any, item: Any, analyser: Any) -> Any:
            start = time.perf_counter()
            try:
                return analyse(self, item, analyser)
            finally:
                spent["analyse"] += time.perf_counter() - start

        with App.from_settings(settings) as app:
            app.prepare_database()
            for i in range(0, len(files), 50):
                app.inbox.accept_many([Incoming(f.read_bytes(), str(f)) for f in files[i : i + 50]])
            worker = app.worker()
            worker.processor.warm_up()
            statements = 0

            def count(*_args: Any) -> None:
                nonlocal statements
                statements += 1

            # the worker's own engine (on SQLite, processing commits are not synced)
            engine = worker.processor.factory.kw["bind"]
            event.listen(engine, "before_cursor_execute", count)
            processor._store, processor._analyse = timed_store, timed_analyse  # type: ignore[method-assign]
            try:
                done = 0
                while batch := worker.run_once(limit=50):
                    done += len(batch)
            finally:
                processor._store, processor._analyse = store, analyse  # type: ignore[method-assign]
                event.remove(engine, "before_cursor_execute", count)
        if done != len(files):
            sys.exit(f"processed {done} of {len(files)} messages")
        n = len(files)
        return statements / n, spent["store"] / n * 1000, spent["analyse"] / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/corpus-2400"))
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    files = sorted(args.corpus.glob("*.eml"))[: args.count]
    if not files:
        sys.exit(f"{args.corpus}: no .eml files (make_corpus.py --count 2400 --seed 11 --out DIR)")
    results = [one_round(files) for _ in range(args.rounds)]
    statements = statistics.median(r[0] for r in results)
    store = statistics.median(r[1] for r in results)
    analyse = statistics.median(r[2] for r in results)
    print(
        f"{len(files)} messages, median of {args.rounds} rounds: {statements:.1f} SQL statements "
        f"per message; store {store:.2f} ms/msg, analysis {analyse:.2f} ms/msg "
        f"(rounds: store {', '.join(f'{r[1]:.2f}' for r in results)})"
    )


if __name__ == "__main__":
    main()
