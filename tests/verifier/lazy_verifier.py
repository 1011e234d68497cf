"""A lazy verifier, for the tests only: the real ``opg verifier run`` daemon with a judge that vouches valid=true for
every receipt it draws, without fetching the payload or re-executing it (the relayer must slash it once the receipt
is proven fraudulent). Run as ``python tests/verifier/lazy_verifier.py verifier run <the usual flags>``."""

from __future__ import annotations

import sys

from offchain.messages import Receipt
from offchain.verifier import service
from offchain.verifier.judge import Judgement


class LazyJudge:
    needs_payload = False

    def serves(self, model_id: str) -> bool:
        return True

    def __call__(self, receipt: Receipt, payload: dict | None) -> Judgement:
        return Judgement(True, "vouched without checking (lazy mode)", False)

    def describe(self) -> list[dict]:
        return [{"name": "lazy", "modelId": "*", "deterministic": False, "judgedBy": "nothing"}]


if __name__ == "__main__":
    from offchain.cli import main

    verifier = service.Verifier
    service.Verifier = lambda settings: verifier(settings, judge=LazyJudge())  # what the CLI builds
    sys.exit(main(sys.argv[1:]))
