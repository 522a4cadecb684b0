"""The interpreter fuzz (``python -m tests.soak fuzz``) at CI size: seeded random programs of
state, steps, sleeps, calls, sends and awakeables, three layers deep, on a real ``tarry dev``
SIGKILLed twice mid-run, on every store; every key's state, every invocation's result and every
answer checked against the model. Then that the model, the ordering check and the stall
detector can fail."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.soak.fuzz import Run, fuzz
from tests.soak.fuzz_model import Model, Observed, Root, Shape, compare, generate

pytestmark = pytest.mark.fault

PROGRAMS = 16


@pytest.mark.parametrize("seed", [11, 12])
def test_random_programs_match_the_model_across_sigkills(
    store_args: list[str], tmp_path: Path, seed: int
) -> None:
    run = Run(
        Shape(seed, PROGRAMS, keys=3, depth=3, clients=4),
        store="dynamodb" if store_args else "sqlite",
        kill_every=None,
        timeout=90,
        kill_after=(PROGRAMS // 3, 2 * PROGRAMS // 3),  # clients have programs in flight
    )
    outcome = fuzz(run, store_args, tmp_path)
    assert outcome.ok, outcome.report()
    assert outcome.kills == 2  # it really was killed and restarted, twice
    assert outcome.invocations > PROGRAMS  # the programs called and sent across the layers


def test_the_same_seed_makes_the_same_programs() -> None:
    shape = Shape(5, 30, keys=4)
    assert generate(shape) == generate(shape)  # so a failing seed replays its programs
    assert generate(shape) != generate(Shape(6, 30, keys=4))


def _as_the_model_says(model: Model) -> Observed:
    """What a runtime that did everything right would show: each key's state with an order log
    that keeps every caller's order, one completed invocation per program."""
    states: dict[tuple[int, str], dict[str, Any]] = {}
    for where, state in model.state.items():
        log = sorted(model.order[where].elements(), key=lambda e: (e[0], e[1]))
        states[where] = {**copy.deepcopy(state), "order": [list(e) for e in log]}
    invocations = [
        {
            "id": f"inv_{tok}",
            "service": f"Interp{layer}",
            "key": key,
            "target": f"Interp{layer}/{key}/run",
            "status": "completed",
            "completion": copy.deepcopy(model.results[tok]),
        }
        for tok, (layer, key) in model.where.items()
    ]
    invocations += [
        {"id": f"inv_r{n}", "service": "Resolver", "key": None, "target": "Resolver/complete",
         "status": "completed", "completion": {"value": None}}
        for n in range(model.resolvers)
    ]  # fmt: skip
    answers = {r.tok: model.results[r.tok]["value"] for r in model.roots}
    return Observed(states, invocations, answers)


def _one_caller_twice(model: Model) -> tuple[tuple[int, str], list[int]]:
    """A key, and the positions in its order log of two entries one caller issued in order."""
    seen = _as_the_model_says(model)
    for where, state in seen.states.items():
        log = state["order"]
        for i in range(len(log) - 1):
            same_caller = log[i][0] == log[i + 1][0]
            if same_caller and {log[i][2], log[i + 1][2]} <= model.ordered:
                return where, [i, i + 1]
    raise AssertionError("no key has two ordered entries of one caller")


def test_the_model_catches_a_wrong_state_result_or_order() -> None:
    model = Model(generate(Shape(3, 40, keys=3)))
    assert compare(model, _as_the_model_says(model)) == []

    where = next(w for w, s in model.state.items() if "c" in s)
    label = f"Interp{where[0]}/{where[1]}"
    lost_add = _as_the_model_says(model)
    lost_add.states[where]["c"] -= 1  # an add applied zero times, or another twice
    assert any(p.startswith(f"{label}: state differs: c: ") for p in compare(model, lost_add))

    mine = next((w, n) for w, s in model.state.items() for n in s if n.startswith("p."))
    reordered = _as_the_model_says(model)
    reordered.states[mine[0]][mine[1]] = [*reversed(model.state[mine[0]][mine[1]]), -1]
    assert any(f"state differs: {mine[1]}: " in p for p in compare(model, reordered))

    where, (i, j) = _one_caller_twice(model)
    swapped = _as_the_model_says(model)
    log = swapped.states[where]["order"]
    log[i], log[j] = log[j], log[i]  # the same entries, one caller's two calls out of order
    assert any("ran out of the order issued" in p for p in compare(model, swapped))

    twice = _as_the_model_says(model)
    twice.states[where]["order"].append(twice.states[where]["order"][0])
    twice.invocations.append({**twice.invocations[0], "id": "inv_again"})
    problems = compare(model, twice)
    assert any("extra (or run twice)" in p for p in problems)
    assert any("completed as 2 invocations, not 1" in p for p in problems)

    lost = _as_the_model_says(model)
    sent = next(i for i in lost.invocations if i["id"].count(".") == 2)  # not a top-level one
    lost.invocations.remove(sent)
    gone = f"program {sent['id'][4:]} completed as 0 invocations"
    assert any(p.startswith(gone) for p in compare(model, lost))

    wrong = _as_the_model_says(model)
    root = model.roots[0]
    wrong.answers[root.tok] = {"tok": root.tok, "out": ["something else"]}
    assert any(f"program {root.tok}: its client got" in p for p in compare(model, wrong))
    unresolved = _as_the_model_says(model)
    unresolved.invocations[-1]["completion"] = {"failure": {"code": 500, "message": "x"}}
    assert any(p.startswith("Resolver: ") for p in compare(model, unresolved))


def test_the_stall_detector_dumps_what_never_finishes(
    store_args: list[str], tmp_path: Path
) -> None:
    shape = Shape(4, 1, keys=2, depth=2, clients=1)
    stuck = {"tok": "c0.9.0", "caller": "c0.9", "seq": 0, "ordered": True,
             "ops": [["add", 1], ["awk", "never", 7]]}  # fmt: skip
    program = {"tok": "c0.9", "caller": "c0", "seq": 9, "ordered": True,
               "ops": [["send", 1, "k1", stuck, 0], ["run", 1]]}  # fmt: skip
    store = "dynamodb" if store_args else "sqlite"
    run = Run(shape, store, kill_every=None, timeout=60, settle=3)
    outcome = fuzz(run, store_args, tmp_path, [Root(0, "k0", program)])
    assert not outcome.ok
    report = outcome.report()
    assert "1 invocations did not complete, on 1 keys: Interp1/k1" in report
    assert "Interp1/k1/run inv_" in report
    assert "(program c0.9.0): suspended, 1 attempts, waiting on [5]" in report
    assert "#4 set_state c 1\n" in report  # its journal, read from the admin API
    assert "#5 awakeable\n" in report
    assert "replay: python -m tests.soak fuzz --seed 4 --programs 1 --keys 2 --depth 2 " in report
    stuck_id = report.split("Interp1/k1/run ", 1)[1].split()[0]
    assert outcome.problems == [  # the rest matched the model
        f"{stuck_id} (Interp1/k1/run) is suspended, not completed",
        "program c0.9.0 completed as 0 invocations, not 1: []",
    ]
