"""The only side effects on the plugin's path: commands run (``ip -batch``,
``nft -f``, sysctl writes, delegated plugins) with deadlines, netlink reads,
entering namespaces, file locks, the crash-consistent writer and the call
log. May import :mod:`cni_render.cni` (its errors) and nothing else of
cni_render.
"""
