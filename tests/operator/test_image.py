"""The one image of the three programs (Dockerfile). No Docker engine runs here, so the image itself is
not built (the kind suite under tests/e2e builds it where Docker exists); what can be shown here is:

- the files the Dockerfile copies are enough to build and install the package (built from a copy of
  exactly those files into a fresh directory), and its three entry points start from that install;
- the Dockerfile's final stage runs as a numeric non-root user, asks for no privilege, and provides
  what the operator's pods run (`karl`, `karl-router`, `karl-operator`, and `python3` for the probes).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from karl_cluster_kit import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def final_stage(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def copied_sources(text: str) -> list[str]:
    """The repository paths the build stage copies (COPY without --from)."""
    sources: list[str] = []
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    return sources


def test_the_files_the_dockerfile_copies_build_the_package_and_its_entry_points_start(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for path in copied_sources(DOCKERFILE.read_text()):
        origin = ROOT / path
        if origin.is_dir():
            shutil.copytree(origin, source / path, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / path)
    target = tmp_path / "install"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    for program in ("karl", "karl-router", "karl-operator"):
        script = target / "bin" / program
        assert script.exists(), sorted(p.name for p in (target / "bin").iterdir())
        done = subprocess.run(
            [sys.executable, str(script), "--version"], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0 and program in done.stdout, (program, done.stdout, done.stderr)
        # the installed copy, not the checkout's editable install
        where = subprocess.run(
            [sys.executable, "-c", "import karl_core; print(karl_core.__file__)"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert where.stdout.startswith(str(target)), where.stdout


def test_the_image_runs_as_a_non_root_user_without_privileges() -> None:
    text = DOCKERFILE.read_text()
    stage = final_stage(text)
    [user] = [line for line in stage if line.upper().startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user  # numeric: runAsNonRoot can check it
    assert stage[0].startswith("FROM python:3.11-"), stage[0]
    for forbidden in ("setcap", "chmod u+s", "chmod +s", "--privileged", "sudo"):
        assert forbidden not in text, forbidden
    assert re.search(r'ENV PATH="/opt/karl/bin:', text)
    ignored = DOCKERIGNORE.read_text().split()
    assert ".git" in ignored and ".venv" in ignored


def test_the_programs_the_pods_run_are_the_images() -> None:
    """Each command the operator's children and the chart start is an entry point of the package (or
    python3, which the python base image has)."""
    scripts = set(re.findall(r'^(karl[\w-]*) = "', (ROOT / "pyproject.toml").read_text(), re.M))
    assert scripts == {"karl", "karl-router", "karl-operator"}
    from karl_cluster_kit import load_crd

    from karl_operator.children import desired_objects
    from karl_operator.cluster_spec import checked_spec

    spec, _ = checked_spec(load_crd(), {})
    manifest = {"metadata": {"name": "x", "namespace": "n", "uid": "u"}, "spec": spec}
    commands = set()
    for obj in desired_objects(manifest):
        for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            if "command" in container:
                head = container["command"][0]
                commands.add(container["command"][2].rsplit("exec ", 1)[1] if head == "/bin/sh" else head)
    assert commands <= scripts | {"python3"}, commands
    chart = (ROOT / "charts" / "karl" / "templates" / "deployment.yaml").read_text()
    assert 'command: ["karl-operator", "run"' in chart


def test_every_package_the_programs_import_is_a_dependency_of_theirs() -> None:
    """A clean install (`pip install .`, as the image does) has what the product imports: every
    third-party module imported under core/, medianode/, ngrouter/ and operator/ comes from a runtime
    dependency in pyproject.toml or from what those require in turn (test extras do not count)."""
    import ast
    import tomllib
    from importlib import metadata

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]]
    allowed: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop().lower().replace("_", "-")
        if name in allowed:
            continue
        allowed.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # (a requirement whose markers leave it out here)
        for requirement in requirements:
            if "extra ==" in requirement:
                continue
            pending.append(re.split(r"[<>=!~\[; (]", requirement, maxsplit=1)[0])
    providers = metadata.packages_distributions()
    own = {"karl_core", "karl_medianode", "karl_ngrouter", "karl_operator"}
    missing: dict[str, str] = {}
    for package in ("core", "medianode", "ngrouter", "operator"):
        for source in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                modules = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module]
                    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                    else []
                )
                for module in modules:
                    top = module.split(".")[0]
                    if top in own or top in sys.stdlib_module_names:
                        continue
                    distributions = {d.lower().replace("_", "-") for d in providers.get(top, [])}
                    if not distributions & allowed:
                        missing[top] = str(source.relative_to(ROOT))
    assert not missing, f"imported but not a runtime dependency: {missing}"
