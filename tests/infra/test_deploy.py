"""infra/deploy.sh: the order of the phases on a first deploy and on an update, against stand-in
``az``/``pulumi``/``curl`` commands that log every call (the real ones need an Azure subscription)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

PULUMI_STUB = r"""#!/usr/bin/env bash
echo "pulumi $*" >> "$STUB_LOG"
case "$1" in
  whoami) echo tester ;;
  stack)
    case "$2" in
      select) ;;
      output)
        case "$3" in
          resourceGroup) echo vtune-ci ;;
          functionAppName) echo vtune-ci-abc123-func ;;
          functionAppUrl) echo https://vtune-ci-abc123-func.azurewebsites.net ;;
          uploadCommand) echo "az storage blob upload-batch --auth-mode login ..." ;;
          openaiAccount) echo vtune-ci-abc123-oai ;;
          *) echo '{"resourceGroup": "vtune-ci"}' ;;
        esac ;;
    esac ;;
  config)
    if [ "$2" = get ]; then [ -f "$STUB_STATE/events" ] && cat "$STUB_STATE/events" && exit 0; exit 1; fi
    if [ "$2" = set ]; then printf '%s' "$4" > "$STUB_STATE/events"; fi ;;
  up) echo "UP eventGridSubscriptions=$(cat "$STUB_STATE/events" 2>/dev/null || echo unset)" >> "$STUB_LOG" ;;
  destroy) echo "DESTROYED" >> "$STUB_LOG" ;;
esac
"""

AZ_STUB = r"""#!/usr/bin/env bash
echo "az $*" >> "$STUB_LOG"
count() {
  local n; n=$(cat "$STUB_STATE/$1" 2>/dev/null || echo 0); n=$((n + 1))
  echo "$n" > "$STUB_STATE/$1"; echo "$n"
}
case "$1 $2" in
  "account show")
    [ -n "${STUB_AZ_LOGGED_OUT:-}" ] && { echo "Please run 'az login'" >&2; exit 1; }
    if [[ "$*" == *name* ]]; then echo "CI subscription"; else echo sub-0001; fi ;;
  "provider show") echo Registered ;;
  "functionapp deployment")
    [ -n "${STUB_PUBLISH_HANGS:-}" ] && sleep 30
    n=$(count publishes)
    [ "$n" -le "${STUB_PUBLISH_FAILURES:-0}" ] && exit 1
    echo "PUBLISHED" >> "$STUB_LOG" ;;
  "cognitiveservices account")
    case "$3" in
      show) [ -n "${STUB_ACCOUNT_GONE:-}" ] && exit 3; echo swedencentral ;;
      list-deleted) echo swedencentral ;;
      purge) echo "PURGED" >> "$STUB_LOG" ;;
    esac ;;
  "functionapp keys")
    n=$(count key-polls)
    [ "$n" -gt "${STUB_KEY_AFTER_POLLS:-0}" ] && echo mock-blobs-extension-key ;;
esac
exit 0
"""


def make_checkout(tmp_path: Path) -> Path:
    """A copy of the repository's app and infra files, sharing the real virtualenv."""
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("infra", "functions", "shared"):
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=ignore)
    for name in (
        "function_app.py",
        "host.json",
        "requirements.txt",
        "Pulumi.yaml",
        "Pulumi.dev.yaml.example",
    ):
        shutil.copy2(REPO_ROOT / name, root / name)
    (root / ".venv").symlink_to(REPO_ROOT / ".venv")
    return root


def make_stubs(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("pulumi", PULUMI_STUB), ("az", AZ_STUB), ("curl", "#!/usr/bin/env bash\nexit 0\n")):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


@pytest.fixture
def checkout(tmp_path: Path) -> dict:
    root = make_checkout(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    env = {
        "PATH": f"{make_stubs(tmp_path)}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STUB_LOG": str(tmp_path / "calls.log"),
        "STUB_STATE": str(state),
        "PUBLISH_RETRY_SECONDS": "0",
        "KEY_POLL_SECONDS": "0",
    }
    return {"root": root, "state": state, "env": env, "log": tmp_path / "calls.log"}


def deploy(
    checkout: dict, stack: str = "ci", script: str = "deploy.sh", stdin: str | None = None, **env: str
) -> tuple[subprocess.CompletedProcess, list[str]]:
    done = subprocess.run(
        ["bash", str(checkout["root"] / "infra" / script), stack],
        env={**checkout["env"], **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    calls = checkout["log"].read_text().splitlines() if checkout["log"].exists() else []
    return done, calls


# The calls that matter for the phase order of deploy.sh and of destroy.sh (as the stubs log them).
DEPLOY_STEPS = ("UP ", "PUBLISHED", "pulumi config set", "az functionapp deployment source config-zip")
DESTROY_STEPS = ("DESTROYED", "PURGED", "az cognitiveservices account purge", "pulumi stack rm")


def steps(calls: list[str], kinds: tuple[str, ...] = DEPLOY_STEPS) -> list[str]:
    """The calls that start with one of ``kinds``, in order."""
    return [c for c in calls if c.startswith(kinds)]


def test_first_deploy_provisions_publishes_then_wires_event_grid(checkout: dict) -> None:
    done, calls = deploy(checkout, STUB_PUBLISH_FAILURES="1", STUB_KEY_AFTER_POLLS="2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (checkout["root"] / "Pulumi.ci.yaml").read_text() == (
        checkout["root"] / "Pulumi.dev.yaml.example"
    ).read_text()
    publish = next(c for c in calls if c.startswith("az functionapp deployment source config-zip"))
    assert (
        "--build-remote true" in publish
        and "--resource-group vtune-ci" in publish
        and "--name vtune-ci-abc123-func" in publish
    )
    assert steps(calls) == [
        "pulumi config set visiontune:eventGridSubscriptions false --stack ci",
        "UP eventGridSubscriptions=false",
        publish,  # fails once (role propagation), retried
        publish,
        "PUBLISHED",
        "pulumi config set visiontune:eventGridSubscriptions true --stack ci",
        "UP eventGridSubscriptions=true",
    ]
    assert sum(c.startswith("az functionapp keys list") for c in calls) == 3, (
        "waits for the blobs_extension key"
    )
    with zipfile.ZipFile(checkout["root"] / "dist" / "app.zip") as archive:
        names = archive.namelist()
    assert "function_app.py" in names and not any(n.startswith("infra/") for n in names)


def test_update_keeps_subscriptions_and_publishes_the_new_code(checkout: dict) -> None:
    shutil.copy2(checkout["root"] / "Pulumi.dev.yaml.example", checkout["root"] / "Pulumi.ci.yaml")
    (checkout["state"] / "events").write_text("true")
    done, calls = deploy(checkout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert steps(calls)[0] == "UP eventGridSubscriptions=true", (
        "an update must not drop the subscriptions first"
    )
    assert [s for s in steps(calls) if s.startswith(("UP", "PUBLISHED"))] == [
        "UP eventGridSubscriptions=true",
        "PUBLISHED",
        "UP eventGridSubscriptions=true",
    ]
    assert "pulumi config set visiontune:eventGridSubscriptions false --stack ci" not in calls


def test_missing_login_stops_before_anything_changes(checkout: dict) -> None:
    done, calls = deploy(checkout, STUB_AZ_LOGGED_OUT="1")
    assert done.returncode != 0
    assert "az login" in done.stderr
    assert not any(c.startswith(("pulumi up", "UP", "az functionapp")) for c in calls)


def test_publish_failure_is_reported_and_phase_two_is_skipped(checkout: dict) -> None:
    done, calls = deploy(checkout, STUB_PUBLISH_FAILURES="9", PUBLISH_ATTEMPTS="2")
    assert done.returncode != 0
    assert "publishing failed 2 times" in done.stderr
    assert "UP eventGridSubscriptions=true" not in calls
    assert os.path.exists(checkout["root"] / "dist" / "app.zip")


def test_a_hanging_publish_is_stopped_with_a_clear_message_and_not_retried(checkout: dict) -> None:
    done, calls = deploy(checkout, STUB_PUBLISH_HANGS="1", PUBLISH_TIMEOUT_SECONDS="2")
    assert done.returncode != 0
    assert "publishing did not finish within 2s and was stopped" in done.stderr
    assert "az functionapp log deployment show -g vtune-ci -n vtune-ci-abc123-func" in done.stderr
    publishes = [c for c in calls if c.startswith("az functionapp deployment source config-zip")]
    assert len(publishes) == 1 and "--timeout 2" in publishes[0]
    assert "PUBLISHED" not in calls and "UP eventGridSubscriptions=true" not in calls


def test_destroy_asks_then_destroys_purges_the_openai_account_and_removes_the_stack(checkout: dict) -> None:
    done, calls = deploy(checkout, script="destroy.sh", CONFIRM="ci")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vtune-ci-abc123-oai" in done.stdout and "vtune-ci" in done.stdout  # says what goes
    assert steps(calls, DESTROY_STEPS) == [
        "DESTROYED",
        "az cognitiveservices account purge --location swedencentral --resource-group vtune-ci "
        "--name vtune-ci-abc123-oai",
        "PURGED",
        "pulumi stack rm --yes ci",
    ]
    # The region is read before the account is deleted.
    show = calls.index(next(c for c in calls if c.startswith("az cognitiveservices account show")))
    assert show < calls.index("DESTROYED")


def test_destroy_finds_the_region_of_an_account_already_deleted(checkout: dict) -> None:
    done, calls = deploy(checkout, script="destroy.sh", CONFIRM="ci", STUB_ACCOUNT_GONE="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(c.startswith("az cognitiveservices account list-deleted") for c in calls)
    assert "PURGED" in calls


@pytest.mark.parametrize(("confirm", "stdin"), [("", None), ("dev", None), ("", "prod\n")])
def test_destroy_without_the_right_confirmation_deletes_nothing(checkout: dict, confirm: str, stdin) -> None:
    done, calls = deploy(checkout, script="destroy.sh", stdin=stdin, CONFIRM=confirm)
    assert done.returncode != 0
    assert "nothing was deleted" in done.stderr or "no confirmation" in done.stderr
    assert steps(calls, DESTROY_STEPS) == []


def test_make_destroy_runs_the_destroy_script() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "destroy:\n\tbash infra/destroy.sh $(STACK)\n" in makefile
