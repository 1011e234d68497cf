"""The scheme registry: scheme name -> its one payload model and its client, server and facilitator implementations.

Like x402's own ``x402Client.register`` / ``x402ResourceServer.register`` / ``x402Facilitator.register``, a scheme's
parts are found by registration, keyed by their ``scheme`` attribute (x402's ``SchemeNetwork*`` protocols):

    from offchain.schemes import registry

    registry.declare("opg-credit", CreditPayload)        # once, next to the payload model

    @registry.server                                     # the node's side (offer, admission, charge)
    class CreditServer: scheme = "opg-credit"; ...

    @registry.facilitator                                # the relayer's /verify and /settle
    class CreditFacilitator: scheme = "opg-credit"; ...

Each role iterates its part: the node's 402 offer and admission (``registry.servers()``), the client's choice
(``registry.clients()``), the relayer's ``/supported``, ``/verify`` and ``/settle`` (``registry.facilitators()``).
Registration order is preference order (``opg-credit`` before ``exact``). A built-in scheme's client and server
modules (``offchain.schemes.<package>.client`` / ``.server``) are imported on first use of that role, so importing
the registry (or a payload model) pulls in neither the node nor the client.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["SchemeEntry", "SchemeRegistry", "UnknownScheme", "registry"]

T = TypeVar("T", bound=type)
ROLES = ("client", "server", "facilitator")
# built-in schemes: name -> package under offchain.schemes whose <role>.py registers that role's part
BUILTIN = {"opg-credit": "credit", "exact": "exact"}


class UnknownScheme(KeyError):
    """No scheme (or no part for a role) of that name is registered."""


@dataclass
class SchemeEntry:
    """One scheme: its payload model (``paymentPayload.payload``) and the classes registered for each role."""

    name: str
    payload: type[BaseModel]
    client: type | None = None
    server: type | None = None
    facilitator: type | None = None


class SchemeRegistry:
    def __init__(self, builtin: dict[str, str] | None = None):
        self._entries: dict[str, SchemeEntry] = {}
        self._builtin = dict(builtin or {})
        self._loaded: set[str] = set()

    # Registration ----------------------------------------------------------------------------------------------
    def declare(self, name: str, payload: type[BaseModel]) -> SchemeEntry:
        """Declare scheme ``name`` with its payload model (idempotent for the same model)."""
        entry = self._entries.get(name)
        if entry is not None:
            if entry.payload is not payload:
                raise ValueError(f"scheme {name!r} is already declared with payload {entry.payload.__name__}")
            return entry
        entry = self._entries[name] = SchemeEntry(name, payload)
        return entry

    def _register(self, role: str, cls: T) -> T:
        name = getattr(cls, "scheme", None)
        if not isinstance(name, str) or name not in self._entries:
            raise UnknownScheme(f"{cls.__name__}.scheme {name!r} is not a declared scheme (declare it first)")
        setattr(self._entries[name], role, cls)
        return cls

    def client(self, cls: T) -> T:
        """Class decorator: ``cls`` is the client side of ``cls.scheme`` (an x402 ``SchemeNetworkClient``)."""
        return self._register("client", cls)

    def server(self, cls: T) -> T:
        """Class decorator: ``cls`` is the node (resource server) side of ``cls.scheme``."""
        return self._register("server", cls)

    def facilitator(self, cls: T) -> T:
        """Class decorator: ``cls`` is the facilitator side of ``cls.scheme`` (an x402 ``SchemeNetworkFacilitator``)."""
        return self._register("facilitator", cls)

    def remove(self, name: str) -> None:
        """Forget scheme ``name`` (tests that register a scheme of their own)."""
        self._entries.pop(name, None)

    # Lookup ----------------------------------------------------------------------------------------------------
    def _load(self, role: str) -> None:
        if role in self._loaded or role == "facilitator":  # facilitators live in the relayer and register there
            return
        self._loaded.add(role)
        for package in self._builtin.values():
            importlib.import_module(f"{__package__}.{package}.{role}")

    def names(self) -> list[str]:
        """Every declared scheme, in preference order."""
        return list(self._entries)

    def entry(self, name: str) -> SchemeEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownScheme(name) from None

    def payload_model(self, name: str) -> type[BaseModel]:
        return self.entry(name).payload

    def parse(self, name: str, data: Any) -> BaseModel:
        """``paymentPayload.payload`` validated as scheme ``name``'s model (pydantic ValidationError if it is not)."""
        return self.entry(name).payload.model_validate(data)

    def part(self, role: str, name: str) -> type:
        """The class registered for ``role`` of scheme ``name`` (UnknownScheme if none)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        self._load(role)
        cls = getattr(self.entry(name), role)
        if cls is None:
            raise UnknownScheme(f"no {role} registered for scheme {name!r}")
        return cls

    def parts(self, role: str) -> list[tuple[str, type]]:
        """``(name, class)`` of every scheme with a ``role`` part, in preference order."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        self._load(role)
        return [(e.name, getattr(e, role)) for e in self._entries.values() if getattr(e, role) is not None]

    def clients(self) -> list[tuple[str, type]]:
        return self.parts("client")

    def servers(self) -> list[tuple[str, type]]:
        return self.parts("server")

    def facilitators(self) -> list[tuple[str, type]]:
        return self.parts("facilitator")


registry = SchemeRegistry(BUILTIN)
