"""The long versions of the fault tests, run by hand or on a schedule: ``scripts/soak.sh``.

Each soak is a module here with a ``main(argv) -> int`` (an argparse of its size and duration
flags, a summary a person can read on stdout, non-zero when an invariant failed); the CI suite
runs a short version of the same code from ``tests/fault``.
"""
