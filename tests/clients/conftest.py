"""Real clients (root): libcni, the Go library containerd and CRI-O use, and
podman call the plugin inside throwaway node namespaces."""

from node_fixtures import launcher_dir, machine_untouched, netns_ok, node, plain_node  # noqa: F401  (fixtures)
