"""OPG token: Metadata, supply, no minting."""

from __future__ import annotations

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak
from opg_kit import OPG, ZERO

pytestmark = pytest.mark.usefixtures("_session_fixtures_first")


TOTAL_SUPPLY = 10**27


def test_metadata_is_opengradient_opg_18_decimals(opg):
    assert opg.name() == "OpenGradient"
    assert opg.symbol() == "OPG"
    assert opg.decimals() == 18


def test_total_supply_is_one_billion_opg(opg):
    assert opg.totalSupply() == TOTAL_SUPPLY == 1_000_000_000 * OPG
    assert opg.TOTAL_SUPPLY() == TOTAL_SUPPLY


def test_whole_supply_is_minted_to_genesis_at_deployment(project, deployer, other, chain):
    token = project.OPG.deploy(other.address, sender=deployer)
    assert token.totalSupply() == TOTAL_SUPPLY
    assert token.balanceOf(other.address) == TOTAL_SUPPLY
    assert token.balanceOf(deployer) == 0
    receipt = chain.provider.get_receipt(token.txn_hash)
    mints = token.Transfer.from_receipt(receipt)
    assert len(mints) == 1
    assert mints[0].sender == ZERO
    assert mints[0].receiver == other.address
    assert mints[0].value == TOTAL_SUPPLY


def test_deployment_leaves_no_owner_and_no_minter(project, deployer, other, chain):
    token = project.OPG.deploy(other.address, sender=deployer)
    receipt = chain.provider.get_receipt(token.txn_hash)
    ownership = token.OwnershipTransferred.from_receipt(receipt)
    assert ownership[-1].new_owner == ZERO
    roles = token.RoleMinterChanged.from_receipt(receipt)
    assert roles[-1].minter == deployer.address
    assert not roles[-1].status
    # Storage: ownable.owner is slot 0, erc20.is_minter is the mapping at slot 4.
    assert int.from_bytes(chain.provider.get_storage(token.address, 0), "big") == 0
    minter_slot = int.from_bytes(keccak(encode(["address", "uint256"], [deployer.address, 4])), "big")
    assert int.from_bytes(chain.provider.get_storage(token.address, minter_slot), "big") == 0


def test_no_mint_or_ownership_function_is_exported(opg):
    names = {abi.name for abi in opg.contract_type.abi if abi.type == "function"}
    for forbidden in ("mint", "set_minter", "is_minter", "owner", "transfer_ownership", "renounce_ownership"):
        assert forbidden not in names
    assert {"transfer", "transferFrom", "approve", "burn", "burn_from", "permit", "eip712Domain"} <= names


def test_calling_mint_selector_reverts_unknown_function(opg, holder):
    data = keccak(text="mint(address,uint256)")[:4] + encode(["address", "uint256"], [holder.address, OPG])
    with ape.reverts("OPG: unknown function"):
        holder.account.transfer(opg, 0, data=data)
    assert opg.totalSupply() == TOTAL_SUPPLY


def test_genesis_zero_address_reverts(project, deployer):
    with ape.reverts("OPG: genesis is the zero address"):
        project.OPG.deploy(ZERO, sender=deployer)
