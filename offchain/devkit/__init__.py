"""Dev and test support: what the tests, ``scripts/``, ``bench/`` and the dev-only ``opg abi`` use, and no daemon does
(``tests/devkit/test_devkit_boundary.py`` keeps runtime modules from importing it).

  devchain  Anvil (a private anvil process), free_port, send/transact (web3), deploy_contract, deploy_web3
  compiler  compiled(name): ABI + bytecode from contracts/ with the pinned vyper, cached; export_abis (``opg abi``)
  devnet    the end-to-end test kit: Devnet (anvil + deployed system), Actor, ChannelSim, RelayerProc, DaemonProc
  fixtures  devnet, relayer: the end-to-end tests' module fixtures (a conftest imports them)
  system    System/Operator: the whole system as processes (``make demo``, ``make devnet``, the browser tests)
  params    TEST_PARAMS, the protocol parameters of the ape tests and the property tests
  traces    called_addresses (anvil's callTracer)
  postgres  PostgresCluster: a throwaway PostgreSQL server (Debian's binaries, temp dir, free port) for store tests
  faults    the fault tests' crash plug-in (OPG_<ROLE>_PLUGINS): exit hard at a daemon's step, fault_env
  reconcile_stores  a node's and a verifier's store against the relayer's and the chain (after a fault)
  upstream  LlamaServer: llama-cpp-python's OpenAI-compatible server as a child process (the proxy's upstream)
  cluster   RelayerCluster: several relayers on one PostgreSQL database behind a round-robin front, their faults
            (exit after signing / after broadcast / mid-write, database cut, SIGSTOP), reconcile (store vs chain)

Runtime pieces it builds on stay in the runtime package: ABIs in ``offchain.abi``, anvil's dev keys in
``offchain.daemon.keys``.
"""
