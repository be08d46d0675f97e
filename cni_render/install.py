"""Writing the node's plugin executables (``cni-render install``).

The runtime executes ``<bin dir>/cni-render`` for every pod. What is written
there, fastest first:

* the C shim (``shim/cni-render-shim.c``, compiled here when a C compiler is
  present): answers VERSION and forwards every other call to the node's
  cni-render daemon, or executes the Python launcher when no daemon answers;
* otherwise the Python launcher itself, which starts Python isolated and
  without ``site`` (``-IS``) and does the same in Python.

The Python launcher always lives in ``<prefix>/libexec/cni-render/``.
``cni-render-ipam`` is a Python launcher. Every file is written under a
temporary name and renamed, so a runtime never executes half a file (and an
upgrade never hits "text file busy").
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

import cni_render

LAUNCHER = """\
#!{python} -IS
# Written by `cni-render install`: the {name} CNI plugin. Python starts isolated
# and without site for speed; the package is found where it was installed.
import sys
sys.path[0:0] = {paths!r}
from cni_render.entry import {function}
sys.exit({function}())
"""

EXECUTABLES = {"cni-render": "plugin_main", "cni-render-ipam": "ipam_main"}


def libexec_dir() -> Path:
    return Path(sys.prefix) / "libexec" / "cni-render"


def search_path() -> list[str]:
    """Where the package and its dependencies live, for a ``-S`` interpreter."""
    paths = [str(Path(cni_render.__file__).resolve().parent.parent)]
    for directory in site.getsitepackages():
        if directory not in paths and os.path.isdir(directory):
            paths.append(directory)
    return paths


def launcher(name: str) -> str:
    return LAUNCHER.format(python=sys.executable, name=name, paths=search_path(), function=EXECUTABLES[name])


def write_atomically(path: Path, content: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def compile_shim(fallback: Path) -> bytes | None:
    """The shim binary, or None when there is no C compiler."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None
    source = files("cni_render").joinpath("shim").joinpath("cni-render-shim.c").read_bytes()
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "shim.c").write_bytes(source)
        output = Path(work) / "cni-render"
        define = f'-DFALLBACK="{fallback}"'
        result = subprocess.run(
            [compiler, "-O2", "-Wall", "-o", str(output), define, str(Path(work) / "shim.c")],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SystemExit(f"compiling the cni-render shim failed:\n{result.stderr}")
        return output.read_bytes()


def install(bin_dir: str, shim: bool = True) -> list[Path]:
    directory = Path(bin_dir)
    directory.mkdir(parents=True, exist_ok=True)
    libexec = libexec_dir()
    libexec.mkdir(parents=True, exist_ok=True)
    fallback = libexec / "cni-render"
    write_atomically(fallback, launcher("cni-render").encode(), 0o755)
    written = [fallback]
    binary = compile_shim(fallback) if shim else None
    plugin = directory / "cni-render"
    write_atomically(plugin, binary if binary is not None else launcher("cni-render").encode(), 0o755)
    ipam = directory / "cni-render-ipam"
    write_atomically(ipam, launcher("cni-render-ipam").encode(), 0o755)
    return [*written, plugin, ipam]
