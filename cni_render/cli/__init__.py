"""``cni-render`` run by a person (no CNI_COMMAND in the environment): the
operator's commands (render, validate, templates, status, node, daemon,
install), the demo and the sandbox (a throwaway node) they and the tests
share. Each command's work lives in its own module; :mod:`.main` parses the
arguments. The top layer under :mod:`cni_render.entry`: may import every
other layer, and none imports it.
"""
