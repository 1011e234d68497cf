"""Cross-daemon fault tests: the relayer, a node and a verifier together on one private anvil whose clock runs level
with the wall clock after the verifiers' warm-up. The daemons are started with the verifier tests' kit
(``tests/verifier/verifier_kit.py``, put on ``sys.path`` here) so both directories build them one way."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "verifier"))
