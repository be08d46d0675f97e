"""Pure: from a request and a config to the batches a pod needs. The plan
(names, addresses, routes), the template sets and the one Jinja environment
factory, the filters, rendering, the checks on what a rendered batch may
contain, what CHECK expects to find, the preview and the validation of a
template set. Touches nothing on the machine. May import
:mod:`cni_render.cni` and :mod:`cni_render.ipam` (a preview allocates from an
in-memory store); never :mod:`cni_render.host`.
"""
