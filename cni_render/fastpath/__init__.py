"""How a call reaches the work fast: the node daemon (a master and
pre-imported worker processes), the trust it places in a caller (peer
credentials, pidfd, the caller's root and netns), the wire protocol both ways,
the Python client and the C shim (``shim/``), and the installer that writes
them into the runtime's plugin directory. May import the layers below it:
:mod:`cni_render.commands`, :mod:`cni_render.datapath`, :mod:`cni_render.ipam`,
:mod:`cni_render.host` and :mod:`cni_render.cni`; never the agent or the CLI.
"""
