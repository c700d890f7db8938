"""``--color``: whether jobs are told to colour their output although it goes to a pipe.

A job's stdout is our pipe, so a compiler or test runner that asks
``isatty()`` turns its colour off, even when we print its output to a
terminal.  The conventions programs read instead:

- ``FORCE_COLOR`` (Node, pytest, many Python and JavaScript tools) and
  ``CLICOLOR_FORCE`` (BSD ls, CMake, Rust's ``termcolor`` and others):
  colour even when not on a terminal;
- ``NO_COLOR`` (no-color.org): no colour, whatever the output is.

Compilers with a flag of their own (``-fdiagnostics-color``) still need it
given; the environment is all a runner can set for every program.

A variable present in our environment is the user's explicit choice and is
passed on untouched: never overridden, never removed.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MODES", "colour_on", "job_env"]

MODES = ("auto", "always", "never")
FORCE: tuple[str, ...] = ("FORCE_COLOR", "CLICOLOR_FORCE")
NONE: tuple[str, ...] = ("NO_COLOR",)


def colour_on(mode: str, stdout_is_tty: bool) -> bool:
    """Whether jobs should colour: ``always``; ``auto`` when our stdout is a terminal."""
    return mode == "always" or (mode == "auto" and stdout_is_tty)


def job_env(mode: str, stdout_is_tty: bool, environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment jobs get, or None when it is ``environ`` unchanged.

    On (see :func:`colour_on`): ``FORCE_COLOR=1`` and ``CLICOLOR_FORCE=1``;
    ``never``: ``NO_COLOR=1``; ``auto`` off a terminal: nothing.  Each is
    added only where ``environ`` does not have it already.
    """
    if mode not in MODES:
        raise ValueError(f"--color must be one of {', '.join(MODES)}, not {mode!r}")
    if colour_on(mode, stdout_is_tty):
        names = FORCE
    elif mode == "never":
        names = NONE
    else:
        return None
    added = {name: "1" for name in names if name not in environ}
    if not added:
        return None
    return {**environ, **added}
