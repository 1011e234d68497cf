"""Extras for ``ape console --network ethereum:local:foundry``.

The deployed contracts come bound to readable names (``opg``, ``escrow``, ``staking``, ``distributor``) from
``deployments/<chainId>.json``, with a few helpers:

    fund(account, opg_amount)          send OPG (and 1 ETH on the devnet) from the treasury to an account
    credits(payer)                     a payer's credits, pending withdrawal, and spent per known node
    node_info(node)                    role, stake, unbonding, jail and endpoint of a node or verifier
    deposit(account, opg_amount)       approve and deposit credits for ``account``
"""

from __future__ import annotations

OPG_UNIT = 10**18


def ape_init_extras(chain, project, accounts, networks):
    from offchain.deployments import load_deployment

    try:
        deployment = load_deployment(chain_id=chain.chain_id)
    except FileNotFoundError as exc:
        print(f"[opg] {exc}")
        return {}

    at = {name: project.get_contract(name).at(deployment.address(name)) for name in deployment.contracts}
    opg, escrow, staking, distributor = (
        at["OPG"],
        at["CreditEscrow"],
        at["NodeStaking"],
        at["RewardDistributor"],
    )
    treasury_address = distributor.treasury()

    def treasury():
        for account in getattr(accounts, "test_accounts", accounts):
            if account.address == treasury_address:
                return account
        raise RuntimeError("the treasury is not a local test account; fund from it yourself")

    def fund(account, opg_amount: float = 10_000):
        """Send ``opg_amount`` OPG (and 1 ETH on the devnet) from the treasury to ``account``."""
        source = treasury()
        if chain.chain_id == 31337:
            source.transfer(account, 10**18)
        opg.transfer(account, int(opg_amount * OPG_UNIT), sender=source)
        return opg.balanceOf(account) / OPG_UNIT

    def deposit(account, opg_amount: float):
        """Approve and deposit ``opg_amount`` OPG of credits for ``account``."""
        amount = int(opg_amount * OPG_UNIT)
        opg.approve(escrow, amount, sender=account)
        escrow.deposit(amount, sender=account)
        return credits(account)

    def credits(payer):
        """The payer's credits, its pending withdrawal, and what it has paid each node that settled with it."""
        address = getattr(payer, "address", payer)
        pending = escrow.withdrawal_of(address)
        nodes = set()
        for log in escrow.ClaimSettled.range(deployment.start_block, chain.blocks.head.number + 1, search_topics={"payer": address}):
            nodes.add(log.node)
        return {
            "credits_opg": escrow.balance_of(address) / OPG_UNIT,
            "withdrawal_pending_opg": pending.amount / OPG_UNIT,
            "withdrawal_ready_at": pending.ready_at,
            "spent_opg": {node: escrow.spent(address, node) / OPG_UNIT for node in sorted(nodes)},
        }

    def node_info(node):
        """Role, stake, unbonding, jail and endpoint of a registered account."""
        address = getattr(node, "address", node)
        n = staking.nodes(address)
        return {
            "role": {0: "none", 1: "inference", 2: "verifier"}[n.role],
            "active": staking.is_active(address),
            "jailed": n.jailed,
            "stake_opg": n.stake / OPG_UNIT,
            "unbonding_opg": n.unbonding / OPG_UNIT,
            "unbond_ready_at": n.unbond_ready_at,
            "endpoint": staking.endpoint(address),
            "claimable_opg": distributor.claimable_of(address) / OPG_UNIT,
        }

    print(f"[opg] chain {chain.chain_id}: opg, escrow, staking, distributor; helpers fund, deposit, credits, node_info")
    return {
        "deployment": deployment,
        "opg": opg,
        "escrow": escrow,
        "staking": staking,
        "distributor": distributor,
        "fund": fund,
        "deposit": deposit,
        "credits": credits,
        "node_info": node_info,
        "OPG_UNIT": OPG_UNIT,
    }
