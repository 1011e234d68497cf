"""Extras for ``ape console`` on a running chain: ``make console``, i.e.
``APE_FOUNDRY_HOST=http://127.0.0.1:8545 ape console --network ethereum:local:foundry`` for the devnet ``make demo``
leaves running (without ``APE_FOUNDRY_HOST``, ape-config's ``host: auto`` gives the console a private, empty anvil).

The deployed contracts come bound to readable names (``opg``, ``escrow``, ``staking``, ``distributor``) from
``deployments/<chainId>.json`` (or ``$OPG_DEPLOYMENTS_DIR``), after checking that the connected chain has code at
their addresses; the banner lists them with the OPG each holds. Helpers:

    fund(account, opg_amount)          send OPG (and 1 ETH on the devnet) from the treasury to an account
    credits(payer)                     a payer's credits (available too), pending withdrawal, and spent per known node
    node_info(node)                    role, stake, warm stake, vote weight, unbonding, jail and endpoint of an account
    deposit(account, opg_amount)       approve and deposit credits for ``account``
"""

from __future__ import annotations

from eth_utils import to_checksum_address

from offchain.sdk.constants import ROLE_NAMES
from offchain.sdk.contracts import BatchSettled

OPG_UNIT = 10**18


def ape_init_extras(chain, project, accounts, networks):
    from offchain.ape_deploy import CONSOLE_HINT, missing_code, private_chain_reason, provider_uri, started_by_ape
    from offchain.deployments import deployment_path, load_deployment

    try:
        deployment = load_deployment(chain_id=chain.chain_id)
    except FileNotFoundError as exc:
        print(f"[opg] {exc}")
        return {}
    absent = missing_code(deployment, chain.provider.get_code)
    if absent:
        where = f"chain {chain.chain_id} at {provider_uri(chain.provider)}"
        if started_by_ape(chain.provider):
            why = f"{private_chain_reason(chain.provider)}; open the console on the running devnet: {CONSOLE_HINT}"
        else:
            why = f"{deployment_path(chain.chain_id)} is stale (was the chain restarted?): redeploy with `make deploy`"
        print(f"[opg] no contract code at {absent[0]} {deployment.address(absent[0])} on {where}: {why}; "
              "nothing bound")
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

    def paid_nodes(address: str) -> set[str]:
        """The nodes ``address`` paid, from the ``BatchSettled`` logs (decoded by the SDK's ``BatchSettled``)."""
        payer = to_checksum_address(address)
        nodes = set()
        for log in escrow.BatchSettled.range(deployment.start_block, chain.blocks.head.number + 1):
            args = {k: getattr(log, k) for k in ("receipts_root", "submitter", "amount", "settled", "runs")}
            nodes |= {c.node for c in BatchSettled.from_args(args).claims if c.payer == payer}
        return nodes

    def credits(payer):
        """The payer's credits (and what a withdrawal does not hold), its pending withdrawal, and what it has
        paid each node that settled with it."""
        address = getattr(payer, "address", payer)
        pending = escrow.withdrawal_of(address)
        thaw = escrow.thaw_period()
        return {
            "credits_opg": escrow.balance_of(address) / OPG_UNIT,
            "available_opg": escrow.available_of(address) / OPG_UNIT,
            "withdrawal_pending_opg": pending.amount / OPG_UNIT,
            "withdrawal_ready_at": pending.ready_at,
            "withdrawal_expires_at": pending.ready_at + thaw if pending.amount else 0,
            "spent_opg": {node: escrow.spent(address, node) / OPG_UNIT for node in sorted(paid_nodes(address))},
        }

    def node_info(node):
        """Role, stake, warm stake, vote weight, unbonding, jail and endpoint of a registered account."""
        address = getattr(node, "address", node)
        n = staking.nodes(address)
        role = ROLE_NAMES[n.role]
        # Fresh stake turns warm once older than the warm-up (NodeStaking._mature).
        now = chain.blocks.head.timestamp
        fresh = 0 if n.fresh == 0 or now >= n.fresh_since + staking.warmup() else n.fresh
        return {
            "role": role,
            "active": staking.is_active_as(address, n.role) if n.role else False,
            "payable": staking.is_payable(address),
            "jailed": n.jailed,
            "jailed_at": n.jailed_at,
            "restore_stake_opg": n.restore_stake / OPG_UNIT,
            "stake_opg": n.stake / OPG_UNIT,
            "warm_stake_opg": (n.stake - fresh) / OPG_UNIT,
            "vote_weight_opg": staking.vote_weight(address) / OPG_UNIT,
            "unbonding_opg": n.unbonding / OPG_UNIT,
            "unbond_ready_at": n.unbond_ready_at,
            "endpoint": staking.endpoint(address),
            "claimable_opg": distributor.claimable_of(address) / OPG_UNIT,
        }

    source = deployment_path(chain.chain_id)
    print(f"[opg] chain {chain.chain_id} at {provider_uri(chain.provider)}, contracts of {source}:")
    for label, contract in (("opg", opg), ("escrow", escrow), ("staking", staking), ("distributor", distributor)):
        print(f"[opg]   {label:<12} {contract.address}  holds {opg.balanceOf(contract.address) / OPG_UNIT:,.4f} OPG")
    print(f"[opg]   treasury     {treasury_address}  holds {opg.balanceOf(treasury_address) / OPG_UNIT:,.4f} OPG")
    print("[opg] helpers: fund(account, opg), deposit(account, opg), credits(payer), node_info(node)")
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
