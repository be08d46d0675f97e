"""Template overrides from the ConfigMap ``cni-render-templates``.

The ConfigMap's keys are template file names (``add-host.ip.j2``) and its
values their text, exactly what an operator would put in a ``templateDir``.
A new set is written to a staging directory, checked the way ``cni-render
validate`` checks a set (schema, every template compiles, every template
renders for a sample pod in every spec version), and only when all of that
passes does it become active: ``/run/cni-render/templates`` (the conflist's
``templateDir``) is a symlink to one complete version directory, replaced by
a rename, so the daemon reads the old set or the new one, never a mix. A
broken set is refused and the last good one keeps serving.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from cni_render.cni.config import plugin_entry
from cni_render.cni.errors import CniError
from cni_render.datapath.validate import validate
from cni_render.node import files
from cni_render.node.settings import TEMPLATES_CONFIGMAP

FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\.j2")
VERSIONS_DIR_SUFFIX = ".d"
EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()[:16]


@dataclass(frozen=True)
class Activation:
    """What became of a ConfigMap's templates."""

    digest: str
    changed: bool
    problems: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return bool(self.problems)


def digest_of(templates: Mapping[str, str]) -> str:
    hashed = hashlib.sha256()
    for name in sorted(templates):
        hashed.update(name.encode() + b"\0" + templates[name].encode() + b"\0")
    return hashed.hexdigest()[:16] if templates else EMPTY_DIGEST


def name_problems(templates: Mapping[str, str]) -> list[str]:
    return [
        f"key {name!r} is not a template file name (letters, digits, '._-', ending in .j2)"
        for name in sorted(templates)
        if not FILE_NAME.fullmatch(name)
    ]


# validate(conflist, template dir) -> problems (empty when the set passes)
Validator = Callable[[Mapping[str, Any], str], list[str]]


def validate_set(conflist: Mapping[str, Any], template_dir: str) -> list[str]:
    """The problems :func:`cni_render.datapath.validate.validate` finds in the
    conflist's cni-render entry with these templates."""
    try:
        document = plugin_entry(dict(conflist), "the node's conflist")
    except CniError as exc:
        return [f"conflist: {exc.details}"]
    return [str(check) for check in validate(document, template_dir).problems]


class TemplateOverrides:
    """The active override directory and the versions behind it."""

    def __init__(self, active: str, validator: Validator = validate_set):
        self.active = active
        self.versions = active + VERSIONS_DIR_SUFFIX
        self.validator = validator

    def current_digest(self) -> str | None:
        try:
            return os.path.basename(os.readlink(self.active))
        except OSError:
            return None

    def ensure(self) -> None:
        """An active directory exists (empty: the built-in templates serve)."""
        if self.current_digest() is None:
            self._activate(self._write_version(EMPTY_DIGEST, {}))

    def apply(self, templates: Mapping[str, str], conflist: Mapping[str, Any]) -> Activation:
        """Check ``templates`` against ``conflist`` and make them active if they pass."""
        digest = digest_of(templates)
        if digest == self.current_digest():
            return Activation(digest, changed=False)
        problems = name_problems(templates)
        if problems:
            return Activation(digest, changed=False, problems=tuple(problems))
        staging = self._write_version(f".staging-{digest}", templates)
        try:
            problems = self._check(staging, conflist)
            if problems:
                return Activation(digest, changed=False, problems=tuple(problems))
            final = os.path.join(self.versions, digest)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._activate(final)
        return Activation(digest, changed=True)

    def _check(self, staging: str, conflist: Mapping[str, Any]) -> list[str]:
        problems = self.validator(conflist, staging)
        shown = f"{TEMPLATES_CONFIGMAP}/"
        return [problem.replace(staging + os.sep, shown) for problem in problems]

    def _write_version(self, name: str, templates: Mapping[str, str]) -> str:
        directory = os.path.join(self.versions, name)
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, mode=0o755)
        stamp = self._newer_than_active()
        for file_name, text in templates.items():
            path = os.path.join(directory, file_name)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.utime(path, ns=(stamp, stamp))
        return directory

    def _newer_than_active(self) -> int:
        """A modification time later than any active file's: the daemon's
        template cache compares times, and must see every new file as new."""
        newest = time.time_ns()
        if os.path.isdir(self.active):
            for entry in os.scandir(self.active):
                newest = max(newest, entry.stat().st_mtime_ns + 1_000_000)
        return newest

    def _activate(self, directory: str) -> None:
        previous = self.current_digest()
        if os.path.isdir(self.active) and not os.path.islink(self.active):
            os.rename(self.active, os.path.join(self.versions, f".replaced-{time.time_ns()}"))
        files.replace_symlink(self.active, os.path.relpath(directory, os.path.dirname(self.active)))
        # the previous version stays one more round: a call may be reading it
        self._prune(keep={os.path.basename(directory), previous or ""})

    def _prune(self, keep: set[str]) -> None:
        for entry in os.scandir(self.versions):
            if entry.name not in keep and not entry.name.startswith(".staging-"):
                shutil.rmtree(entry.path, ignore_errors=True)
