"""Helpers that several test files share (fixtures live in conftest.py; test files never import each other)."""

from __future__ import annotations

from landscape import cli


def fails_in_one_line(argv, capsys, *needles) -> str:
    """Run ``landscape argv``: it must exit 1 with one line on stderr, no traceback, holding every
    needle; returns that line."""
    rc = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "Traceback" not in err[0], err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]
