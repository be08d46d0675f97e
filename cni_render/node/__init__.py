"""The node agent: ``cni-render node``, the DaemonSet container's command.
May import every layer below the CLI (:mod:`cni_render.fastpath` to install
and run the daemon, :mod:`cni_render.datapath` to validate and render,
:mod:`cni_render.host` for its side effects); never :mod:`cni_render.cli`.

On each node, in this order: the static shim into the runtime's plugin
directory (:mod:`cni_render.fastpath.install`), the daemon started and answering
STATUS (:mod:`.daemon_child`), and only then the conflist
(:mod:`.conflist`) from the Node's ``spec.podCIDRs``. Then it keeps the node
right: host-gw routes to the other nodes' pod CIDRs (:mod:`.routes`), egress
masquerade (:mod:`.masquerade`), template overrides from a ConfigMap
(:mod:`.overrides`), metrics (:mod:`.metrics`), and a periodic re-check of
the shim and the conflist (:mod:`.agent`).

Planning and rendering are pure (node lists in, batches out); the commands
run through :mod:`cni_render.host.system`, files are written by :mod:`.files`,
and the Kubernetes API is only reached from :mod:`.cluster`.
"""
