"""Repository layout promises of DESIGN.md."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_operator_is_the_standard_library_from_repo_root() -> None:
    out = subprocess.run(
        [sys.executable, "-S", "-c", "import operator; print(operator.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert not out.startswith(str(ROOT)), out
    assert Path(out).name == "operator.py"


def test_no_top_level_folder_is_a_package() -> None:
    for child in ROOT.iterdir():
        if child.is_dir() and not child.name.startswith("."):
            assert not (child / "__init__.py").exists(), child


def test_component_packages_import() -> None:
    import karl_core
    import karl_ngrouter
    import karl_operator

    assert karl_core.__version__
    assert karl_ngrouter.__doc__ and karl_operator.__doc__
