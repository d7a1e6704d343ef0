"""The README's sections that the project's files point to (README "Network", README, "Deviations",
README 'Datasets') exist, so that a section lost in an edit is caught, as are the sections the
project promises its users."""
import os
import pathlib
import re

from core.layout import PROJECT_ROOT as ROOT

REFERENCE = re.compile(r"""README,? ["'\u201c]([^"'\u201d\n]+)["'\u201d]""")
PROMISED = ("Reproducing Table 1", "Docker", "When things go wrong",
            "Deviations from the paper", "Dependencies", "Tests and CI")


def headings():
    return [m.group(1).strip() for m in re.finditer(r"^#{2,3} (.+)$", (ROOT / "README.md").read_text(), re.M)]


# The project's own text files: not the venv, caches, data or results (a clean copy has no .git).
SKIPPED_DIRS = {"__pycache__", "runs", "data", "out", "dist", "build"}
TEXT = {".py", ".prototxt", ".sh", ".md", ".txt", ".toml", ".cfg"}


def references():
    found = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not (d.startswith(".") or d in SKIPPED_DIRS or d.endswith(".egg-info")))
        for name in sorted(files):
            path = pathlib.Path(folder) / name
            if path.suffix not in TEXT and name not in ("Makefile", "Dockerfile"):
                continue
            try:
                text = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            for m in REFERENCE.finditer(text):
                found.setdefault(m.group(1), str(path.relative_to(ROOT)))
    return found


def missing(titles, refs):
    """{section name: a file that names it} for the names no heading starts with."""
    return {name: where for name, where in refs.items() if not any(t.startswith(name) for t in titles)}


def test_every_readme_section_referred_to_exists():
    refs = references()
    assert len(refs) >= 5, refs                  # the pattern does find the project's references
    assert not missing(headings(), refs), f"README has no section for: {missing(headings(), refs)}"


def test_the_promised_sections_are_there():
    titles = headings()
    for name in PROMISED:
        assert any(t.startswith(name) for t in titles), name


def test_a_lost_section_is_caught():
    refs = references()
    titles = [t for t in headings() if not t.startswith("Deviations")]
    assert set(missing(titles, refs)) == {"Deviations"}
