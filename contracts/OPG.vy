# pragma version ~=0.4.3
# pragma nonreentrancy on
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title OPG, the OpenGradient token
@custom:contract-name OPG
@license GNU Affero General Public License v3.0 only
@notice ERC-20 "OpenGradient" / "OPG", 18 decimals. The whole supply,
        1,000,000,000 OPG, is minted once at deployment to the genesis
        (treasury) address; nobody can ever mint again (the token has
        no owner and no minter after construction). Holders may burn.
        Signed approvals: EIP-2612 `permit`; gasless transfers:
        EIP-3009 (`transferWithAuthorization` with v, r, s or with a
        bytes signature, `receiveWithAuthorization`,
        `cancelAuthorization`); EIP-712 domain "OpenGradient" "1"
        exposed through EIP-5267 `eip712Domain`. That makes every
        stock x402 "exact" client able to pay in OPG.
"""

from ethereum.ercs import IERC20

implements: IERC20

from ethereum.ercs import IERC20Detailed

implements: IERC20Detailed

from snekmate.auth import ownable

initializes: ownable

from snekmate.tokens import erc20

initializes: erc20[ownable := ownable]

from .modules import eip3009

initializes: eip3009[erc20 := erc20]

exports: (
    erc20.totalSupply,
    erc20.balanceOf,
    erc20.allowance,
    erc20.name,
    erc20.symbol,
    erc20.decimals,
    erc20.transfer,
    erc20.transferFrom,
    erc20.approve,
    erc20.burn,
    erc20.burn_from,
    erc20.permit,
    erc20.nonces,
    erc20.DOMAIN_SEPARATOR,
    erc20.eip712Domain,
    eip3009.transferWithAuthorization,
    eip3009.receiveWithAuthorization,
    eip3009.cancelAuthorization,
    eip3009.authorizationState,
    eip3009.TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
    eip3009.RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
    eip3009.CANCEL_AUTHORIZATION_TYPEHASH,
)


# @dev The fixed supply: 1,000,000,000 OPG with 18 decimals.
TOTAL_SUPPLY: public(constant(uint256)) = 10**27


@deploy
def __init__(genesis: address):
    """
    @dev Mints the whole supply to `genesis` and leaves the token
         without owner or minter.
    @param genesis The treasury address receiving 1e27 base units.
    """
    assert genesis != empty(address), "OPG: genesis is the zero address"
    ownable.__init__()
    erc20.__init__("OpenGradient", "OPG", 18, "OpenGradient", "1")
    eip3009.__init__()
    erc20._mint(genesis, TOTAL_SUPPLY)
    # No minter and no owner ever again: the supply is fixed.
    erc20.is_minter[msg.sender] = False
    log erc20.RoleMinterChanged(minter=msg.sender, status=False)
    ownable._transfer_ownership(empty(address))


@external
def __default__():
    """
    @dev Dispatches the bytes-signature overload of EIP-3009
         `transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)`,
         which Vyper cannot declare next to the (v, r, s) one.
         Any other call data is refused.
    """
    assert len(msg.data) >= 4, "OPG: unknown function"
    assert (
        convert(slice(msg.data, 0, 4), bytes4) == eip3009.TRANSFER_WITH_AUTHORIZATION_BYTES_SELECTOR
    ), "OPG: unknown function"
    eip3009._transfer_with_authorization_calldata()
