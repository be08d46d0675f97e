"""CNI errors: one class per spec error code, turned into JSON in one place.

Every failure the plugin reports is a :class:`CniError`. ``to_json`` is the
only place an error becomes the ``{"cniVersion", "code", "msg", "details"}``
document the spec asks for on stdout.
"""

from __future__ import annotations

import json


class CniError(Exception):
    """Base class: a CNI error with a spec code, a short message and details."""

    code = 999
    msg = "Plugin error"

    def __init__(self, details: str, *, code: int | None = None, msg: str | None = None):
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code
        if msg is not None:
            self.msg = msg

    def to_json(self, cni_version: str) -> str:
        return json.dumps(
            {"cniVersion": cni_version, "code": self.code, "msg": self.msg, "details": self.details}
        )

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}"


class IncompatibleVersion(CniError):
    code, msg = 1, "Incompatible CNI version"


class UnsupportedField(CniError):
    code, msg = 2, "Unsupported field in network configuration"


class UnknownContainer(CniError):
    code, msg = 3, "Container unknown or does not exist"


class InvalidEnvironment(CniError):
    code, msg = 4, "Invalid necessary environment variables"


class IoFailure(CniError):
    code, msg = 5, "I/O failure"


class DecodeFailure(CniError):
    code, msg = 6, "Failed to decode content"


class InvalidConfig(CniError):
    code, msg = 7, "Invalid network config"


class TryAgainLater(CniError):
    code, msg = 11, "Try again later"


class NotAvailable(CniError):
    code, msg = 50, "The plugin is not available"


# Plugin-specific codes (100+), documented in the README.


class ApplyFailed(CniError):
    """An ``ip -batch`` line (or a sysctl) failed while changing the system."""

    code, msg = 100, "Applying the rendered batch failed"

    def __init__(self, details: str, *, line_number: int = 0, line: str = "", reason: str = ""):
        super().__init__(details)
        self.line_number = line_number
        self.line = line
        self.reason = reason


class AddressUnavailable(CniError):
    """IPAM could not give an address: pool exhausted, requested address taken."""

    code, msg = 101, "No address available"


class InterfaceConflict(CniError):
    """The pod interface (or the host end's name) already exists."""

    code, msg = 102, "Interface already exists"


class StateMismatch(CniError):
    """CHECK found that the system differs from the previous result."""

    code, msg = 103, "Network state does not match the previous result"


class DelegateFailed(CniError):
    """A delegated plugin (IPAM) failed without a usable CNI error of its own."""

    code, msg = 104, "Delegated plugin failed"


class TemplateError(InvalidConfig):
    """A template could not be compiled or rendered (code 7, names file and line)."""

    msg = "Template error"


class LostNamespace(BaseException):
    """A thread could not return from a pod's network namespace to its own.

    system.in_netns has parked the thread in a fresh, empty namespace; not an
    Exception, so no ``except Exception`` goes on working in it and no
    rollback runs (the runtime's DEL cleans up). dispatch turns it into a
    CNI error; the daemon then fails the call with code 11 and retires the
    worker.
    """

    msg = "Fatal plugin error"
    code = 999
