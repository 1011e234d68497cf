"""Protocol parameters shared by the ape tests and the property test (round numbers, non-trivial fee split)."""

from offchain.deployments import Params

OPG = 10**18

TEST_PARAMS = Params(
    thaw_period=3_600,
    dispute_window=86_400,
    unbonding_period=2 * 86_400,
    min_inference_stake=1_000 * OPG,
    min_verifier_stake=500 * OPG,
    protocol_fee_bps=500,
    verifier_fee_bps=1_000,
    max_emission_per_fee_bps=400,
    equivocation_slash_bps=5_000,
    fraud_slash_bps=2_000,
    challenger_reward_bps=2_000,
    fraud_multiplier=10,
    fraud_quorum_bps=6_667,
    warmup=86_400,
    epoch_length=3_600,
    emission_per_epoch=10_000 * OPG,
    # CreditEscrow's facilitator: anvil/ape test account 2 (the `facilitator` fixture); everyone else proposes first
    facilitators=["0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"],
)
