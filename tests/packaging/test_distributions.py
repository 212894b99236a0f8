"""The wheel and the sdist as a user gets them: what they carry, and the demo run from an installed wheel.

Builds both from this checkout (``pip wheel --no-deps``, ``python -m build --sdist``), so these are
end-to-end tests (marked ``e2e``): ``make matrix`` runs them on every supported Airflow minor.
"""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "airflow_provider_atlasflex"
DIST_INFO = "airflow_provider_atlasflex-{version}.dist-info"

pytestmark = pytest.mark.e2e


def _run(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def version() -> str:
    from airflow_provider_atlasflex.version import __version__

    return __version__


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(REPO), cwd=out)
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    _run(sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(REPO), cwd=out)
    (built,) = out.glob("*.tar.gz")
    return built


def _source_packages() -> set[str]:
    """Every package of the source tree, as the wheel must hold it (dags_examples/ mapped into it)."""
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / PACKAGE).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    return found | {f"{PACKAGE}.example_dags"}


def _read(archive: Path, member: str) -> bytes:
    with zipfile.ZipFile(archive) as opened:
        return opened.read(member)


def test_wheel_holds_every_package_the_example_dag_and_the_licence(wheel: Path, version: str) -> None:
    with zipfile.ZipFile(wheel) as opened:
        names = set(opened.namelist())
    packages = {".".join(Path(n).parent.parts) for n in names if n.endswith("/__init__.py")}
    assert packages == _source_packages(), "pyproject.toml [tool.setuptools] packages is out of date"
    shipped = _read(wheel, f"{PACKAGE}/example_dags/atlas_flex_nightly_export.py")
    assert shipped == (REPO / "dags_examples" / "atlas_flex_nightly_export.py").read_bytes()
    info = DIST_INFO.format(version=version)
    assert {f"{info}/licenses/LICENSE", f"{info}/licenses/NOTICE", f"{PACKAGE}/py.typed"} <= names
    assert "Apache License" in _read(wheel, f"{info}/licenses/LICENSE").decode()
    assert not [n for n in names if n.startswith(("tests/", "dags_examples/", "benchmarks/"))]


def test_wheel_metadata_states_licence_floor_urls_and_classifiers(wheel: Path, version: str) -> None:
    raw = _read(wheel, f"{DIST_INFO.format(version=version)}/METADATA").decode()
    meta = email.parser.Parser().parsestr(raw)
    assert meta["License-Expression"] == "Apache-2.0"
    assert sorted(meta.get_all("License-File") or []) == ["LICENSE", "NOTICE"]
    classifiers = meta.get_all("Classifier") or []
    assert not [c for c in classifiers if c.startswith("License ::")], "SPDX expression only"
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Framework :: Apache Airflow :: Provider" in classifiers
    urls = meta.get_all("Project-URL") or []
    assert urls and all(re.fullmatch(r"[^,]+, https://\S+", u) for u in urls), urls
    assert {"Source", "Documentation", "Changelog", "Issues"} <= {u.split(",")[0] for u in urls}, urls
    requires = meta.get_all("Requires-Dist") or []
    (airflow,) = [r for r in requires if r.startswith("apache-airflow") and "extra ==" not in r]
    assert re.fullmatch(r"apache-airflow>=3\.\d+\.\d+", airflow), airflow
    # The fast inflater comes with a plain install; S3 is a user extra; test and lint tools are only in "dev".
    plain = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("isal") for r in plain), plain
    assert {"s3", "dev"} <= set(meta.get_all("Provides-Extra") or [])
    s3 = [r for r in requires if 'extra == "s3"' in r]
    assert any(r.startswith("apache-airflow-providers-amazon") for r in s3) and any(r.startswith("s3fs") for r in s3)
    tools = ("pytest", "ruff", "mypy", "moto", "requests-mock", "build")
    for requirement in requires:
        if requirement.startswith(tools):
            assert 'extra == "dev"' in requirement, f"{requirement}: a development tool outside the dev extra"


def test_sdist_carries_licence_notice_changelog_and_example_dag(sdist: Path, version: str) -> None:
    root = f"airflow_provider_atlasflex-{version}"
    with tarfile.open(sdist) as opened:
        names = set(opened.getnames())
    expected = ["LICENSE", "NOTICE", "CHANGELOG.md", "README.md", "pyproject.toml", "dags_examples/atlas_flex_nightly_export.py"]
    assert {f"{root}/{name}" for name in expected} <= names, sorted(names)


def test_readme_renders_on_pypi(wheel: Path, sdist: Path) -> None:
    """``twine check --strict``: the long description (the README) and its content type are what PyPI
    renders; tests/docs/test_readme.py checks its links."""
    if os.environ.get("CI") != "true":
        pytest.importorskip("twine", reason="twine (in the dev extra) is not installed: run `make test`")
    checked = _run(sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist), cwd=wheel.parent)
    assert checked.stdout.count("PASSED") == 2, checked.stdout


def test_demo_runs_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv holding only the wheel (Airflow and the other dependencies are borrowed from
    the venv running the tests through a .pth file), run from a directory outside the checkout."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=tmp_path)
    python = venv / "bin" / "python"
    own_site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).stdout.strip())
    # After the venv's own site-packages: the wheel wins over the editable install of the test venv.
    (own_site / "_borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel), cwd=tmp_path)

    where = _run(
        str(python), "-c",
        "import importlib.metadata as m, airflow_provider_atlasflex.example_dags as d; "
        "print(d.__file__); print(m.distribution('airflow-provider-atlasflex').locate_file(''))",
        cwd=tmp_path,
    ).stdout.split()
    assert all(Path(p).resolve().is_relative_to(own_site.resolve()) for p in where), where

    demo = _run(
        str(python), "-m", "airflow_provider_atlasflex.testing.demo",
        "--workdir", str(tmp_path / "demo"), "--clusters", "alpha", "--snapshot-size", "2000000",
        cwd=tmp_path,
    )
    assert "Demo OK" in demo.stdout, demo.stdout
    copied = tmp_path / "demo" / "dags" / "atlas_flex_nightly_export.py"
    assert copied.read_bytes() == (REPO / "dags_examples" / "atlas_flex_nightly_export.py").read_bytes()
    assert list((tmp_path / "demo" / "exports" / "alpha").glob("*/*.tgz")), "no export written"
