"""Supply chain: the installed (locked) dependencies stay at or above the versions that fixed
known vulnerabilities, and pyproject.toml declares the same floors.

``make audit-deps`` is the full check (pip-audit against a vulnerability database, bandit); this
one needs no network and runs with every test run.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# Flask 3.1.3 and Pillow 12.2 carry the fixes for the advisories against earlier releases.
FLOORS = {"flask": "3.1.3", "pillow": "12.2"}


def _declared() -> dict[str, Requirement]:
    with PYPROJECT.open("rb") as file:
        project = tomllib.load(file)["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    return {r.name.lower(): r for r in requirements}


@pytest.mark.parametrize(("name", "floor"), sorted(FLOORS.items()))
def test_installed_version_is_at_or_above_the_security_floor(name, floor):
    assert Version(version(name)) >= Version(floor), f"{name} {version(name)} < {floor}"


@pytest.mark.parametrize(("name", "floor"), sorted(FLOORS.items()))
def test_pyproject_never_allows_a_version_below_the_floor(name, floor):
    specifier = _declared()[name].specifier
    lower_bounds = [s for s in specifier if s.operator in (">=", "==", "~=", ">")]
    assert lower_bounds, f"{name} has no lower bound: {specifier}"
    assert all(Version(s.version) >= Version(floor) for s in lower_bounds), str(specifier)


def test_reportlab_is_installed_within_the_declared_range():
    try:
        installed = version("reportlab")
    except PackageNotFoundError:  # pragma: no cover - the failure message is the point
        pytest.fail("reportlab is not installed")
    assert _declared()["reportlab"].specifier.contains(installed)
