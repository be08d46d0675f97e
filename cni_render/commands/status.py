"""STATUS: exit 0 when an ADD would work, else code 50.

Cheap and free of side effects (kubelet asks every 5 s through containerd):
no template is compiled and nothing is changed.
"""

from __future__ import annotations

from cni_render.cni.errors import CniError, NotAvailable
from cni_render.commands import Invocation
from cni_render.datapath.template_sets import missing_required_templates
from cni_render.host import system


def run(inv: Invocation) -> None:
    problems = [f"{name} not found" for name in ("ip",) if not system.find_binary(name)]
    state_problem = system.writable_dir_problem(inv.config.state_dir)
    if state_problem:
        problems.append(f"state directory is not writable: {state_problem}")
    problems.extend(missing_required_templates(inv.config.mode, inv.config.template_dir))
    try:
        inv.ipam().status()
    except CniError as exc:
        problems.append(str(exc))
    if problems:
        raise NotAvailable("; ".join(problems))
