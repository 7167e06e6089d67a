"""Copier migration to 0.3.0, run before the update renders: the gateway id answers of 0.2.0
become the ones 0.3.0 asks.

0.2.0 asked `gateway_ids_confirmed`; a "no" asked `production_gateway_id` (and the other
environments' ids) beside `gateway_id`. From 0.3.0 production's id IS `gateway_id` and
only development and staging have ids of their own (same names as before). So that no
gateway id changes under an update, a typed production id becomes `gateway_id`, and the two
answers that no longer exist are dropped. Answers files without them are left untouched.
Copier reads the answers file again after this step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ANSWERS = Path(".copier-answers.yml")
GONE = ("gateway_ids_confirmed", "production_gateway_id")


def migrated(answers: dict) -> dict:
    """The 0.3.0 answers for 0.2.0's ``answers`` (the same dict when nothing changes)."""
    if not any(key in answers for key in GONE):
        return answers
    new = {key: value for key, value in answers.items() if key not in GONE}
    typed = answers.get("gateway_ids_confirmed") is False
    if typed and answers.get("production_gateway_id"):
        new["gateway_id"] = answers["production_gateway_id"]
    return new


def main() -> int:
    if not ANSWERS.is_file():
        return 0
    text = ANSWERS.read_text(encoding="utf-8")
    answers = yaml.safe_load(text) or {}
    new = migrated(answers)
    if new is not answers:
        header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
        ANSWERS.write_text(header + yaml.safe_dump(new, sort_keys=False, allow_unicode=True),
                           encoding="utf-8")
        print(f"{ANSWERS}: production's gateway id is the gateway_id answer now\n"
              "(0.3.0 asks neither gateway_ids_confirmed nor production_gateway_id)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
