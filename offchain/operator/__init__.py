"""``opg operator``: an inference node's or a verifier's own account in NodeStaking and the RewardDistributor.

Register with a role and a stake, add stake, unbond and withdraw, move the endpoint, leave jail, heartbeat, claim
rewards, and read the whole state (``status``). The daemons (``opg node run``, ``opg verifier run``) serve; this
package only manages the account behind them. See ``docs/operator.md``.

- ``ops``: ``Operator``: the account's reads (``NodeRecord``, epochs, events) and transactions (through the SDK's
  ``TxManager``), each refusal one line.
- ``settings``: ``OperatorSettings``.
- ``cli``: ``opg operator``.
"""
