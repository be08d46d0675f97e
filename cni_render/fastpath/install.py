"""Writing the node's plugin executables (``cni-render install``).

The runtime executes ``<bin dir>/cni-render`` for every pod. Two layouts:

* a node with Python (``make cni``): the C shim compiled here when a C
  compiler is present (answers VERSION, forwards every other call to the
  node's daemon, executes the Python launcher when no daemon answers), else
  the Python launcher itself (``python -IS``); ``cni-render-ipam`` is a
  Python launcher, and the launcher lives in ``<prefix>/libexec/cni-render/``;
* a node without Python (the DaemonSet): ``--shim PATH`` copies a prebuilt
  static shim (``--build-static-shim OUT`` builds one, in an image's build
  stage) and writes nothing else; that shim never executes anything.

Every file is staged under an exclusive temporary name in its directory
(``O_EXCL|O_NOFOLLOW``), written, fsynced and renamed, then the directory is
fsynced: a runtime never executes half a file, an upgrade never hits "text
file busy", and a failure leaves no temporary file and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import site
import stat
import struct
import subprocess
import sys
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import TextIO

import cni_render
from cni_render.host import durable

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


class InstallError(Exception):
    pass


def libexec_dir() -> Path:
    return Path(sys.prefix) / "libexec" / "cni-render"


def search_path() -> list[str]:
    """Where the package and its dependencies live, for a ``-S`` interpreter."""
    paths = [str(Path(cni_render.__file__).resolve().parent.parent)]
    for directory in site.getsitepackages():
        if directory not in paths and os.path.isdir(directory):
            paths.append(directory)
    return paths


def _writable_by_others(path: Path) -> str | None:
    """Which directory on the way to ``path`` someone but root could change."""
    for directory in [path, *path.parents]:
        try:
            st = os.lstat(directory)
        except OSError:
            continue
        sticky_world = st.st_mode & stat.S_ISVTX and st.st_mode & 0o002
        if st.st_uid not in (0, os.geteuid()):
            return f"{directory} belongs to uid {st.st_uid}"
        if st.st_mode & 0o020 and st.st_gid != 0:
            return f"{directory} is writable by group {st.st_gid}"
        if st.st_mode & 0o002 and not sticky_world:
            return f"{directory} is writable by everyone"
    return None


def _editable() -> bool:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        text = distribution("cni-render").read_text("direct_url.json")
    except PackageNotFoundError:
        return False
    return bool(text and json.loads(text).get("dir_info", {}).get("editable"))


def import_path_problem() -> str | None:
    """Why the launcher must not put this interpreter's package path on root's
    import path (every pod runs it as root), or None."""
    if _editable():
        return "cni-render is an editable install: root would import code from a checkout; run `pip install .`"
    for entry in search_path():
        problem = _writable_by_others(Path(entry))
        if problem:
            return f"the plugin would import from {entry}, but {problem}"
    return None


def launcher(name: str) -> str:
    return LAUNCHER.format(python=sys.executable, name=name, paths=search_path(), function=EXECUTABLES[name])


def write_all_or_nothing(files_to_write: list[tuple[Path, bytes, int]]) -> list[Path]:
    """Every file written, or none (:func:`cni_render.host.durable.replace_files`)."""
    durable.replace_files([(str(path), content, mode) for path, content, mode in files_to_write])
    return [path for path, _, _ in files_to_write]


def write_atomically(path: Path, content: bytes, mode: int) -> None:
    write_all_or_nothing([(path, content, mode)])


def _source() -> bytes:
    return files("cni_render.fastpath").joinpath("shim").joinpath("cni-render-shim.c").read_bytes()


def _compile(arguments: list[str]) -> bytes | None:
    """Compile the shim with ``arguments``; its bytes, or None without a compiler."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "shim.c").write_bytes(_source())
        output = Path(work) / "cni-render"
        result = subprocess.run(
            [compiler, "-O2", "-Wall", *arguments, "-o", str(output), str(Path(work) / "shim.c")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise InstallError(f"compiling the cni-render shim failed:\n{result.stderr}")
        return output.read_bytes()


def compile_shim(fallback: Path) -> bytes | None:
    """The shim binary for a node with Python, or None when there is no C compiler."""
    return _compile([f'-DFALLBACK="{fallback}"'])


def elf_problem(binary: bytes) -> str | None:
    """Why ``binary`` is not a statically linked ELF executable, or None."""
    if binary[:4] != b"\x7fELF" or len(binary) < 64:
        return "is not an ELF executable"
    wide, order = binary[4] == 2, "<" if binary[5] == 1 else ">"
    if wide:
        phoff, = struct.unpack_from(order + "Q", binary, 32)
        entry_size, count = struct.unpack_from(order + "HH", binary, 54)
    else:
        phoff, = struct.unpack_from(order + "I", binary, 28)
        entry_size, count = struct.unpack_from(order + "HH", binary, 42)
    for index in range(count):
        offset = phoff + index * entry_size
        if offset + 4 > len(binary):
            return "is a truncated ELF file"
        if struct.unpack_from(order + "I", binary, offset)[0] == 3:  # PT_INTERP
            return "is dynamically linked (a node may lack its libraries); build it with --build-static-shim"
    return None


def build_static_shim(output: str) -> Path:
    """Compile the node shim (NODE_MODE: no Python, never executes anything),
    statically linked, and write it to ``output`` atomically."""
    binary = _compile(["-static", "-DNODE_MODE"])
    if binary is None:
        raise InstallError(f"no C compiler ({os.environ.get('CC', 'cc')}) to build the static shim")
    problem = elf_problem(binary)
    if problem:
        raise InstallError(f"the compiler's output {problem}")
    path = Path(output).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, binary, 0o755)
    return path


def install_shim(bin_dir: str, shim: str) -> list[Path]:
    """Copy a prebuilt static shim into ``bin_dir`` as ``cni-render``; nothing else."""
    try:
        binary = Path(shim).read_bytes()
    except OSError as exc:
        raise InstallError(f"cannot read the shim {shim}: {exc.strerror}") from None
    problem = elf_problem(binary)
    if problem:
        raise InstallError(f"{shim} {problem}")
    directory = Path(bin_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return write_all_or_nothing([(directory / "cni-render", binary, 0o755)])


def install(bin_dir: str, shim: bool = True) -> list[Path]:
    """The executables of a node with Python: shim (or launcher), its Python
    fallback, and cni-render-ipam; all written, or none."""
    problem = import_path_problem()
    if problem:
        raise InstallError(problem)
    directory = Path(bin_dir)
    directory.mkdir(parents=True, exist_ok=True)
    libexec = libexec_dir()
    libexec.mkdir(parents=True, exist_ok=True)
    fallback = libexec / "cni-render"
    binary = compile_shim(fallback) if shim else None
    plugin = binary if binary is not None else launcher("cni-render").encode()
    return write_all_or_nothing([
        (fallback, launcher("cni-render").encode(), 0o755),
        (directory / "cni-render", plugin, 0o755),
        (directory / "cni-render-ipam", launcher("cni-render-ipam").encode(), 0o755),
    ])


def run_install(args: argparse.Namespace, stdout: TextIO) -> int:
    """``cni-render install``: exit 0 with what was written, else 1 with why."""
    try:
        if args.build_static_shim:
            written = [build_static_shim(args.build_static_shim)]
        elif args.shim:
            written = install_shim(args.bin_dir, args.shim)
        else:
            written = install(args.bin_dir, shim=not args.no_shim)
    except (InstallError, OSError) as exc:
        sys.stderr.write(f"cni-render install: {exc}\n")
        return 1
    for path in written:
        stdout.write(f"wrote {path}\n")
    return 0
