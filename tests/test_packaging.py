"""The wheel, built offline with `pip wheel --no-deps`, carries everything reportgen reads at run time.

The expected contents come from the source tree (every module, template, stylesheet and catalog file
there), not from the build configuration. The wheel is then installed (offline, no dependencies: the
test environment has them) into a folder of its own and its `reportgen` command writes a report from
a folder outside the checkout. `make wheel-check` (run by .ci/run) does the same into a fresh virtual
environment, with the dependencies from the package index.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def source_files() -> list[str]:
    """The checkout's files as a fresh clone has them (tracked and new, ignored ones left out)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return [name for name in listed if (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of the checkout, built offline."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--wheel-dir", str(work / "dist"), str(source)],
                   check=True, capture_output=True, env=os.environ | {"PIP_NO_INPUT": "1"})
    (built,) = (work / "dist").glob("reportgen-*.whl")
    return built


def test_the_wheel_carries_the_modules_templates_css_and_catalog(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    files = source_files()
    modules = [name for name in files if name.startswith("reportgen/") and name.endswith(".py")]
    templates = [name for name in files if name.startswith("templates/")]
    catalog = [name for name in files if name.startswith("reportgen/catalog/")]
    assert len(modules) > 20 and any(name.endswith(".css") for name in templates) and len(catalog) > 10
    assert not set(modules) - names
    assert not {f"reportgen/{name}" for name in templates} - names  # templates/ ships as reportgen/templates/
    assert not set(catalog) - names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "templates/"))]
    dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "reportgen = reportgen.cli:main" in entry_points
    metadata = Parser().parsestr(zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode())
    assert "docs" in metadata.get_all("Provides-Extra")
    assert {'mkdocs==1.6.1; extra == "docs"', 'mkdocs-material==9.8.2; extra == "docs"'} <= set(
        metadata.get_all("Requires-Dist"))


def test_the_installed_wheel_writes_a_report_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "models.txt").write_text("openai-community/gpt2\n")  # a bundled config: the catalog ships too
    # The installed package comes first on the path; the checkout is neither the working folder nor on the path.
    env = os.environ | {"PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "PYTHONSAFEPATH": "1"}
    where = subprocess.run([sys.executable, "-c", "import reportgen.render.jinja, importlib.resources as r; "
                            "print(r.files('reportgen.templates'))"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(target / "reportgen" / "templates")
    result = subprocess.run([str(target / "bin" / "reportgen"), "report", "--models", "models.txt", "--out",
                             "reports", "--no-merge-check", "--quiet"], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    folder = elsewhere / "reports" / "openai-community--gpt2"
    assert "124,439,808" in (folder / "report.md").read_text()  # GPT-2's published 124M, counted exactly
    html = (folder / "report.html").read_text()
    assert "<style>" in html and "</svg>" in html  # the stylesheet and the charts inline
