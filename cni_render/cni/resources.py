"""Package data: the built-in template sets and the JSON Schemas.

``templates/`` and ``schemas/`` sit at the top of the repository; an install
places them in the package as ``cni_render.templates`` and
``cni_render.schemas``, read here with ``importlib.resources``. Only a source
checkout that was never installed falls back to the directories next to the
package.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def _package_root(package: str, checkout_dir: str) -> Traversable:
    try:
        return files(package)
    except ModuleNotFoundError:
        return _CHECKOUT / checkout_dir


def templates_root() -> Traversable:
    return _package_root("cni_render.templates", "templates")


def schemas_root() -> Traversable:
    return _package_root("cni_render.schemas", "schemas")


def read_schema(name: str) -> bytes:
    return schemas_root().joinpath(name).read_bytes()
