"""``python -m tests.soak KIND [flags]``: run one long soak and print its summary."""

from __future__ import annotations

import importlib
import sys

KINDS = {
    "kill": "tests.soak.kill",  # Counter.add under repeated SIGKILL of the runtime
    "fuzz": "tests.soak.fuzz",  # seeded random programs, checked against a model
    "store-chaos": "tests.soak.store_chaos",  # lost answers, throttling, conflicts, outages
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in KINDS:
        print(f"usage: python -m tests.soak {{{','.join(KINDS)}}} [--help]", file=sys.stderr)
        return 2
    module = importlib.import_module(KINDS[argv[0]])
    code: int = module.main(argv[1:])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
