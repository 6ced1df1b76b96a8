from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bootstrap.yarn_kill import main

# A stand-in for Hadoop's `yarn` command: applications live in a JSON file; `-list` prints them the way
# `yarn application -list` does (a count line, a header, one tab-separated row each, filtered by state
# and tag); `-kill` marks one KILLED unless the file says kills are ignored.
FAKE_YARN = """\
import json, sys
state_file = {state!r}
apps = json.load(open(state_file))
args = sys.argv[1:]
assert args[0] == "application", args
if args[1] == "-list":
    states = args[args.index("-appStates") + 1].split(",")
    tags = args[args.index("-appTags") + 1].split(",")
    rows = [a for a in apps["apps"] if a["state"] in states and set(a["tags"]) & set(tags)]
    print(f"Total number of applications (application-types: [], states: {{states}} "
          f"and tags: {{tags}}):{{len(rows)}}")
    print("                Application-Id\\t    Application-Name\\t    Application-Type\\t"
          "      User\\t     Queue\\t             State\\t       Final-State\\t"
          "       Progress\\t                       Tracking-URL")
    for a in rows:
        print(f"{{a['id']}}\\t          mediapulse\\t               SPARK\\t    hadoop\\t   default\\t"
              f"           {{a['state']}}\\t         UNDEFINED\\t            10%\\thttp://primary:4040")
elif args[1] == "-kill":
    apps.setdefault("kill_calls", []).append(args[2])
    for a in apps["apps"]:
        if a["id"] == args[2] and not apps.get("kills_ignored"):
            a["state"] = "KILLED"
    json.dump(apps, open(state_file, "w"))
    print(f"Killing application {{args[2]}}")
"""


def _fake_yarn(tmp_path: Path, apps: list[dict], kills_ignored: bool = False) -> tuple[Path, Path]:
    state = tmp_path / "yarn-state.json"
    state.write_text(json.dumps({"apps": apps, "kills_ignored": kills_ignored}))
    yarn = tmp_path / "yarn"
    yarn.write_text(f"#!{sys.executable}\n" + FAKE_YARN.format(state=str(state)))
    yarn.chmod(0o755)
    return yarn, state


def _app(app_id: str, tag: str, state: str = "RUNNING") -> dict:
    return {"id": app_id, "tags": [tag], "state": state}


def test_kills_every_live_application_with_the_tag_and_nothing_else(tmp_path: Path):
    yarn, state = _fake_yarn(
        tmp_path,
        [
            _app("application_1_0001", "mediapulse-stream"),  # the orphaned driver
            _app("application_1_0002", "mediapulse-stream", "ACCEPTED"),  # a second attempt, queued
            _app("application_1_0003", "mediapulse-stream", "FINISHED"),
            _app("application_1_0004", "mediapulse-stream-backfill"),  # another step's application
        ],
    )
    assert main(["--tag", "mediapulse-stream", "--yarn", str(yarn)]) == 0
    after = json.loads(state.read_text())
    assert after["kill_calls"] == ["application_1_0001", "application_1_0002"]
    assert [a["state"] for a in after["apps"]] == ["KILLED", "KILLED", "FINISHED", "RUNNING"]


def test_nothing_to_kill_is_success(tmp_path: Path):
    yarn, state = _fake_yarn(tmp_path, [_app("application_1_0001", "other")])
    assert main(["--tag", "mediapulse-stream", "--yarn", str(yarn)]) == 0
    assert "kill_calls" not in json.loads(state.read_text())


def test_an_application_left_alive_fails_the_step(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    yarn, _ = _fake_yarn(tmp_path, [_app("application_1_0001", "mediapulse-stream")], kills_ignored=True)
    assert main(["--tag", "mediapulse-stream", "--yarn", str(yarn)]) == 1
    assert "still alive after the kill: application_1_0001" in caplog.text


def test_a_missing_yarn_command_fails_the_step(tmp_path: Path):
    assert main(["--tag", "mediapulse-stream", "--yarn", str(tmp_path / "no-such-yarn")]) == 1
