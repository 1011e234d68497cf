"""Gas benchmark on a real anvil node: batch settlement versus one x402 "exact" payment.

Starts its own anvil (``node_modules/.bin/anvil`` on a free port, stopped at the end), compiles the contracts with
the pinned vyper (``offchain.devkit.compiler``: ``vyper -p . -f abi,bytecode``), deploys them with web3.py
(``offchain.devkit.devchain.deploy_web3``, the same wiring as ``ape run deploy``) and measures the ``gasUsed`` of mined
transactions:

* ``CreditEscrow.settle_batch`` with 1, 10 and 100 claims, on NEW channels (never settled: ``spent == 0``) and on
  EXISTING channels (settled once before, so ``spent != 0``), for 100 distinct payers paying one node, and for the
  variant 10 payers x 10 nodes (claims ordered by node, so fees are forwarded once per node);
* one ``OPG.transferWithAuthorization`` (EIP-3009, what an x402 "exact" payment executes), with the (v, r, s) and
  the bytes-signature overloads, to a payee that already holds OPG and to a fresh one.

Every measurement starts from the same chain state (``evm_snapshot`` / ``evm_revert``). Then it traces a 1-claim and
a 10-claim batch (``debug_traceTransaction``) and splits the gas of one more claim into calldata, storage, the
ECRECOVER precompile, hashing, logs and the rest, so that a missed target can be explained.

The R1 defence (issue 13: only a facilitator settles at once; anyone else proposes first) is measured too: the
facilitator check on the relayer's path (the cost of its storage read, from the trace of a 1-claim batch: per
batch, nothing per claim or per channel), and a node's own settlement without the relayer (``propose_batch`` plus the
extra of ``settle_batch`` through a proposal), per claim, beside x402's batch contract (119,475 gas to open a
channel). Last, the runtime bytecode size of each deployed contract (``eth_getCode``, immutables included) against
the 24,576-byte limit (EIP-170).

Then it prices the figures (``price()``): per operation and per settled request (the marginal gas of one claim over
the requests it covers), in ETH, in OPG and in USD, on Base (L2 execution gas at ``--gas-price-gwei``, 0.01 gwei by
default, plus Base's L1 data fee) beside the same gas on an L1-style chain (``--l1-gas-price-gwei``, 20 gwei). The
L1 data fee is the OP stack's Fjord formula applied to the signed transactions the bench actually sent
(``eth_getRawTransactionByHash``): their FastLZ-compressed size (``flz_compress_len``, op-geth's algorithm) through
Fjord's linear size estimate, times ``16 x baseFeeScalar x l1BaseFee + blobBaseFeeScalar x blobBaseFee`` / 1e12.
Every price is an ASSUMPTION with a flag (ETH in USD; OPG in USD, since OPG has no market price; the L1 base fee, the
blob base fee and Base's two scalars: read yours from the GasPriceOracle predeploy
0x420000000000000000000000000000000000000F); every cost is linear in each.

    .venv/bin/python bench/gas.py          # prints the tables, writes bench/results/gas.json
    .venv/bin/python bench/gas.py --reprice --gas-price-gwei 0.005 --eth-usd 2500 --opg-usd 0.5
                                           # prices the stored gas.json again at other assumptions (no chain)
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from eth_utils import keccak  # noqa: E402
from web3 import Web3  # noqa: E402

from offchain.daemon.keys import anvil_key  # noqa: E402
from offchain.deployments import Params  # noqa: E402
from offchain.devkit.compiler import _source_hash  # noqa: E402
from offchain.devkit.devchain import Anvil, anvil_binary, deploy_web3, send, transact  # noqa: E402
from offchain.messages import Claim, Domain, Registration, TransferWithAuthorization, Voucher  # noqa: E402

OPG = 10**18
RESULTS = ROOT / "bench" / "results" / "gas.json"
TARGETS = {"marginal_gas_per_claim": 19_000, "gas_per_request": 230}  # Protocol v3 (issue 13); v2 was 18,604 / 201.2
EXACT_PAYMENT_REFERENCE = (65_000, 82_000)  # the figure for one x402 "exact" payment
X402_BATCH_CHANNEL_OPEN = 119_475  # issue 13: gas of opening one channel in x402's batch-settlement contract
REQUESTS_PER_CLAIM = 100  # a voucher covers this many requests in the gas-per-request figure
SIZES = (1, 10, 100)
PRICE = 10**15  # 0.001 OPG per request
GWEI = 10**9


@dataclass(frozen=True)
class Prices:
    """The assumptions the gas is priced at (each a flag of ``main``; every cost is linear in each)."""

    gas_price_gwei: float = 0.01  # Base L2 execution gas price (base fee + tip)
    l1_gas_price_gwei: float = 20.0  # an L1-style chain's gas price, and the L1 base fee in Base's data fee
    blob_base_fee_gwei: float = 1.0  # the L1 blob base fee in Base's data fee (often ~1 wei; 1 gwei: a busy market)
    base_fee_scalar: int = 2_269  # Base's GasPriceOracle baseFeeScalar (assumed)
    blob_base_fee_scalar: int = 1_055_762  # Base's GasPriceOracle blobBaseFeeScalar (assumed)
    eth_usd: float = 3_000.0  # ETH in USD (assumed)
    opg_usd: float = 0.10  # OPG in USD (assumed: OPG has no market price yet)


def flz_compress_len(data: bytes) -> int:
    """Length of ``data`` compressed with FastLZ (level 1) as the OP stack's Fjord L1 fee counts it (op-geth's
    ``FlzCompressLen``, after solady's ``flzCompress``; its match-length quirk kept so that the sizes agree)."""
    n = 0
    table_ = [0] * 8192

    def u24(i: int) -> int:
        return data[i] | (data[i + 1] << 8) | (data[i + 2] << 16)

    def hash24(v: int) -> int:
        return ((2654435769 * v) >> 19) & 0x1FFF

    def literals(r: int) -> int:
        return 0x21 * (r // 0x20) + (r % 0x20 + 1 if r % 0x20 else 0)

    def common(p: int, q: int, end: int) -> int:
        length, end = 0, end - q
        while length < end:
            if data[p + length] != data[q + length]:
                end = 0
            length += 1
        return length

    anchor = 0
    limit = len(data) - 13 if len(data) >= 13 else 0
    ip = 2
    while ip < limit:
        while True:
            seq = u24(ip)
            h = hash24(seq)
            ref = table_[h]
            table_[h] = ip
            distance = ip - ref
            if ip >= limit:
                break
            ip += 1
            if distance <= 0x1FFF and seq == u24(ref):
                break
        if ip >= limit:
            break
        ip -= 1
        if ip > anchor:
            n += literals(ip - anchor)
        length = common(ref + 3, ip + 3, limit + 9)
        n += 3 * ((length - 1) // 262) + (3 if (length - 1) % 262 >= 6 else 2)
        ip += length
        for _ in range(2):  # hash the two positions after the match
            table_[hash24(u24(ip))] = ip
            ip += 1
        anchor = ip
    return n + literals(len(data) - anchor)


def l1_data_fee_wei(fastlz_size: int, prices: Prices) -> int:
    """Base's L1 data fee of a transaction whose signed bytes FastLZ-compress to ``fastlz_size`` (Fjord)."""
    estimated_size = max(100 * 10**6, -42_585_600 + 836_500 * fastlz_size)  # bytes x 1e6
    fee_scaled = (prices.base_fee_scalar * 16 * round(prices.l1_gas_price_gwei * GWEI)
                  + prices.blob_base_fee_scalar * round(prices.blob_base_fee_gwei * GWEI))
    return estimated_size * fee_scaled // 10**12


def price(results: dict, prices: Prices) -> dict:
    """Each operation's cost on Base and on an L1-style chain, in ETH, OPG and USD, from the measured gas and the
    sizes of the signed transactions (``results["tx_bytes"]``)."""
    sizes = results["tx_bytes"]
    existing = results["settle_batch_gas"]["100_payers_x_1_node"]["existing"]
    new = results["settle_batch_gas"]["100_payers_x_1_node"]["new"]

    def data_fee(label: str) -> int:
        return l1_data_fee_wei(sizes[label]["fastlz"], prices)

    claim_fee = (data_fee("settle_100") - data_fee("settle_1")) / 99  # the L1 data fee of one more claim
    new_claim_gas = (new["100"] - new["1"]) / 99
    operations = [
        ("x402 exact payment (one request)", results["exact_payment_gas"], data_fee("exact")),
        ("settle_batch, 1 claim", existing["1"], data_fee("settle_1")),
        ("settle_batch, 100 claims", existing["100"], data_fee("settle_100")),
        ("one more claim (existing channel)", results["marginal_gas_per_claim"], claim_fee),
        ("one more claim (new channel)", new_claim_gas, claim_fee),
        (f"settled request ({REQUESTS_PER_CLAIM} per claim, existing channel)",
         results["marginal_gas_per_claim"] / REQUESTS_PER_CLAIM, claim_fee / REQUESTS_PER_CLAIM),
        (f"settled request ({REQUESTS_PER_CLAIM} per claim, new channel)",
         new_claim_gas / REQUESTS_PER_CLAIM, claim_fee / REQUESTS_PER_CLAIM),
    ]
    rows = []
    for name, gas, fee in operations:
        base_eth = (gas * prices.gas_price_gwei * GWEI + fee) / 10**18
        l1_eth = gas * prices.l1_gas_price_gwei * GWEI / 10**18
        rows.append({
            "operation": name,
            "gas": round(gas, 1),
            "base_l1_data_fee_eth": fee / 10**18,
            "base_eth": base_eth,
            "base_opg": base_eth * prices.eth_usd / prices.opg_usd,
            "base_usd": base_eth * prices.eth_usd,
            "l1_eth": l1_eth,
            "l1_opg": l1_eth * prices.eth_usd / prices.opg_usd,
            "l1_usd": l1_eth * prices.eth_usd,
        })
    return {"assumptions": asdict(prices), "operations": rows}


def print_prices(priced: dict) -> None:
    p = priced["assumptions"]
    print(f"priced at ASSUMED prices (each a flag): Base = L2 gas at {p['gas_price_gwei']} gwei + L1 data fee (L1 base "
          f"fee {p['l1_gas_price_gwei']} gwei, blob base fee {p['blob_base_fee_gwei']} gwei, scalars "
          f"{p['base_fee_scalar']:,} / {p['blob_base_fee_scalar']:,}); L1 = the same gas at "
          f"{p['l1_gas_price_gwei']} gwei, no data fee; ETH ${p['eth_usd']:,}, OPG ${p['opg_usd']}")

    def amount(x: float) -> str:
        return f"{x:,.2f}" if x >= 100 else f"{x:.3g}"

    print(table([(r["operation"], f"{r['gas']:,.0f}", amount(r["base_l1_data_fee_eth"]), amount(r["base_eth"]),
                  amount(r["base_opg"]), "$" + amount(r["base_usd"]), amount(r["l1_eth"]), amount(r["l1_opg"]),
                  "$" + amount(r["l1_usd"])) for r in priced["operations"]],
                ("operation", "gas", "Base: L1 data ETH", "Base ETH", "Base OPG", "Base USD", "L1 ETH", "L1 OPG",
                 "L1 USD")))


def key_of(label: str) -> str:
    """A deterministic benchmark key (never a real account)."""
    return "0x" + keccak(text=f"opg-gas-bench:{label}").hex()


class Bench:
    def __init__(self, w3: Web3):
        self.w3 = w3
        self.deployer = anvil_key(0)
        self.relayer = anvil_key(1)
        # Production parameters: a one-day epoch, so that no run crosses an epoch boundary (a new epoch's first
        # batch writes fresh distributor slots, which would blur the comparison).
        self.system = deploy_web3(
            w3, self.deployer, params=Params(facilitators=[Account.from_key(self.relayer).address])
        )
        self.opg, self.escrow = self.system.opg, self.system.escrow
        self.domain = Domain.escrow(w3.eth.chain_id, self.escrow.address)
        self.payers = [key_of(f"payer-{i}") for i in range(100)]
        self.nodes = [key_of(f"node-{i}") for i in range(10)]
        self.verifier = key_of("verifier")
        self.warmup_payer = key_of("warmup-payer")
        self._sig_cache: dict[tuple, bytes] = {}
        self.tx_bytes: dict[str, dict] = {}  # label -> sizes of a signed transaction sent (for Base's L1 data fee)

    # ---- set-up ------------------------------------------------------------------------------------------

    def setup(self) -> None:
        params = self.system.deployment.params
        staking = self.system.staking
        for key, role in [(k, 1) for k in self.nodes] + [(self.verifier, 2)]:
            address = Account.from_key(key).address
            stake = params.min_inference_stake if role == 1 else params.min_verifier_stake
            send(self.w3, self.deployer, {"to": address, "value": 10**18})
            transact(self.w3, self.deployer, self.opg.functions.transfer(address, stake + 1_000 * OPG))
            transact(self.w3, key, self.opg.functions.approve(staking.address, stake))
            registration = Registration(account=address).sign_with(
                key, Domain.staking(self.w3.eth.chain_id, staking.address)
            )
            transact(
                self.w3,
                key,
                staking.functions.register(role, stake, "http://bench.invalid", bytes.fromhex(registration[2:])),
            )
        transact(self.w3, self.deployer, self.opg.functions.approve(self.escrow.address, 2**256 - 1))
        self.authorize_sessions()
        for key in [*self.payers, self.warmup_payer]:
            payer = Account.from_key(key).address
            transact(self.w3, self.deployer, self.escrow.functions.deposit_for(payer, 1_000 * OPG))
        # Steady state: the distributor has already credited every node, the treasury and the verifier pool in
        # this epoch, so that "new channels" measures new channels, not the protocol's first batch ever.
        self.settle([self.claim(self.warmup_payer, node, PRICE) for node in self.nodes])

    # ---- helpers -----------------------------------------------------------------------------------------

    def record_tx(self, label: str, receipt: dict) -> None:
        """Keep the size of the signed transaction behind ``receipt``: raw and FastLZ-compressed."""
        raw = self.w3.provider.make_request("eth_getRawTransactionByHash", [receipt["transactionHash"].to_0x_hex()])
        data = bytes.fromhex(raw["result"][2:])
        self.tx_bytes[label] = {"raw": len(data), "fastlz": flz_compress_len(data)}

    def snapshot(self) -> str:
        return self.w3.provider.make_request("evm_snapshot", [])["result"]

    def revert(self, snapshot_id: str) -> None:
        assert self.w3.provider.make_request("evm_revert", [snapshot_id])["result"] is True

    def claim(self, payer_key: str, node_key: str, total: int, signer_key: str | None = None) -> tuple:
        payer, node = Account.from_key(payer_key).address, Account.from_key(node_key).address
        signer_key = signer_key or payer_key
        cache_key = (payer_key, node_key, total, signer_key)
        if cache_key not in self._sig_cache:
            voucher = Voucher(payer=payer, node=node, max_cumulative=total)
            self._sig_cache[cache_key] = voucher.sign_with(signer_key, self.domain)
        signature = self._sig_cache[cache_key]
        return Claim(payer=payer, node=node, max_cumulative=total, signature=signature, total=total).as_tuple()

    def session_key(self, payer_key: str) -> str:
        return key_of(f"session-{payer_key}")

    def authorize_sessions(self) -> None:
        """Every payer authorises a session key (expiry in a year, ample allowance)."""
        expiry = self.w3.eth.get_block("latest")["timestamp"] + 365 * 86_400
        for key in self.payers:
            send(self.w3, self.deployer, {"to": Account.from_key(key).address, "value": 10**17})
            signer = Account.from_key(self.session_key(key)).address
            transact(self.w3, key, self.escrow.functions.authorize_signer(signer, expiry, 1_000 * OPG))

    def settle(self, claims: list[tuple], sender: str | None = None) -> dict:
        # A realistic (non-zero) Merkle root, deterministic so that runs compare byte for byte.
        root = keccak(text=f"receipts-root-{len(claims)}")
        fn = self.escrow.functions.settle_batch(claims, root)
        sender = sender or self.relayer
        # eth_estimateGas lands a few hundred gas short of what a 100-claim batch needs (the 63/64 rule around the
        # per-claim precompile calls); the relayer adds headroom the same way.
        gas = int(fn.estimate_gas({"from": Account.from_key(sender).address}) * 1.1) + 50_000
        receipt = transact(self.w3, sender, fn, gas=gas)
        outcomes = self.escrow.functions.settle_batch(claims, bytes(32)).call(
            {"from": Account.from_key(self.relayer).address}, block_identifier=receipt["blockNumber"] - 1
        )
        assert all(o == 0 for o in outcomes), f"a claim was skipped: {outcomes}"
        return receipt

    def channels(self, layout: str) -> list[tuple[str, str]]:
        """100 (payer, node) channels, ordered by node."""
        if layout == "100x1":
            return [(p, self.nodes[0]) for p in self.payers]
        return [(self.payers[i], self.nodes[j]) for j in range(10) for i in range(10)]

    # ---- measurements ------------------------------------------------------------------------------------

    def measure_session(self) -> dict:
        """settle_batch with session-key vouchers on existing channels (100 payers x 1 node)."""
        chans = self.channels("100x1")
        out: dict = {}
        base = self.snapshot()
        self.settle([self.claim(p, k, 100 * PRICE) for p, k in chans])
        for n in SIZES:
            snap = self.snapshot()
            claims = [self.claim(p, k, 200 * PRICE, self.session_key(p)) for p, k in chans[:n]]
            out[str(n)] = self.settle(claims)["gasUsed"]
            self.revert(snap)
        self.revert(base)
        return out

    def measure_layout(self, layout: str) -> dict:
        chans = self.channels(layout)
        result: dict = {"new": {}, "existing": {}}
        base = self.snapshot()
        for n in SIZES:
            snap = self.snapshot()
            result["new"][str(n)] = self.settle([self.claim(p, k, 100 * PRICE) for p, k in chans[:n]])["gasUsed"]
            self.revert(snap)
        # Existing channels: every channel settled once before.
        self.settle([self.claim(p, k, 100 * PRICE) for p, k in chans])
        for n in SIZES:
            snap = self.snapshot()
            receipt = self.settle([self.claim(p, k, 200 * PRICE) for p, k in chans[:n]])
            result["existing"][str(n)] = receipt["gasUsed"]
            if layout == "100x1":
                self.record_tx(f"settle_{n}", receipt)
            self.revert(snap)
        self.revert(base)
        return result

    def measure_priority(self) -> dict:
        """The R1 defence. The relayer's path: the gas of the facilitator check (the first storage read of a 1-claim
        batch's trace: ``is_facilitator[msg.sender]``). A node's own path, without the relayer: ``propose_batch`` and
        then ``settle_batch`` of the proposed batch, against the same batch settled by the facilitator (existing
        channels, 100 payers x 1 node)."""
        chans = self.channels("100x1")
        node_key = self.nodes[0]
        node = Account.from_key(node_key).address
        send(self.w3, self.deployer, {"to": node, "value": 10**18})
        out: dict = {"propose_batch": {}, "settle_through_proposal": {}, "settle_by_facilitator": {}}
        base = self.snapshot()
        self.settle([self.claim(p, k, 100 * PRICE) for p, k in chans])
        for n in SIZES:
            snap = self.snapshot()
            claims = [self.claim(p, k, 200 * PRICE) for p, k in chans[:n]]
            receipt = self.settle(claims)
            out["settle_by_facilitator"][str(n)] = receipt["gasUsed"]
            if n == 1:
                tx = self.w3.eth.get_transaction(receipt["transactionHash"])
                out["facilitator_check_gas"] = self.first_sload(receipt["transactionHash"])
                out["facilitator_check_calldata"] = len(bytes(tx["input"]))
            self.revert(snap)
            snap = self.snapshot()  # a revert consumes the snapshot
            root = keccak(text=f"receipts-root-{len(claims)}")
            proposed = transact(self.w3, node_key, self.escrow.functions.propose_batch(claims, root))
            out["propose_batch"][str(n)] = proposed["gasUsed"]
            delay = self.escrow.functions.claim_delay().call()
            self.w3.provider.make_request("evm_increaseTime", [delay])
            self.w3.provider.make_request("evm_mine", [])
            out["settle_through_proposal"][str(n)] = self.settle(claims, sender=node_key)["gasUsed"]
            self.revert(snap)
        self.revert(base)
        return out

    def first_sload(self, tx_hash) -> int:
        """Gas of the first SLOAD of the escrow's frame (settle_batch's first storage read: the facilitator check)."""
        trace = self.w3.provider.make_request(
            "debug_traceTransaction",
            [tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash,
             {"disableStack": True, "disableStorage": True, "enableMemory": False}],
        )["result"]["structLogs"]
        for i, step in enumerate(trace):
            if step["op"] == "SLOAD" and step["depth"] == 1:
                return step["gas"] - trace[i + 1]["gas"]
        raise AssertionError("no SLOAD in settle_batch")

    def exact_payments(self) -> dict:
        """One EIP-3009 transferWithAuthorization, as an x402 facilitator submits it."""
        payer_key = key_of("exact-payer")
        payer = Account.from_key(payer_key).address
        merchant = Account.from_key(self.nodes[0]).address  # holds OPG already
        fresh = Account.from_key(key_of("fresh-merchant")).address  # holds nothing yet
        base = self.snapshot()
        transact(self.w3, self.deployer, self.opg.functions.transfer(payer, 1_000 * OPG))
        out = {}
        for label, to, overload in (
            ("vrs_to_funded_payee", merchant, "vrs"),
            ("bytes_to_funded_payee", merchant, "bytes"),
            ("vrs_to_fresh_payee", fresh, "vrs"),
        ):
            snap = self.snapshot()
            nonce = keccak(text=f"exact-{label}")  # random-looking, deterministic
            valid_before = 4_102_444_800  # 2100-01-01: fixed, so that the calldata (and the gas) is reproducible
            signature = self.sign_3009(payer_key, payer, to, PRICE, 0, valid_before, nonce)
            if overload == "vrs":
                fn = self.opg.functions.transferWithAuthorization(
                    payer, to, PRICE, 0, valid_before, nonce, signature[64], signature[:32], signature[32:64]
                )
                receipt = transact(self.w3, self.relayer, fn)
            else:
                # `transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)`, routed by
                # OPG's __default__ (Vyper cannot overload by type).
                from eth_abi import encode

                data = bytes.fromhex("cf092995") + encode(
                    ["address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes"],
                    [payer, to, PRICE, 0, valid_before, nonce, signature],
                )
                receipt = send(self.w3, self.relayer, {"to": self.opg.address, "data": "0x" + data.hex()})
            assert self.opg.functions.authorizationState(payer, nonce).call()
            if label == "vrs_to_funded_payee":
                self.record_tx("exact", receipt)
            out[label] = receipt["gasUsed"]
            self.revert(snap)
        self.revert(base)
        return out

    def sign_3009(self, key: str, owner: str, to: str, value: int, after: int, before: int, nonce: bytes) -> bytes:
        auth = TransferWithAuthorization(
            owner=owner, to=to, value=value, valid_after=after, valid_before=before, nonce=nonce
        )
        return bytes.fromhex(auth.sign_with(key, Domain.token(self.w3.eth.chain_id, self.opg.address))[2:])

    # ---- where the gas of one more claim goes --------------------------------------------------------------

    def breakdown(self, existing: bool) -> dict:
        """Per-claim gas by category: (trace of a 10-claim batch - trace of a 1-claim batch) / 9."""
        chans = self.channels("100x1")
        base = self.snapshot()
        total = 100 * PRICE
        if existing:
            self.settle([self.claim(p, k, total) for p, k in chans])
            total = 200 * PRICE
        profiles = {}
        for n in (1, 10):
            snap = self.snapshot()
            claims = [self.claim(p, k, total) for p, k in chans[:n]]
            receipt = self.settle(claims)
            tx = self.w3.eth.get_transaction(receipt["transactionHash"])
            profiles[n] = {"gasUsed": receipt["gasUsed"], **self.profile(receipt["transactionHash"], tx["input"])}
            self.revert(snap)
        self.revert(base)
        per_claim = {k: round((profiles[10][k] - profiles[1][k]) / 9, 1) for k in profiles[1]}
        return {"per_claim": per_claim, "batch_1": profiles[1], "batch_10": profiles[10]}

    def profile(self, tx_hash, data: bytes) -> dict:
        data = bytes(data)
        zeros = data.count(0)
        nonzero = len(data) - zeros
        out: dict = defaultdict(int)
        out["calldata_bytes"] = len(data)
        out["calldata_gas"] = 4 * zeros + 16 * nonzero
        out["calldata_floor_gas"] = 10 * (zeros + 4 * nonzero)  # EIP-7623 (Prague) floor, for reference
        trace = self.w3.provider.make_request(
            "debug_traceTransaction",
            [
                tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash,
                {"disableStack": True, "disableStorage": True, "enableMemory": False},
            ],
        )["result"]
        logs = trace["structLogs"]
        # Cost of a step = gas before it - gas before the next step in the same frame (so a CALL includes its
        # callee, and a precompile call its precompile); the last step of a frame uses the reported gasCost.
        for i, step in enumerate(logs):
            cost = None
            for nxt in logs[i + 1 :]:
                if nxt["depth"] == step["depth"]:
                    cost = step["gas"] - nxt["gas"]
                    break
                if nxt["depth"] < step["depth"]:
                    break
            if cost is None:
                cost = step.get("gasCost", 0)
            if step["depth"] != 1:
                continue  # counted inclusively in the escrow frame's CALL / STATICCALL
            out[self.category(step["op"])] += cost
        return dict(out)

    @staticmethod
    def category(op: str) -> str:
        if op == "SSTORE":
            return "sstore"
        if op == "SLOAD":
            return "sload"
        if op.startswith("LOG"):
            return "logs"
        if op in ("KECCAK256", "SHA3"):
            return "keccak"
        if op in ("STATICCALL", "CALL", "DELEGATECALL"):
            return "calls (ecrecover, staking, token, distributor)"
        if op in ("CALLDATACOPY", "CALLDATALOAD", "MCOPY", "MLOAD", "MSTORE", "MSTORE8", "MSIZE"):
            return "memory and calldata copies"
        return "other opcodes"


def table(rows: list[tuple], headers: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    line = lambda r: "  ".join(str(x).rjust(w) for x, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(headers), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reprice", action="store_true",
                        help=f"price the stored {RESULTS.relative_to(ROOT)} at these assumptions; measure nothing")
    defaults = Prices()
    helps = {
        "gas_price_gwei": "Base L2 execution gas price, gwei",
        "l1_gas_price_gwei": "an L1-style chain's gas price and the L1 base fee in Base's data fee, gwei",
        "blob_base_fee_gwei": "L1 blob base fee in Base's data fee, gwei",
        "base_fee_scalar": "Base GasPriceOracle baseFeeScalar",
        "blob_base_fee_scalar": "Base GasPriceOracle blobBaseFeeScalar",
        "eth_usd": "USD per ETH",
        "opg_usd": "USD per OPG",
    }
    for field in fields(Prices):
        default = getattr(defaults, field.name)
        parser.add_argument("--" + field.name.replace("_", "-"), type=type(default), default=default,
                            help=f"{helps[field.name]} (assumed default: {default})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prices = Prices(**{f.name: getattr(args, f.name) for f in fields(Prices)})
    if args.reprice:
        results = json.loads(RESULTS.read_text())
        if "tx_bytes" not in results:
            sys.exit(f"gas: {RESULTS.relative_to(ROOT)} predates the transaction sizes; run bench/gas.py once")
        print_prices(price(results, prices))
        return 0
    return measure(prices)


def measure(prices: Prices) -> int:
    started = time.monotonic()
    anvil_version = subprocess.run([anvil_binary(), "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    with Anvil(extra=["--gas-limit", "60000000", "--hardfork", "prague", "--steps-tracing"]) as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        bench = Bench(w3)
        bench.setup()
        layouts = {
            "100_payers_x_1_node": bench.measure_layout("100x1"),
            "10_payers_x_10_nodes": bench.measure_layout("10x10"),
        }
        session = bench.measure_session()
        priority = bench.measure_priority()
        exact = bench.exact_payments()
        breakdown = {"existing": bench.breakdown(existing=True), "new": bench.breakdown(existing=False)}
        hardfork = w3.provider.make_request("anvil_nodeInfo", []).get("result", {}).get("hardFork")
        sizes = {name: len(w3.eth.get_code(c.address)) for name, c in bench.system.deployment.contracts.items()}

    main_layout = layouts["100_payers_x_1_node"]

    def marginal(kind: str, layout=main_layout) -> float:
        return round((layout[kind]["100"] - layout[kind]["1"]) / 99, 1)

    results = {
        "marginal_gas_per_claim": marginal("existing"),
        "gas_per_request": round(main_layout["existing"]["100"] / (100 * REQUESTS_PER_CLAIM), 1),
        "exact_payment_gas": exact["vrs_to_funded_payee"],
        "definitions": {
            "marginal_gas_per_claim": "(gas(100 claims) - gas(1 claim)) / 99, existing channels, 100 distinct payers",
            "gas_per_request": f"gas(100 claims, existing channels) / (100 x {REQUESTS_PER_CLAIM} requests)",
            "exact_payment_gas": "OPG.transferWithAuthorization (v, r, s) to a payee that already holds OPG",
        },
        "marginal_gas_per_claim_session_key": round((session["100"] - session["1"]) / 99, 1),
        "settle_batch_gas_session_key_existing": session,
        "marginal_gas_per_claim_new_channels": marginal("new"),
        "gas_per_request_new_channels": round(main_layout["new"]["100"] / (100 * REQUESTS_PER_CLAIM), 1),
        "marginal_gas_per_claim_10x10_existing": marginal("existing", layouts["10_payers_x_10_nodes"]),
        "marginal_gas_per_claim_10x10_new": marginal("new", layouts["10_payers_x_10_nodes"]),
        "r1_defence": {
            "facilitator_check_gas_per_batch": priority["facilitator_check_gas"],
            "facilitator_check_gas_per_claim": 0,
            "facilitator_check_gas_per_channel": 0,
            "facilitator_check_gas_per_request_100_claims": round(
                priority["facilitator_check_gas"] / (100 * REQUESTS_PER_CLAIM), 3
            ),
            "facilitator_check_gas_per_request_1_claim": round(
                priority["facilitator_check_gas"] / REQUESTS_PER_CLAIM, 1
            ),
            "self_settlement_extra_gas_per_claim": {
                n: round(
                    (priority["propose_batch"][n] + priority["settle_through_proposal"][n]
                     - priority["settle_by_facilitator"][n]) / int(n), 1
                )
                for n in priority["propose_batch"]
            },
            "measured": priority,
            "x402_batch_channel_open_gas": X402_BATCH_CHANNEL_OPEN,
            "definitions": {
                "facilitator_check_gas_per_batch": "the first SLOAD of a 1-claim settle_batch by the facilitator "
                "(is_facilitator[msg.sender], cold): the whole on-chain cost of the R1 defence on the relayer's path",
                "self_settlement_extra_gas_per_claim": "(propose_batch + settle_batch through the proposal - the "
                "same batch settled by the facilitator) / claims: a node's own settlement without the relayer",
            },
        },
        "runtime_bytecode_bytes": sizes,
        "tx_bytes": bench.tx_bytes,
        "bytecode_limit_bytes": 24_576,
        "settle_batch_gas": layouts,
        "exact_payment_variants": exact,
        "exact_payment_reference_from_issue": list(EXACT_PAYMENT_REFERENCE),
        "per_claim_breakdown": {k: v["per_claim"] for k, v in breakdown.items()},
        "traces": breakdown,
        "targets": TARGETS,
        "environment": {
            "anvil": anvil_version,
            "hardfork": hardfork,
            "contracts_source_hash": _source_hash(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "runtime_s": None,
        },
    }
    results["targets_met"] = {
        "marginal_gas_per_claim": results["marginal_gas_per_claim"] <= TARGETS["marginal_gas_per_claim"],
        "gas_per_request": results["gas_per_request"] <= TARGETS["gas_per_request"],
    }
    results["environment"]["runtime_s"] = round(time.monotonic() - started, 1)

    rows = []
    for name, layout in layouts.items():
        for kind in ("new", "existing"):
            for n in SIZES:
                gas = layout[kind][str(n)]
                rows.append((name, kind, n, f"{gas:,}", f"{gas / n:,.0f}", f"{gas / (n * REQUESTS_PER_CLAIM):,.1f}"))
    for n in SIZES:
        rows.append(("100x1 session keys", "existing", n, f"{session[str(n)]:,}", f"{session[str(n)] / n:,.0f}",
                     f"{session[str(n)] / (n * REQUESTS_PER_CLAIM):,.1f}"))
    print("settle_batch (gasUsed of the mined transaction)")
    print(
        table(rows, ("layout", "channels", "claims", "gas", "gas/claim", f"gas/request ({REQUESTS_PER_CLAIM}/claim)"))
    )
    print()
    print("x402 exact payment (OPG.transferWithAuthorization)")
    print(table([(k, f"{v:,}") for k, v in exact.items()], ("variant", "gas")))
    print()
    for kind in ("existing", "new"):
        print(f"one more claim on {kind} channels, by category (10-claim minus 1-claim trace, / 9)")
        per = breakdown[kind]["per_claim"]
        rows = [(k, f"{v:,.0f}") for k, v in per.items() if k not in ("calldata_floor_gas", "gasUsed")]
        rows.append(("gasUsed (measured)", f"{per['gasUsed']:,.0f}"))
        print(table(rows, ("category", "gas")))
        print()
    ok = results["targets_met"]
    print(
        f"marginal_gas_per_claim = {results['marginal_gas_per_claim']:,.0f} (target <= 19,000: "
        f"{'met' if ok['marginal_gas_per_claim'] else 'NOT met'}); new channels {results['marginal_gas_per_claim_new_channels']:,.0f}, "
        f"session keys {results['marginal_gas_per_claim_session_key']:,.0f}"
    )
    print(
        f"gas_per_request = {results['gas_per_request']:,.1f} (target <= 230: "
        f"{'met' if ok['gas_per_request'] else 'NOT met'}); exact payment = {results['exact_payment_gas']:,} "
        f"({results['exact_payment_gas'] / results['gas_per_request']:,.0f}x a batched request)"
    )
    r1 = results["r1_defence"]
    print()
    print("R1 defence (issue 13): only a facilitator settles at once; anyone else proposes and waits claim_delay")
    print(table([
        ("relayer's path: facilitator check", f"{r1['facilitator_check_gas_per_batch']:,}", "0", "0",
         f"{r1['facilitator_check_gas_per_request_100_claims']} (100 claims) .. "
         f"{r1['facilitator_check_gas_per_request_1_claim']} (1 claim)"),
        *[(f"node's own settlement, {n} claim(s): propose + settle extra", "-", f"{v:,.0f}", f"{v:,.0f}",
           f"{v / REQUESTS_PER_CLAIM:,.1f}") for n, v in r1["self_settlement_extra_gas_per_claim"].items()],
        ("x402 batch contract: open one channel", "-", "-", f"{X402_BATCH_CHANNEL_OPEN:,}", "-"),
    ], ("path", "gas/batch", "gas/claim", "gas/channel", f"gas/request ({REQUESTS_PER_CLAIM}/claim)")))
    print()
    print("runtime bytecode (EIP-170 limit 24,576 bytes)")
    print(table([(k, f"{v:,}", f"{24_576 - v:,}") for k, v in sizes.items()], ("contract", "bytes", "headroom")))
    results["pricing"] = price(results, prices)
    results["definitions"]["pricing"] = (
        "cost at ASSUMED prices (pricing.assumptions): base_* = gas x gas_price_gwei + Base's L1 data fee (Fjord, from "
        "the FastLZ size of the signed transaction, tx_bytes); l1_* = gas x l1_gas_price_gwei; OPG and USD at eth_usd "
        f"and opg_usd; a settled request = the marginal claim / {REQUESTS_PER_CLAIM} requests")
    print()
    print_prices(results["pricing"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)} in {results['environment']['runtime_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
