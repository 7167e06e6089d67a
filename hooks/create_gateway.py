"""Copier task: create (or update) the project's AI Gateway(s) right after `copier copy`.

copier.yml runs it only on copy (never on update, which replays tasks) and only when
create_gateway is true, with the freshly rendered project as the current directory. It runs
that project's own `scripts/ai_gateway.py sync`, so there is one implementation.

It ALWAYS exits 0: Copier deletes a new destination when a task fails, and a failed API call
must never cost the user the project they just rendered. Failures are explained instead,
with the command to retry. It says what it is doing before it starts, and gives up in time:
the script's own --timeout (AI_GATEWAY_TIMEOUT, default 60 s) bounds every request and retry,
and the task stops the script GRACE seconds after that if it is still running. The API token
is read from the environment by the script and is never printed here.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path("scripts") / "ai_gateway.py"
RETRY = "python3 scripts/ai_gateway.py sync"
DEFAULT_TIMEOUT = 60.0  # seconds: the script's own default
GRACE = 5.0  # seconds the script gets past its deadline before it is stopped


def say(text: str = "") -> None:
    print(text, flush=True)


def deadline() -> float:
    """The script's --timeout: AI_GATEWAY_TIMEOUT when it is a sensible number, else 60."""
    raw = os.environ.get("AI_GATEWAY_TIMEOUT", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if math.isfinite(value) and 0 < value <= 3600 else DEFAULT_TIMEOUT


def main() -> int:
    project = Path.cwd()
    say("")
    say("create_gateway: creating the AI Gateway(s) of ai-gateway.toml through the Cloudflare API")
    if not (os.environ.get("CLOUDFLARE_API_TOKEN") or os.environ.get("CF_API_TOKEN")):
        say(
            "create_gateway: skipped, no API token in the environment (CLOUDFLARE_API_TOKEN "
            "or CF_API_TOKEN)."
        )
        say("  The project is rendered. To create the gateway(s) later:")
        say(
            "    1. create a token: Cloudflare dashboard > My Profile > API Tokens > Create "
            "Token > Custom token, permissions Account > AI Gateway > Read and Edit"
        )
        say("    2. export CLOUDFLARE_API_TOKEN=<the token>   (never commit it)")
        say(f"    3. cd {project} && {RETRY}")
        return 0
    if not (project / SCRIPT).is_file():
        say(f"create_gateway: skipped, {SCRIPT} is missing from the rendered project.")
        return 0
    seconds = deadline()
    say(f"create_gateway: running `{RETRY} --timeout {seconds:g}` (gives up after {seconds:g} s)")
    code = None
    try:
        proc = subprocess.run(  # the project's own script, no shell
            [sys.executable, str(SCRIPT), "sync", "--timeout", f"{seconds:g}"],
            cwd=project,
            stdin=subprocess.DEVNULL,
            timeout=seconds + GRACE,
            check=False,
        )
        code = proc.returncode
    except subprocess.TimeoutExpired:
        say(f"create_gateway: gave up after {seconds + GRACE:g} s (the script was stopped).")
    except (OSError, subprocess.SubprocessError) as exc:
        say(f"create_gateway: could not run {SCRIPT}: {type(exc).__name__}")
    if code == 0:
        say(f"create_gateway: done. Later changes: edit ai-gateway.toml, then run `{RETRY}`.")
        return 0
    say("create_gateway: the gateway(s) were NOT all created or updated (see the error above).")
    say(f"  The project is rendered and kept in {project}.")
    say(f"  Fix the cause, then retry: cd {project} && {RETRY}")
    return 0


if __name__ == "__main__":
    try:
        main()
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - Copier would delete
        print(
            f"create_gateway: stopped ({type(exc).__name__}); the project is kept. Retry "
            f"with `{RETRY}` in the project.",
            flush=True,
        )
    sys.exit(0)
