"""What the subcommands share: argument types that refuse bad values in one line, the parser
that reports a usage error in one line, and configs built from the parsed arguments."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

DEFAULT_RUN = Path("runs/default")


def number(cast, inside, bounds: str):
    """An argparse type: ``cast(text)``, finite, for which ``inside(value)`` holds (``bounds`` says how)."""
    kind = "an integer" if cast is int else "a number"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not math.isfinite(value) or not inside(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be {bounds}")
        return value

    return parse


positive_int = number(int, lambda v: v >= 1, ">= 1")
nonnegative_int = number(int, lambda v: v >= 0, ">= 0")
positive_float = number(float, lambda v: v > 0, "a positive finite number")
fraction = number(float, lambda v: 0 <= v < 1, "in [0, 1)")
probability = number(float, lambda v: 0 <= v <= 1, "in [0, 1]")


def token_budget(text: str) -> int | str:
    """``--token-budget``: auto, off or a positive number of tokens (``extract.budget``)."""
    from extract.budget import parse_token_budget

    try:
        return parse_token_budget(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("empty list")
    return names


def int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in name_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad layer list {text!r}: expected integers") from None


def add_run(parser: argparse.ArgumentParser) -> None:
    """The run folder as the positional argument every stage after extraction takes."""
    parser.add_argument("run", type=Path, nargs="?", default=DEFAULT_RUN, help=f"run folder (default: {DEFAULT_RUN})")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def config_from(cls, args: argparse.Namespace, **values):
    """A config dataclass from the parsed arguments that share its field names, then ``values``."""
    fields = {field.name for field in dataclasses.fields(cls)}
    return cls(**{**{k: v for k, v in vars(args).items() if k in fields}, **values})
