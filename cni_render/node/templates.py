"""The node agent's batch templates (``templates/node/``), rendered with the
same strict rules as the pod templates: sandboxed, StrictUndefined, and every
``{{ }}`` value one safe token (:func:`cni_render.datapath.render.batch_token`)."""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cni_render.cni.errors import TemplateError
from cni_render.cni.resources import templates_root
from cni_render.datapath.filters import FILTERS
from cni_render.datapath.render import batch_token

NODE_SET = "node"
ROUTES = "routes.ip.j2"
MASQUERADE = "masquerade.nft.j2"


def _source(name: str) -> str:
    path = templates_root().joinpath(NODE_SET).joinpath(name)
    if not path.is_file():
        raise jinja2.TemplateNotFound(name)
    return path.read_text(encoding="utf-8")


_ENVIRONMENT = ImmutableSandboxedEnvironment(
    loader=jinja2.FunctionLoader(_source),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    finalize=batch_token,
)
_ENVIRONMENT.filters.update(FILTERS)


def render_node_template(name: str, context: dict[str, Any]) -> str:
    """Render ``templates/node/<name>``; TemplateError naming the file otherwise."""
    try:
        return _ENVIRONMENT.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{NODE_SET}/{name}:{exc.lineno}: {exc.message}") from exc
    except Exception as exc:  # undefined variable, unsafe value
        raise TemplateError(f"{NODE_SET}/{name}: {exc}") from exc
