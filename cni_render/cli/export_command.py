"""``cni-render templates export``: the built-in templates, for editing.

One set is written flat (set files and the common ones it uses), so the
directory can be a network's ``templateDir`` as it is; ``--set all`` writes
one such directory per set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TextIO

from cni_render.datapath.render import TemplateSetLoader
from cni_render.datapath.template_sets import SETS


def export(directory: Path, template_set: str, force: bool) -> list[Path]:
    files = TemplateSetLoader(template_set).builtin_files()
    directory.mkdir(parents=True, exist_ok=True)
    existing = [directory / name for name in files if (directory / name).exists()]
    if existing and not force:
        raise FileExistsError(
            f"{', '.join(str(p) for p in existing)} already exist; use --force to overwrite"
        )
    written = []
    for name, source in sorted(files.items()):
        target = directory / name
        target.write_text(source.read_text(encoding="utf-8"))
        os.chmod(target, 0o644)
        written.append(target)
    return written


def run(args: Any, stdout: TextIO) -> int:
    root = Path(args.directory)
    sets = SETS if args.set == "all" else (args.set,)
    try:
        for template_set in sets:
            target = root / template_set if args.set == "all" else root
            for path in export(target, template_set, args.force):
                stdout.write(f"wrote {path}\n")
    except FileExistsError as exc:
        stdout.write(f"cni-render: {exc}\n")
        return 1
    return 0
