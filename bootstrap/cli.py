"""``mediapulse emr ...``: package, policies, plan, launch, add-step, status, stop.

The app's CLI adds these with :func:`register` and dispatches with ``args.func(args)``; every handler
returns the exit code: 0 done, 1 the operation failed, 2 the configuration is invalid. Expected errors
print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from streaming.commands import add_config_arguments, exit_code, one_line

DEFAULT_CONFIG = "config/emr.yaml"

Handler = Callable[[argparse.Namespace, Any], int]


def _duration_seconds(text: str) -> float:
    from streaming.durations import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return parse


def _fail(where: str, message: str, code: int) -> int:
    sys.stderr.write(f"{where}: {message}\n")
    return code


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Load the config, run the handler, and turn expected failures into one line and an exit code."""

    def run(args: argparse.Namespace) -> int:
        from bootstrap.artifacts import PackagingError
        from bootstrap.launcher import LaunchError
        from streaming.config import load_config

        where = f"mediapulse emr {args.emr_command}"
        try:
            cfg = load_config(args.config, args.overrides)
            return handler(args, cfg)
        except (LaunchError, PackagingError, ValueError) as e:  # config errors are ValueErrors too
            return _fail(where, one_line(e), exit_code(e))
        except ClientError as e:
            code, message = (
                e.response.get("Error", {}).get("Code", "?"),
                e.response.get("Error", {}).get("Message"),
            )
            return _fail(where, f"AWS {e.operation_name} failed: {code}: {message or ''}", exit_code(e))
        except BotoCoreError as e:
            return _fail(where, f"AWS: {one_line(e)}", exit_code(e))

    return run


def _package(args: argparse.Namespace, cfg: Any) -> int:
    from bootstrap.artifacts import package

    package(
        cfg,
        args.config,
        dist_dir=args.dist,
        wheel=args.wheel,
        wheelhouse=args.wheelhouse,
        upload=not args.no_upload,
    )
    return 0


def _policies(args: argparse.Namespace, cfg: Any) -> int:
    from bootstrap.iam import policies

    documents = policies(cfg, args.out)
    if args.out:
        sys.stdout.writelines(f"{Path(args.out) / name}.json\n" for name in documents)
    else:
        sys.stdout.write(json.dumps(documents, indent=2) + "\n")
    return 0


def _plan(args: argparse.Namespace, cfg: Any) -> int:
    from bootstrap.plan import plan, render

    render(plan(cfg, args.events_per_second, args.event_bytes))
    return 0


def _launch(args: argparse.Namespace, cfg: Any) -> int:
    from bootstrap.launcher import launch

    launch(cfg, args.dry_run, config_name=Path(args.config).name, version=args.release)
    return 0


def _add_step(args: argparse.Namespace, cfg: Any) -> int:
    from bootstrap.launcher import add_step

    app_args = [a for a in args.app_args if a != "--"] if args.app_args else []
    add_step(
        cfg,
        args.cluster_id,
        app_args=tuple(app_args) or None,
        name=args.name,
        config_name=Path(args.config).name,
        version=args.release,
    )
    return 0


def _status(args: argparse.Namespace, cfg: Any) -> int:
    from bootstrap.launcher import status

    status(cfg, args.cluster_id)
    return 0


def _stop(args: argparse.Namespace, cfg: Any) -> int:
    from bootstrap.launcher import stop

    result = stop(
        cfg,
        args.cluster_id,
        step_id=args.step_id,
        force=args.force,
        terminate_process=args.terminate_process,
        timeout=args.timeout,
    )
    return 0 if result.ok else 1


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``emr`` and its commands to the app's subparsers (``parser.add_subparsers()``)."""
    emr = subparsers.add_parser(
        "emr",
        help="deploy and operate mediapulse on Amazon EMR",
        description="Deploy and operate mediapulse on Amazon EMR (see docs/deploy-emr.md).",
    )
    commands = emr.add_subparsers(dest="emr_command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        add_config_arguments(parser, DEFAULT_CONFIG)
        parser.set_defaults(func=_run(handler))
        return parser

    def cluster_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--cluster-id", help="the cluster (default: the one active cluster named emr.name)"
        )

    def release_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--release", help="the packaged version to run (default: this checkout's)")

    parser = command(
        "package",
        "build the wheel, pin dependencies, fetch their wheels for the nodes, upload the release (SSE-KMS)",
        _package,
    )
    parser.add_argument("--dist", help="local output folder (default: dist/<version>)")
    parser.add_argument("--wheel", help="upload this already built wheel instead of building one")
    parser.add_argument(
        "--wheelhouse", help="upload this wheelhouse.tar (from an earlier package run) instead of downloading"
    )
    parser.add_argument("--no-upload", action="store_true", help="build and pin only")

    parser = command("policies", "write least-privilege IAM policy documents", _policies)
    parser.add_argument("--out", help="write <name>.json files here instead of printing them")

    parser = command("plan", "Kinesis shards, executors, nodes and monthly cost for a load", _plan)
    parser.add_argument(
        "--events-per-second", type=_positive(float), required=True, help="peak event rate to plan for"
    )
    parser.add_argument("--event-bytes", type=_positive(int), default=600, help="average event size (600)")

    parser = command("launch", "start the cluster with the app's step", _launch)
    parser.add_argument("--dry-run", action="store_true", help="print the request and spark-submit line only")
    release_option(parser)

    parser = command("add-step", "run the app (or `-- <mediapulse args>`) as a step", _add_step)
    cluster_option(parser)
    release_option(parser)
    parser.add_argument("--name", help="step name (default: emr.step_name)")
    parser.add_argument("app_args", nargs=argparse.REMAINDER, help="-- backfill --from T1 --to T2")

    parser = command("status", "show the cluster's state and steps", _status)
    cluster_option(parser)

    parser = command(
        "stop", "stop the app after its current micro-batch (--force: cancel it and kill its driver)", _stop
    )
    cluster_option(parser)
    parser.add_argument("--step-id", help="the step (default: the newest active step named emr.step_name)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="cancel the step now (CancelSteps) and end its YARN application with a kill step",
    )
    parser.add_argument("--terminate-process", action="store_true", help="with --force: kill, not interrupt")
    parser.add_argument(
        "--timeout",
        type=_duration_seconds,
        help="how long to wait, e.g. '10 min' (default: emr.stop_timeout)",
    )
    return emr


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bootstrap.cli emr ...`` until the app's CLI registers the command."""
    parser = argparse.ArgumentParser(prog="mediapulse")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
