"""How a call reaches the work fast: the node daemon (``daemon``, the master;
``worker``, the pre-imported processes that run the calls), the trust it places
in a caller (``peer``: peer credentials, pidfd, the caller's root and netns),
the wire protocol both ways (``wire``), the Python client (``client``) and the C
shim (``shim/``), and the installer that writes them into the runtime's plugin
directory (``install``). May import the layers below it:
:mod:`cni_render.commands`, :mod:`cni_render.datapath`, :mod:`cni_render.ipam`,
:mod:`cni_render.host` and :mod:`cni_render.cni`; never the agent or the CLI.
"""
