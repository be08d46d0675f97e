"""The CNI spec versions cni-render speaks: the one constant everything uses."""

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT_VERSION = "1.1.0"
# A config without cniVersion is 0.1.0 (libcni's DecodeVersion).
IMPLICIT_VERSION = "0.1.0"
