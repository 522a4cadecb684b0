"""The replay engine's core: a pure state machine over the journal.

It takes the recorded commands and completions, matches the handler's context calls against
them one by one, records the new ones, and hands out what must be made durable. It never
touches a socket, a file or a clock.

>>> j = Journal([{"kind": "input", "value": 1}, {"kind": "run", "name": "a"}], {"1": {"value": 2}})
>>> j.next({"kind": "run", "name": "a"})
(1, {'kind': 'run', 'name': 'a'})
>>> j.completion(1)
{'value': 2}
>>> j.replaying
False
>>> j.next({"kind": "sleep", "name": "", "wake_at": 5})[0]
2
>>> j.peek_unflushed()
([{'kind': 'sleep', 'name': '', 'wake_at': 5}], {})
"""

from __future__ import annotations

from .errors import NonDeterminismError
from .protocol import Command, Completion


def describe(command: Command) -> str:
    """A short human name for a command, as non-determinism errors print it."""
    name = command.get("name")
    return f"{command['kind']}({name!r})" if name else str(command["kind"])


def _target(command: Command) -> str:
    return f"{describe(command)} on key {command.get('key')!r}"


# Commands that name a target beyond their name: a call or send's object key (the name is the
# service and handler). Calling another key than the journal did is another call.
_KEYED = frozenset({"call", "send"})


class Journal:
    """Commands and completions of one invocation, as one attempt sees them."""

    def __init__(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        if not commands or commands[0]["kind"] != "input":
            raise ValueError("a journal starts with its input command")
        self._commands = list(commands)
        self._recorded = len(commands)
        self._completions = {int(k): v for k, v in completions.items()}
        self._position = 1
        self._flushed = len(commands)
        self._unflushed_completions: dict[str, Completion] = {}

    @property
    def input(self) -> Command:
        return self._commands[0]

    @property
    def position(self) -> int:
        return self._position

    @property
    def replaying(self) -> bool:
        """True while the handler is re-doing steps the journal already holds."""
        return self._position < self._recorded

    def next(self, command: Command) -> tuple[int, Command]:
        """Match the handler's next context call against the journal, or record it.

        Returns its index and the command as stored (on replay, the recorded one: a sleep keeps
        its original wake time). Raises :class:`NonDeterminismError` on a mismatch.
        """
        index = self._position
        self._position += 1
        if index < self._recorded:
            recorded = self._commands[index]
            if recorded["kind"] != command["kind"] or recorded.get("name") != command.get("name"):
                raise NonDeterminismError(index, describe(recorded), describe(command))
            if command["kind"] in _KEYED and recorded.get("key") != command.get("key"):
                raise NonDeterminismError(index, _target(recorded), _target(command))
            return index, recorded
        self._commands.append(command)
        return index, command

    def recorded_at(self, index: int) -> Command | None:
        """The recorded command at ``index``, if the journal holds one there."""
        return self._commands[index] if index < self._recorded else None

    @property
    def stored(self) -> int:
        """How many commands are stored (recorded before, or flushed since): the index of the
        first that :meth:`peek_unflushed` returns."""
        return self._flushed

    def durable(self, index: int) -> bool:
        """Whether the command at ``index`` is stored."""
        return index < self._flushed

    def completion(self, index: int) -> Completion | None:
        return self._completions.get(index)

    def complete(self, index: int, completion: Completion) -> None:
        """Record the completion of a command this attempt finished itself (a run)."""
        if index in self._completions:
            raise ValueError(f"journal entry {index} is already completed")
        self._completions[index] = completion
        self._unflushed_completions[str(index)] = completion

    def peek_unflushed(self) -> tuple[list[Command], dict[str, Completion]]:
        """New commands and completions not yet made durable, in order."""
        return self._commands[self._flushed :], dict(self._unflushed_completions)

    def mark_flushed(self, commands: int, completions: dict[str, Completion]) -> None:
        """Note that the first ``commands`` unflushed commands and ``completions`` are durable."""
        self._flushed += commands
        for key in completions:
            self._unflushed_completions.pop(key, None)


__all__ = ["Journal", "describe"]
