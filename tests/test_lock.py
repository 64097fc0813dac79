"""The lock files agree with pyproject.toml: every range is met, nothing is left unpinned.

A change to pyproject.toml without `bash install.sh --lock` fails here, not on a user's
machine. The lock decides versions; the ranges only say what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9._-]+)(\[[^\]]*\])?==([^ ;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def read_lock(name: str) -> dict[str, tuple[Version, int]]:
    """{package: (version, hash count)} for this interpreter's platform (markers applied)."""
    env = default_environment()
    pins: dict[str, tuple[Version, int]] = {}
    current: str | None = None
    for line in (ROOT / name).read_text().splitlines():
        m = PIN.match(line)
        if m:
            current = None
            marker = m.group(4)
            if marker and not Requirement(f"x; {marker}").marker.evaluate(env):
                continue
            current = canonicalize_name(m.group(1))
            pins[current] = (Version(m.group(3)), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        elif line and not line.startswith((" ", "#")):
            pytest.fail(f"{name}: a line that is not an exact pin: {line!r}")
    return pins


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("requirements.lock", lambda p: p["dependencies"]),
        (
            "requirements-test.lock",
            lambda p: p["dependencies"] + p["optional-dependencies"]["test"],
        ),
    ],
)
def test_the_lock_pins_every_requirement_within_its_range(lock, requirements):
    pins = read_lock(lock)
    for text in requirements(project()):
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, (
            f"{req.name} is in pyproject.toml but not in {lock}: run bash install.sh --lock"
        )
        version, hashes = pins[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"{lock} pins {req.name}=={version}, outside pyproject.toml's {req.specifier}: run bash install.sh --lock"
        )
        assert hashes >= 1, f"{req.name} has no hash in {lock}"
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for text in build:  # the package is built without isolation, from the locked setuptools
        req = Requirement(text)
        assert req.specifier.contains(pins[canonicalize_name(req.name)][0])


def test_the_service_lock_is_the_test_lock_without_the_test_tools():
    service, test = read_lock("requirements.lock"), read_lock("requirements-test.lock")
    assert set(service) <= set(test)
    different = {n: (v, test[n][0]) for n, (v, _) in service.items() if test[n][0] != v}
    assert not different, f"the two locks pin different versions: {different}"


def test_a_library_whose_internals_we_subclass_has_an_upper_bound():
    # pipeline/server/ws_protocol.py and http_protocol.py subclass uvicorn's protocol classes.
    uvicorn = next(Requirement(r) for r in project()["dependencies"] if r.startswith("uvicorn"))
    assert any(spec.operator in ("<", "<=", "~=", "==") for spec in uvicorn.specifier)


def test_the_uvicorn_range_is_the_one_the_protocol_subclasses_accept():
    """pyproject's lower bound and the version the media protocol's subclass requires are
    one number (older versions have the same internals' names and break in them)."""
    from pipeline.server.ws_protocol import OLDEST_UVICORN

    uvicorn = next(Requirement(r) for r in project()["dependencies"] if r.startswith("uvicorn"))
    lower = [s.version for s in uvicorn.specifier if s.operator == ">="]
    assert lower and tuple(int(p) for p in lower[0].split(".")[:2]) == OLDEST_UVICORN
