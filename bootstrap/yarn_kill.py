"""End the live YARN applications that carry a tag: the kill step of ``mediapulse emr stop --force``.

Cancelling an EMR step stops the step's ``spark-submit`` client. In cluster mode the driver runs in
YARN's ApplicationMaster and outlives its client, so a new run would read and write the same
checkpoint beside it. The kill step runs this on the primary node, from the app's virtualenv::

    /opt/mediapulse/venv/bin/python -m bootstrap.yarn_kill --tag mediapulse-stream

It lists the applications with that tag (``spark-submit`` sets ``spark.yarn.tags``) that have not
ended, kills each (``yarn application -kill`` returns once YARN reports it killed), lists again, and
exits 0 only when none is left alive; the step fails otherwise and ``emr stop`` says so.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

LIVE_STATES = "NEW,NEW_SAVING,SUBMITTED,ACCEPTED,RUNNING"

Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


class YarnError(RuntimeError):
    """The ``yarn`` command failed or left an application alive."""


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def live_applications(tag: str, yarn: str = "yarn", run: Runner = _run) -> list[str]:
    """IDs of the applications tagged ``tag`` that YARN has not finished, failed or killed."""
    done = run([yarn, "application", "-list", "-appStates", LIVE_STATES, "-appTags", tag])
    if done.returncode != 0:
        raise YarnError(f"yarn application -list failed ({done.returncode}): {done.stderr.strip()}")
    # The listing is a header and one tab-separated row per application, its ID first.
    return [line.split()[0] for line in done.stdout.splitlines() if line.startswith("application_")]


def kill_tagged(tag: str, yarn: str = "yarn", run: Runner = _run) -> list[str]:
    """Kill every live application tagged ``tag``; the IDs killed. Raises if one is still alive after."""
    killed = live_applications(tag, yarn, run)
    for app_id in killed:
        log.info("killing YARN application %s (tag %s)", app_id, tag)
        done = run([yarn, "application", "-kill", app_id])
        if done.returncode != 0:
            raise YarnError(f"yarn application -kill {app_id} failed: {done.stderr.strip()}")
    alive = live_applications(tag, yarn, run)
    if alive:
        raise YarnError(f"still alive after the kill: {', '.join(alive)}")
    return killed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bootstrap.yarn_kill", description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True, help="the YARN application tag (spark.yarn.tags)")
    parser.add_argument("--yarn", default="yarn", help="the yarn command (default: yarn on PATH)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        killed = kill_tagged(args.tag, args.yarn)
    except (YarnError, OSError) as e:
        log.error("%s", e)
        return 1
    log.info("no live YARN application tagged %s (killed: %s)", args.tag, ", ".join(killed) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
