"""Print pip constraints that pin every direct dependency to its lower bound in pyproject.toml.

pip has no "lowest versions" resolver: ``make test-lowest`` installs the package with
``pip install -c`` and these lines, so that the tests run against the oldest versions that
pyproject.toml claims to support. A bound that does not work there must be raised.

    python .ci/lowest.py > constraints.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# name, optional [extras], the version specifiers, an optional environment marker
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*([^;]*?)\s*(?:;.*)?$")
_LOWER = re.compile(r">=\s*([^,\s]+)")


def lower_bounds(project: dict[str, object]) -> dict[str, str]:
    """Each direct dependency (core and every extra) with a ``>=`` bound -> that bound."""
    name = str(project["name"])
    extras = project.get("optional-dependencies", {})
    assert isinstance(extras, dict)
    requirements = [str(r) for r in project.get("dependencies", [])]  # type: ignore[attr-defined]
    requirements += [str(r) for group in extras.values() for r in group]
    bounds: dict[str, str] = {}
    for line in requirements:
        match = _REQUIREMENT.match(line)
        if match is None:
            raise SystemExit(f"pyproject.toml: cannot read the requirement {line!r}")
        package, _, specifiers = match.groups()
        lower = _LOWER.search(specifiers)
        if package != name and lower is not None:
            bounds[package.lower()] = lower.group(1)
    return bounds


def main() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    for package, version in sorted(lower_bounds(project).items()):
        sys.stdout.write(f"{package}=={version}\n")


if __name__ == "__main__":
    main()
