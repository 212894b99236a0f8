"""Sphinx configuration of the documentation site (`make docs` builds it into docs/_build/html).

Sphinx, as Apache Airflow builds its own providers' documentation, with MyST so the pages stay
Markdown (they read well on the repository host too) and autodoc for the operator reference, which
comes from the docstrings. The build fails on any warning (`-W`) and on any reference that resolves
nowhere (`-n`): a page, heading or class named in the text must exist.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: Sphinx itself depends on tomli there.
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Autodoc imports the operators, which import Airflow: keep Airflow's files out of the user's home.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "docs" / "_build" / "airflow-home"))

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The canonical addresses are defined once, in pyproject.toml's [project.urls].
URLS: dict[str, str] = PROJECT["urls"]

from airflow_provider_atlasflex.version import __version__

project = "airflow-provider-atlasflex"
author = "airflow-provider-atlasflex developers"
copyright = "the airflow-provider-atlasflex developers; Apache License 2.0"
release = version = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Links between pages are Markdown links to the .md files ([text](tokens.md#heading)); MyST checks
# each target and anchor (a broken one is a warning, so a failed build).
myst_heading_anchors = 3
# `repo:PATH` links the repository's host: [source](repo:tree/main), [a file](repo:blob/main/constraints/README.md),
# [issues](repo:issues).
myst_url_schemes = {
    "http": None,
    "https": None,
    "mailto": None,
    "repo": URLS["Source"] + "/{{path}}",
}

# Reference from the docstrings; signatures without type hints (the parameter lists say what each takes).
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autoclass_content = "class"

# Nitpicky: every reference to this provider's own objects must resolve. Other libraries' objects
# (Airflow, the standard library) are not linked: this build reaches no other site.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"^(?!airflow_provider_atlasflex\.).*")]

html_theme = "furo"
html_title = f"airflow-provider-atlasflex {release}"
html_static_path = ["_static"]
html_theme_options = {"source_repository": URLS["Source"], "source_branch": "main", "source_directory": "docs/"}
