"""The README is the PyPI page and the repository's landing page: every link in it must work there.

PyPI shows the README without the repository around it, so a relative link is dead on PyPI. The
README is rendered as Markdown (markdown-it-py, CommonMark with tables, as PyPI's renderer reads
it) and every link and image in the result must be absolute http(s); links into the repository
must name a file or directory that exists, and links into the documentation site a page that
``docs/`` builds. The bases come from ``[project.urls]`` in pyproject.toml, defined nowhere else.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from markdown_it import MarkdownIt

try:
    import tomllib
except ImportError:  # Python 3.10 (pytest brings tomli there)
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
URLS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]
SOURCE = URLS["Source"].rstrip("/")
DOCS = URLS["Documentation"]
HTML_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


def readme_links() -> list[str]:
    """Every link target and image source of the rendered README (Markdown links, autolinks, raw HTML)."""
    found: list[str] = []
    tokens = MarkdownIt("commonmark").enable("table").parse(README.read_text())
    for token in tokens:
        for child in [token, *(token.children or [])]:
            if child.type == "link_open":
                found.append(str(child.attrGet("href")))
            elif child.type == "image":
                found.append(str(child.attrGet("src")))
            elif child.type in ("html_inline", "html_block"):
                found.extend(HTML_LINK.findall(child.content))
    return found


def docs_page(url: str) -> Path | None:
    """The docs/ source of a page of the documentation site (None when the URL is not one)."""
    if not url.startswith(DOCS):
        return None
    page = urlsplit(url[len(DOCS):]).path or "index.html"
    stem = page[: -len(".html")] if page.endswith(".html") else page.rstrip("/") + "/index"
    return REPO / "docs" / f"{stem}.md"


def test_the_project_urls_name_one_home() -> None:
    assert {"Source", "Documentation", "Changelog", "Issues"} <= set(URLS)
    assert all(url.startswith("https://") for url in URLS.values()), URLS
    assert URLS["Issues"].startswith(SOURCE + "/")
    changelog = docs_page(URLS["Changelog"])
    assert changelog is not None and changelog.is_file(), f"{URLS['Changelog']}: no docs page builds it"
    assert "CHANGELOG.md" in changelog.read_text(), "the changelog page must include CHANGELOG.md, not copy it"


def test_every_readme_link_is_absolute() -> None:
    links = readme_links()
    assert len(links) >= 10, links  # the renderer found the links (a broken parse finds none)
    relative = [link for link in links if not re.match(r"https?://[^/\s]+", link)]
    assert not relative, f"README links that are dead on PyPI (use absolute URLs): {relative}"


def test_readme_links_into_the_repository_name_files_that_exist() -> None:
    checked = 0
    for link in readme_links():
        if not link.startswith(SOURCE):
            continue
        rest = urlsplit(link[len(SOURCE):]).path.strip("/")
        if rest in ("", "issues", "pulls"):
            continue
        match = re.fullmatch(r"(blob|tree)/main/(.+)", rest)
        assert match, f"{link}: link files as {SOURCE}/blob/main/PATH or directories as .../tree/main/PATH"
        kind, path = match.groups()
        target = REPO / path
        assert target.is_file() if kind == "blob" else target.is_dir(), f"{link}: {path} is not in the repository"
        checked += 1
    assert checked, "the README links no file of the repository (the example DAG, the licence)"


def test_readme_links_into_the_docs_name_pages_that_exist() -> None:
    pages = [(link, docs_page(link)) for link in readme_links() if link.startswith(DOCS)]
    assert len(pages) >= 10, "the README should lead to each part of the documentation"
    for link, source in pages:
        assert source is not None and source.is_file(), f"{link}: docs/ has no page that builds it"
        # Heading anchors differ between renderers; README links go to whole pages, which the docs build checks.
        assert not urlsplit(link).fragment, f"{link}: link the page, not an anchor in it"


def test_the_readme_keeps_the_two_set_up_commands_and_the_s3_extra() -> None:
    text = README.read_text()
    commands = re.findall(r"^make [\w-]+", text, flags=re.MULTILINE)
    assert commands == ["make demo", "make test"], commands
    assert "pip install 'airflow-provider-atlasflex[s3]'" in text


def test_the_example_dags_that_wait_on_atlas_poll_at_one_interval() -> None:
    """One poll interval in every example DAG, the one the docs state; ATLAS_FLEX_POLL_SECONDS overrides it."""
    defaults = {
        dag.name: match.group(1)
        for dag in sorted((REPO / "dags_examples").glob("*.py"))
        if (match := re.search(r'os\.environ\.get\("ATLAS_FLEX_POLL_SECONDS", "([^"]+)"\)', dag.read_text()))
    }
    assert {"atlas_flex_nightly_export.py", "atlas_flex_restore_drill.py"} <= set(defaults), defaults
    assert len(set(defaults.values())) == 1, f"the example DAGs poll Atlas at different intervals: {defaults}"
    (seconds,) = set(defaults.values())
    assert f"`ATLAS_FLEX_POLL_SECONDS`\n(default {seconds})" in (REPO / "docs" / "example-dags.md").read_text()
