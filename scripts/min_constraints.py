"""Print pip constraints pinning every direct dependency of pyproject.toml to its lower bound.

pip has no "lowest versions" resolution: ``name>=X`` becomes ``name==X.*`` (the release series of the
bound, padded to two parts: ``>=8`` is ``==8.0.*``; ``>=2.3`` is ``==2.3.*``, because 2.3.0 may not exist
when 2.3.1 does), so ``make test-min`` installs the versions pyproject.toml claims to support.
Usage: python scripts/min_constraints.py [EXTRA ...] > constraints.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([A-Za-z0-9_.]+)")


def lower_bounds(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for req in requirements:
        match = REQUIREMENT.match(req)
        if match is None:
            sys.exit(f"min_constraints: {req!r} has no lower bound (every dependency needs one)")
        name = match.group(1).lower()
        pins[name] = max(pins.get(name, ""), match.group(3))  # the same package listed twice: the higher bound
    return [f"{name}=={_series(version)}" for name, version in sorted(pins.items())]


def _series(version: str) -> str:
    parts = version.split(".")
    return ".".join(parts + ["0"] * (2 - len(parts))) + ".*"


if __name__ == "__main__":
    print("\n".join(lower_bounds(sys.argv[1:])))
