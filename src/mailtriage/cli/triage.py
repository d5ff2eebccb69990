"""Triage commands: `classify`, `eval`, `train`, `tickets set`, `tickets reclassify`.

Each loads the rules and the model once (the runner's job) and hands them to the pure
classifier.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailtriage.cli.common import Subparsers, UserError, open_app, print_json
from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from mailtriage.app import App
    from mailtriage.pipeline.classify import Rules

# The labelled development set, when `train` runs in a source checkout.
DEFAULT_DEV_DIR = Path("tests") / "labeled" / "dev"
RECLASSIFY_BATCH = 200


def add_ticket_triage_commands(tickets: Subparsers) -> None:
    """Add `tickets set` and `tickets reclassify` to the ``tickets`` subparsers."""
    p = tickets.add_parser(
        "set", help="correct a ticket's labels (stored as an event; trains the model)"
    )
    p.add_argument("number", help="DM-000123 or 123")
    p.add_argument("--level", help="L1, L2 or L3")
    p.add_argument("--category", help="a category of the rules (see the error for the list)")
    p.add_argument("--priority", help="low, normal, high or urgent")
    p.add_argument("--language", help="de, en or other")
    p.add_argument("--by", metavar="AGENT", help="who corrects (default: $USER, else 'cli')")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tickets_set)

    p = tickets.add_parser(
        "reclassify", help="classify tickets again with the current rules (and model)"
    )
    p.add_argument("number", nargs="?", help="DM-000123 or 123")
    p.add_argument("--all", action="store_true", help="every ticket")
    p.add_argument(
        "--force", action="store_true", help="also tickets whose labels an agent corrected"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per ticket per line")
    p.set_defaults(func=cmd_tickets_reclassify)


def add_train_command(sub: Subparsers) -> None:
    p = sub.add_parser(
        "train", help="train the category model from corrections and the labelled dev set"
    )
    p.add_argument(
        "--dev",
        type=Path,
        metavar="DIR",
        help=f"labelled *.eml + labels.jsonl (default: {DEFAULT_DEV_DIR} if it exists)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train)


def add_classify_commands(sub: Subparsers) -> None:
    """Add `classify` and `eval` (no database needed)."""
    p = sub.add_parser("classify", help="classify .eml files (no database needed)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help=".eml files or directories")
    p.add_argument("--json", action="store_true", help="one JSON object per file per line")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("eval", help="score the classifier on labelled directories")
    p.add_argument(
        "directories", nargs="*", type=Path, metavar="DIR", help="*.eml files and labels.jsonl"
    )
    p.add_argument(
        "--corrections",
        action="store_true",
        help="also score the agents' corrected tickets (needs the database): what the "
        "corrections-trained model now gets right",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)


# -- helpers --------------------------------------------------------------------------


@contextmanager
def _app(settings: Settings) -> Iterator[App]:
    with open_app(settings) as app:
        yield app


def _rules(settings: Settings) -> Rules:
    from mailtriage.runners.analysis import configured_rules

    return configured_rules(settings)


def _default_actor() -> str:
    return os.environ.get("USER") or "cli"


def _labels(labels: dict[str, str | None]) -> str:
    return " ".join(str(labels[k] or "-") for k in ("level", "category", "priority", "language"))


def _changes(before: dict[str, str | None], after: dict[str, str | None]) -> str:
    return ", ".join(
        f"{k} {before[k] or '-'} -> {after[k] or '-'}" for k in before if before[k] != after[k]
    )


# -- tickets set ----------------------------------------------------------------------


def cmd_tickets_set(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.sla.settings import rules_from_settings
    from mailtriage.store.queries import parse_ticket_number, ticket_reference
    from mailtriage.store.sla_store import refresh_sla
    from mailtriage.triage.corrections import InvalidLabel, correct_ticket, validate_labels

    values = {
        "level": args.level,
        "category": args.category,
        "priority": args.priority,
        "language": args.language,
    }
    try:
        labels = validate_labels(values, _rules(settings))
    except InvalidLabel as exc:
        raise UserError(str(exc)) from None
    if not labels:
        raise UserError("nothing to set: give --level, --category, --priority or --language")
    ticket_id = parse_ticket_number(args.number)
    by = args.by or _default_actor()
    prefix = settings.mail.ticket_prefix
    with _app(settings) as app, app.factory() as session, session.begin():
        correction = correct_ticket(session, ticket_id, labels, by, prefix)
        # the level and priority decide the SLA clocks (an agent's level is never
        # overridden by the escalation rule)
        refresh_sla(session, ticket_id, rules_from_settings(settings.sla))
    number = ticket_reference(prefix, ticket_id)
    if args.json:
        print_json({"number": number} | correction.to_dict())
    elif correction.changed:
        out.print(
            f"{number} corrected by {by}: {_changes(correction.before, correction.after)}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    else:
        out.print(
            f"{number} confirmed by {by}: {_labels(correction.after)} (nothing changed)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    return 0


# -- tickets reclassify ---------------------------------------------------------------


def cmd_tickets_reclassify(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.sla.settings import rules_from_settings
    from mailtriage.store.queries import parse_ticket_number, ticket_reference
    from mailtriage.store.sla_store import refresh_sla
    from mailtriage.triage.corrections import (
        Reclassified,
        all_ticket_ids,
        reclassify_ticket,
        reclassify_tickets,
    )
    from mailtriage.triage.model import configured_model

    if bool(args.number) == bool(args.all):
        raise UserError("give a ticket NUMBER or --all")
    rules, model = _rules(settings), configured_model(settings)
    sla_rules = rules_from_settings(settings.sla)
    prefix = settings.mail.ticket_prefix
    actor = _default_actor()
    counts = {"reclassified": 0, "unchanged": 0, "skipped": 0}

    def report(result: Reclassified) -> None:
        counts[result.outcome] += 1
        number = ticket_reference(prefix, result.ticket_id)
        if args.json:
            print_json({"number": number} | result.to_dict())
            return
        if result.outcome == "reclassified":
            line = f"{number} reclassified: {_changes(result.before, result.after)}"
        elif result.outcome == "skipped":
            line = f"{number} skipped: {result.note}"
        elif args.all:
            return  # --all: only what changed or was skipped
        else:
            line = f"{number} unchanged: {_labels(result.after)}"
        out.print(line, highlight=False, markup=False, soft_wrap=True)

    with _app(settings) as app:
        if not args.all:
            ticket_id = parse_ticket_number(args.number)
            with app.factory() as session, session.begin():
                result = reclassify_ticket(
                    session, ticket_id, rules, model, force=args.force, actor=actor, prefix=prefix
                )
                if result.outcome == "reclassified":  # level and priority drive the clocks
                    refresh_sla(session, ticket_id, sla_rules)
            report(result)
            return 0
        with app.factory() as session:
            ids = all_ticket_ids(session)
        for i in range(0, len(ids), RECLASSIFY_BATCH):
            with app.factory() as session, session.begin():
                results = reclassify_tickets(
                    session,
                    ids[i : i + RECLASSIFY_BATCH],
                    rules,
                    model,
                    force=args.force,
                    actor=actor,
                )
                for result in results:
                    if result.outcome == "reclassified":
                        refresh_sla(session, result.ticket_id, sla_rules)
            for result in results:
                report(result)
    if not args.json:
        out.print(" ".join(f"{k}={v}" for k, v in counts.items()), highlight=False)
    return 0


# -- train ----------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.triage.corrections import correction_examples
    from mailtriage.triage.model import describe_model, model_path, save_model
    from mailtriage.triage.training import (
        TrainingError,
        examples_from_dir,
        require_sklearn,
        train,
    )

    try:
        require_sklearn()
        dev_dir: Path | None = args.dev
        if dev_dir is None and (DEFAULT_DEV_DIR / "labels.jsonl").is_file():
            dev_dir = DEFAULT_DEV_DIR
        rules = _rules(settings)
        dev = examples_from_dir(dev_dir) if dev_dir is not None else []
        with _app(settings) as app, app.factory() as session:
            corrections = correction_examples(session, settings.mail.ticket_prefix)
        result = train([*dev, *corrections], rules, dev=dev, dev_dir=str(dev_dir or ""))
    except TrainingError as exc:
        raise UserError(str(exc)) from None
    path = model_path(settings)
    save_model(result.model, path)
    result.model.path = str(path)
    if args.json:
        print_json({"model": str(path)} | result.to_dict())
        return 0
    data = result.to_dict()
    cv: dict[str, Any] = data["cross_validation"]  # type: ignore[assignment]
    lines = [
        f"trained on {data['examples']} examples ({data['dev_examples']} dev"
        + (f" from {dev_dir}" if dev_dir else "")
        + f", {data['corrections']} corrections) in {data['categories']} categories"
        + (
            f"; {data['skipped']} skipped (category unknown to the rules)"
            if data["skipped"]
            else ""
        ),
        f"cross-validated category accuracy: model alone {cv['model_accuracy']:.2f}, "
        f"rules {cv['rules_accuracy']:.2f}, rules + model {cv['combined_accuracy']:.2f} "
        f"({cv['fixes']} fixed, {cv['breaks']} broken)",
        f"the model speaks when: {data['gate']}",
        f"the model sets the priority when: {data['priority_gate']} "
        f"({data['priority_cross_validation']['fixes']} fixed, "  # type: ignore[index]
        f"{data['priority_cross_validation']['breaks']} broken in cross-validation)",  # type: ignore[index]
        *(f"  {n}" for n in result.narrowed),
    ]
    if "dev" in data:
        dev_fig: dict[str, Any] = data["dev"]  # type: ignore[assignment]
        before, after = dev_fig["rules"], dev_fig["with_model"]
        lines.append(f"dev set {dev_dir} (trained on it too): rules alone -> rules + model")
        for key, label in (
            ("level_macro_f1", "level macro-F1"),
            ("category_accuracy", "category accuracy"),
            ("priority_accuracy", "priority exact"),
            ("priority_within_one", "priority within one step"),
            ("language_accuracy", "language accuracy"),
        ):
            lines.append(f"  {label} {before[key]:.2f} -> {after[key]:.2f}")
    lines.append(f"saved {path}")
    if not settings.triage.use_model:
        lines.append("triage.use_model = false: the model is not used until it is set to true")
    else:
        lines.append(f"model: {describe_model(settings, result.model)}")
    for line in lines:
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    return 0


# -- classify, eval -------------------------------------------------------------------


def _eml_files(paths: list[Path]) -> list[Path]:
    """Files as given; directories expanded to the .eml files below them."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.rglob("*.eml")) if path.is_dir() else [path])
    return files


def cmd_classify(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from rich.table import Table

    from mailtriage.pipeline.parse import ParseError
    from mailtriage.triage.eml import classify_file
    from mailtriage.triage.model import configured_model

    rules, model = _rules(settings), configured_model(settings)
    table = Table("file", "level", "category", "priority", "lang", "conf", "why")
    failed = 0
    for path in _eml_files(args.paths):
        try:
            result: dict[str, object] = {"file": str(path)} | classify_file(
                path, rules, model
            ).to_dict()
        except (OSError, ParseError) as exc:
            failed += 1
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            result = {"file": str(path), "error": reason}
        if args.json:
            print_json(result)
        elif "error" in result:
            table.add_row(str(path), "error", str(result["error"]), "", "", "", "")
        else:
            reasons = result.get("reasons")
            table.add_row(
                str(path),
                str(result["level"]),
                str(result["category"]),
                str(result["priority"]),
                str(result["language"]),
                f"{result['confidence']:.2f}",
                "; ".join(map(str, reasons if isinstance(reasons, list) else []))[:120],
            )
    if not args.json:
        out.print(table)
    return 1 if failed else 0


def _corrections_eval(settings: Settings, rules: Rules, model: Any) -> Any:
    from mailtriage.evaluation import eval_corrections
    from mailtriage.triage.corrections import correction_examples

    with _app(settings) as app, app.factory() as session:
        examples = correction_examples(session, settings.mail.ticket_prefix)
    return eval_corrections([(e.source, e.inp, dict(e.labels)) for e in examples], rules, model)


def cmd_eval(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    if not args.directories and not args.corrections:
        raise UserError("give a labelled DIR, or --corrections")
    for directory in args.directories:
        if not (directory / "labels.jsonl").is_file():
            raise UserError(f"{directory}: no labels.jsonl (expected *.eml and labels.jsonl)")
    from mailtriage.evaluation import eval_directory, render_corrections, render_eval
    from mailtriage.triage.model import configured_model, describe_model

    rules, model = _rules(settings), configured_model(settings)
    results = [eval_directory(d, rules, model) for d in args.directories]
    corrections = _corrections_eval(settings, rules, model) if args.corrections else None
    if args.json:
        used = {"rules": rules.source, "model": model.describe() if model else None}
        used["rules_model"] = rules.model.info if rules.model else None
        if corrections is not None:
            used["corrections"] = corrections.to_dict()
        if not results:
            print_json(used)
        elif len(results) == 1:
            print_json(results[0].to_dict() | used)
        else:
            each = {str(r.directory): r.to_dict() for r in results}
            print_json({"directories": each} | used)
    else:
        for result in results:
            render_eval(result, out, tables=len(results) == 1)
        if corrections is not None:
            render_corrections(corrections, out)
        combined = " + packaged linear model (rules/model.json)" if rules.model else ""
        out.print(f"rules {rules.source}{combined}", highlight=False, soft_wrap=True)
        out.print(f"model {describe_model(settings, model)}", highlight=False, soft_wrap=True)
    return 0
