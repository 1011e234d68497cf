"""OPG Settlement SDK: message models, deployments, chain access, relayer, nodes, verifier and client.

Scripts, daemons and tests all import this one package.
"""

__version__ = "0.1.0"
