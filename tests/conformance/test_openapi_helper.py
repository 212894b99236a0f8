"""The shared spec helper: locating the spec and the skip/fail policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance._openapi import load_spec, spec_path

REPO = Path(__file__).resolve().parents[2]


def test_spec_path_defaults_beside_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATLAS_OPENAPI_SPEC", raising=False)
    assert spec_path() == REPO.parent / "shared" / "atlas-openapi-flex-backup.yaml"
    monkeypatch.setenv("ATLAS_OPENAPI_SPEC", "/elsewhere/spec.yaml")
    assert spec_path() == Path("/elsewhere/spec.yaml")


def test_missing_spec_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATLAS_OPENAPI_SPEC", str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_spec()


@pytest.mark.parametrize(("ci", "expected"), [("true", "1 error"), ("", "1 skipped")])
def test_missing_spec_skips_locally_and_fails_in_ci(tmp_path: Path, ci: str, expected: str) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_needs_spec(openapi_spec):\n    pass\n")
    conftest = (REPO / "tests" / "conformance" / "conftest.py").read_text()
    (tmp_path / "conftest.py").write_text(conftest)
    env = {**os.environ, "ATLAS_OPENAPI_SPEC": str(tmp_path / "nope.yaml"), "CI": ci}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert expected in out.stdout, out.stdout + out.stderr
    assert (out.returncode != 0) == (ci == "true")
    assert "atlas-openapi-flex-backup.yaml" in out.stdout or ci != "true"
