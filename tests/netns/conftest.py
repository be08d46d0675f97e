"""Namespace tests (root): each runs the plugin, the daemon or the agent inside a
throwaway node namespace with pods as further namespaces; the machine's own
links are checked unchanged after the run and no namespace is left."""

from node_fixtures import launcher_dir, machine_untouched, netns_ok, node, plain_node  # noqa: F401  (fixtures)
