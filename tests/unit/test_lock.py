"""The lock files (`deploy/requirements.lock` for the image, `deploy/requirements-dev.lock` for development and CI)
are current: every dependency `pyproject.toml` declares is pinned there at a version it allows, the image's pins
are the development pins, and this interpreter runs exactly the pinned versions (bootstrap installs with the dev
lock as constraints). Regenerate both with `make lock` after changing a dependency."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "==" in line:
            name, _, pinned = line.partition("==")
            found[canonicalize_name(name)] = pinned.split(";")[0].strip()
    return found


def declared(*, extras: bool) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    if extras:
        requirements += [Requirement(r) for group in project["optional-dependencies"].values() for r in group]
    return requirements


def test_every_declared_dependency_is_pinned_at_a_version_it_allows() -> None:
    for lock, extras in (("requirements.lock", False), ("requirements-dev.lock", True)):
        pinned = pins(ROOT / "deploy" / lock)
        for requirement in declared(extras=extras):
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{requirement} is not in deploy/{lock}: run `make lock`"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (lock, requirement, pinned[name])


def test_the_image_runs_the_versions_development_tests() -> None:
    runtime, development = pins(ROOT / "deploy" / "requirements.lock"), pins(ROOT / "deploy" / "requirements-dev.lock")
    assert {name: development.get(name) for name in runtime} == runtime


def test_this_interpreter_runs_exactly_the_pinned_versions() -> None:
    wrong = {}
    for name, pinned in pins(ROOT / "deploy" / "requirements-dev.lock").items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "missing"
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert wrong == {}, "run deploy/bootstrap.sh (it installs with the dev lock as constraints)"
