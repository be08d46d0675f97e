"""The node agent's batch templates (``templates/agent/``), rendered in the
same environment as the pod templates
(:func:`cni_render.datapath.environment.template_environment`): sandboxed,
StrictUndefined, and every ``{{ }}`` value one safe token; the rendered batch
is checked like a pod batch (:mod:`cni_render.datapath.checks`), its nft
statements confined to the agent's own table."""

from __future__ import annotations

from typing import Any

import jinja2

from cni_render.cni.errors import TemplateError
from cni_render.cni.resources import templates_root
from cni_render.datapath.checks import check_batch
from cni_render.datapath.environment import template_environment

NODE_SET = "agent"
ROUTES = "routes.ip.j2"
MASQUERADE = "masquerade.nft.j2"
# The nft tables the agent's templates may touch: node/masquerade.py's TABLE.
AGENT_TABLES = frozenset({"cni-render-node"})


def _source(name: str) -> str:
    path = templates_root().joinpath(NODE_SET).joinpath(name)
    if not path.is_file():
        raise jinja2.TemplateNotFound(name)
    return path.read_text(encoding="utf-8")


_ENVIRONMENT = template_environment(jinja2.FunctionLoader(_source))


def render_node_template(name: str, context: dict[str, Any]) -> str:
    """Render ``templates/agent/<name>`` and check the batch; TemplateError
    naming the file otherwise."""
    try:
        text = _ENVIRONMENT.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{NODE_SET}/{name}:{exc.lineno}: {exc.message}") from exc
    except Exception as exc:  # undefined variable, unsafe value
        raise TemplateError(f"{NODE_SET}/{name}: {exc}") from exc
    check_batch(name, text, f"{NODE_SET}/{name}", nft_tables=AGENT_TABLES)
    return text
