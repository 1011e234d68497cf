"""OPG amounts for the payer's SDK and CLI: the shared core's ``offchain.amounts``."""

from ..amounts import WEI_PER_OPG, format_opg, parse_opg

__all__ = ["WEI_PER_OPG", "format_opg", "parse_opg"]
