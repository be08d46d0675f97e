"""Template overrides from the ConfigMap ``cni-render-templates``.

The ConfigMap's keys are template file names (``add-host.ip.j2``) and its
values their text, exactly what an operator would put in a ``templateDir``.
A new set is written to a staging directory, checked the way ``cni-render
validate`` checks a set (schema, every template compiles, every template
renders for a sample pod in every spec version into batches that hold only
what :mod:`cni_render.datapath.checks` allows), and only when all of that
passes does it become active: ``/run/cni-render/templates`` (the conflist's
``templateDir``) is a symlink to one complete version directory, replaced by
a rename, so the daemon reads the old set or the new one, never a mix. A
broken set is refused and the last good one keeps serving.

The check runs in a child process with CPU, memory and wall-clock limits
(:class:`Limits`, 5 s and 256 MiB by default): a template that loops or
grows without end is refused as a problem naming the limit, and the agent
goes on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import resource
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from cni_render.cni.config import plugin_entry
from cni_render.cni.errors import CniError
from cni_render.datapath.validate import validate
from cni_render.host import system
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


@dataclass(frozen=True)
class Limits:
    """What one validation of an override set may spend. The child sets them
    on itself once its imports are done; ``startup_seconds`` bounds the
    imports (a busy node), the parent's backstop."""

    cpu_seconds: float = 5.0
    memory_bytes: int = 256 * 1024 * 1024
    wall_seconds: float = 5.0
    startup_seconds: float = 30.0

    def describe(self) -> str:
        return f"{self.cpu_seconds:g} s of CPU, {self.memory_bytes >> 20} MiB, {self.wall_seconds:g} s wall-clock"


DEFAULT_LIMITS = Limits()
LIMITS_STEP = "limits"
# The child: the installed package, never a cni_render/ in the agent's working directory.
CHILD_CODE = (
    "import sys; sys.path = [p for p in sys.path if p]; "
    "from cni_render.node.overrides import validate_child_main; sys.exit(validate_child_main())"
)


def validate_set(conflist: Mapping[str, Any], template_dir: str) -> list[str]:
    """The problems :func:`cni_render.datapath.validate.validate` finds in the
    conflist's cni-render entry with these templates, found in a child
    process within :data:`DEFAULT_LIMITS`."""
    return validate_in_child(conflist, template_dir, DEFAULT_LIMITS)


def validate_in_child(conflist: Mapping[str, Any], template_dir: str, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """:func:`validate_here` in a fresh interpreter (spawned: the agent has
    threads) that limits itself; one over a limit is stopped by the kernel
    and its set refused with a problem naming the limit."""
    request = {"conflist": dict(conflist), "template_dir": template_dir, "limits": asdict(limits)}
    try:
        done = system.execute(
            [sys.executable, "-c", CHILD_CODE],
            json.dumps(request).encode(),
            limits.startup_seconds + limits.wall_seconds + 1,
            merge_output=False,
        )
    except system.TimedOut:
        return [f"{LIMITS_STEP}: validating the templates went over the wall-clock limit of {limits.wall_seconds:g} s"]
    except OSError as exc:
        return [f"{LIMITS_STEP}: the validating process could not start: {exc}"]
    if done.status == 0:
        try:
            answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
            return [str(problem) for problem in answer]
        except (ValueError, IndexError):
            pass
    return [_stopped(done.status, done.stderr, limits)]


def _stopped(status: int, stderr: bytes, limits: Limits) -> str:
    if status in (-signal.SIGXCPU, -signal.SIGKILL):
        return f"{LIMITS_STEP}: validating the templates went over the CPU limit of {limits.cpu_seconds:g} s"
    if status == -signal.SIGALRM:
        return f"{LIMITS_STEP}: validating the templates went over the wall-clock limit of {limits.wall_seconds:g} s"
    last = (stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
    return f"{LIMITS_STEP}: the validating process failed (status {status}, within {limits.describe()}): {last}"


def validate_child_main() -> int:
    """The child: read the request on stdin, limit itself, validate, print
    the problems as one JSON line."""
    request = json.load(sys.stdin)
    limits = Limits(**request["limits"])
    _limit_self(limits)
    over_memory = f"{LIMITS_STEP}: validating the templates went over the memory limit of {limits.memory_bytes >> 20} MiB"
    try:
        problems = validate_here(request["conflist"], request["template_dir"])
    except MemoryError:
        problems = [over_memory]
    if any("MemoryError" in problem for problem in problems):  # caught and reported as a template's failure
        problems.insert(0, over_memory)
    print(json.dumps(problems), flush=True)
    return 0


def _limit_self(limits: Limits) -> None:
    """CPU from now (SIGXCPU at the soft limit, SIGKILL one second later),
    address space, and a real-time alarm (SIGALRM's default ends the process)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(used.ru_utime + used.ru_stime + limits.cpu_seconds)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU dumps core by default: not here
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, limits.wall_seconds)


def validate_here(conflist: Mapping[str, Any], template_dir: str) -> list[str]:
    """The problems, found in this process (no limits)."""
    try:
        document = plugin_entry(dict(conflist), "the node's conflist")
    except CniError as exc:
        return [f"conflist: {exc.details}"]
    return [str(check) for check in validate(document, template_dir).problems]


class TemplateOverrides:
    """The active override directory and the versions behind it.

    ``active`` lives on the node's tmpfs (``/run``), which a reboot empties
    while the conflist that names it stays. With ``saved`` (a file on disk
    that survives the reboot), the last good set is written there, whole,
    each time one becomes active, and :meth:`ensure` restores it when the
    active directory is gone, before the daemon answers any ADD: a pod
    created after a reboot gets the operator's datapath, never the built-in
    one by accident."""

    def __init__(self, active: str, validator: Validator = validate_set, saved: str | None = None):
        self.active = active
        self.versions = active + VERSIONS_DIR_SUFFIX
        self.validator = validator
        self.saved = saved

    def current_digest(self) -> str | None:
        try:
            return os.path.basename(os.readlink(self.active))
        except OSError:
            return None

    def ensure(self) -> str:
        """An active directory exists: the one there, else the saved last good
        set, else an empty one (the built-in templates serve). Its digest."""
        current = self.current_digest()
        if current is not None and os.path.isdir(self.active):
            return current
        templates = self._load_saved()
        digest = digest_of(templates)
        self._activate(self._write_version(digest, templates))
        return digest

    def _load_saved(self) -> dict[str, str]:
        """The saved set, or none when there is no saved set or it does not
        hold what its digest says (then the built-in templates serve)."""
        if not self.saved:
            return {}
        content = files.read_bytes(self.saved)
        try:
            document = json.loads(content or b"{}")
            templates = {str(k): str(v) for k, v in (document.get("templates") or {}).items()}
        except (ValueError, AttributeError):
            return {}
        if document.get("digest") != digest_of(templates) or name_problems(templates):
            return {}
        return templates

    def _save(self, templates: Mapping[str, str]) -> None:
        if self.saved:
            document = {"digest": digest_of(templates), "templates": dict(templates)}
            os.makedirs(os.path.dirname(self.saved) or ".", mode=0o700, exist_ok=True)
            files.write_atomically(self.saved, (json.dumps(document, sort_keys=True) + "\n").encode(), 0o600)

    def apply(self, templates: Mapping[str, str], conflist: Mapping[str, Any]) -> Activation:
        """Check ``templates`` against ``conflist`` and make them active if they pass."""
        digest = digest_of(templates)
        if digest == self.current_digest():
            if self.saved and digest_of(self._load_saved()) != digest:
                self._save(templates)  # e.g. the first start with a saved file configured
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
        self._save(templates)
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
