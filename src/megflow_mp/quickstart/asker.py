"""Asking one question at a time, from a flag, the keyboard or piped lines.

Contracts
---------
* A :class:`Question` has the text shown after ``> ``, a default (``None``: an answer is required),
  the flag that answers it in scripts, and a ``check`` that turns the answer text into a value or
  raises :class:`BadAnswer` with the reason.
* :meth:`Asker.ask` answers a question, in this order: the flag's value when one was given (a bad
  value is a :class:`QuickstartError`, nothing is asked again: a script cannot answer); the default
  when ``assume_defaults`` (``--yes``; no default, or a bad one, is a :class:`QuickstartError`
  naming the flag to pass); else it prints the question and reads one line. An empty line takes
  the default. A bad answer prints ``! <reason>`` and asks again, as often as needed.
* Reading: one line per answer from ``stdin``. When ``stdin`` is not a terminal the answer is
  echoed, so that a piped dialog reads like a typed one. The end of the input before an answer is
  a :class:`QuickstartError` (nothing has been written by then).
* Nothing here touches the file system; checks do what they need.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any, Callable, TextIO

from ..errors import QuickstartError

__all__ = ["BadAnswer", "QuickstartError", "Question", "Asker"]


class BadAnswer(ValueError):
    """An answer a question refuses; ``str()`` is the reason shown before the question is asked again."""


def _accept(text: str) -> str:
    return text


@dataclass(frozen=True)
class Question:
    """One question. ``shown``: what the brackets show instead of ``default`` (e.g. a description of
    an empty default); ``flag``: the command-line flag that answers it (named in errors)."""

    text: str
    default: str | None = None
    check: Callable[[str], Any] = _accept
    flag: str = ""
    shown: str | None = None

    def with_default(self, default: str | None) -> "Question":
        return replace(self, default=default, shown=None)

    def prompt(self) -> str:
        shown = self.default if self.shown is None else self.shown
        return f"> {self.text}" + ("" if shown is None else f" [{shown}]")


class Asker:
    """Answers questions; see the module contract. ``stdin``/``stdout`` default to the process's."""

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None, assume_defaults: bool = False):
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout
        self.assume_defaults = assume_defaults
        try:
            self.echo = not self.stdin.isatty()
        except (AttributeError, ValueError):
            self.echo = True

    def say(self, text: str = "") -> None:
        """Print one line of the dialog."""
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def ask(self, question: Question, given: str | None = None) -> Any:
        """The checked value of ``question``: from ``given`` (a flag's value), the default under
        ``assume_defaults``, or the input; raises :class:`QuickstartError` when it cannot be had."""
        if given is not None:
            try:
                return question.check(given)
            except BadAnswer as e:
                raise QuickstartError(f"{question.flag or question.text} {given!r}: {e}") from None
        if self.assume_defaults:
            how = f"; pass {question.flag}" if question.flag else ""
            if question.default is None:
                raise QuickstartError(f"'{question.text}' has no default{how}")
            try:
                return question.check(question.default)
            except BadAnswer as e:
                raise QuickstartError(f"the default of '{question.text}' ({question.default!r}) "
                                      f"cannot be used: {e}{how}") from None
        while True:
            self.say(question.prompt())
            line = self.stdin.readline()
            if not line:
                raise QuickstartError(f"the input ended before '{question.text}' was answered")
            answer = line.rstrip("\r\n").strip()
            if self.echo:
                self.say(answer)
            if not answer:
                if question.default is None:
                    self.say("! an answer is required")
                    continue
                answer = question.default
            try:
                return question.check(answer)
            except BadAnswer as e:
                self.say(f"! {e}")
