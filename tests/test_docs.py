"""The repository's documents point only at files inside the repository, and those files exist:
a reader of a clone or of the sdist can follow every link."""

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


def documents():
    """Every tracked Markdown file (git's list, so a venv or build output never counts)."""
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    return [ROOT / name for name in listed]


def test_every_relative_link_resolves_inside_the_repository():
    broken = []
    for document in documents():
        for target in LINK.findall(document.read_text()):
            if re.match(r"[a-z]+:|#", target):
                continue
            path = (document.parent / target.split("#")[0]).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert broken == []


def test_no_document_names_a_file_outside_the_repository():
    outside = [str(d.relative_to(ROOT)) for d in documents()
               if re.search(r"shared/reference|/work/", d.read_text())]
    assert outside == []


def test_no_source_file_names_a_file_outside_the_repository():
    """Code and its docstrings too: a fact they rely on is written into docs/, not pointed at."""
    listed = subprocess.run(["git", "ls-files", "*.py", "*.lua"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    outside = [name for name in listed if name != "tests/test_docs.py"
               and re.search(r"shared/reference|/work/|RESULTS-store", (ROOT / name).read_text())]
    assert outside == []
