"""The CNI protocol, with no side effect: the request (CNI_* environment), the
network config and its JSON Schema, spec versions and result conversion,
the spec's error codes, the outcome of a call, and the package data that
holds the schemas and templates. Imports nothing of cni_render: every other
layer may import it.
"""
