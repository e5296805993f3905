"""``lowbit-sweep --list``: every shipped sweep with its family and the meeting record's questions it
bears on (read from the sweep files, so a new sweep is listed without an edit here)."""
from __future__ import annotations

import pytest

from lowbit_core.questions import resolve
from lowbit_core.sweep import load_sweep, shipped_sweeps
from lowbit_sweeps.launch.sweep import build_parser


def listing(capsys) -> dict[str, str]:
    """sweep name -> its block of the ``--list`` output, whitespace-normalized."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--list"])
    assert exit_.value.code == 0
    blocks: dict[str, list[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith(" "):
            blocks[name].append(line)
        else:
            name = line.split(" ", 1)[0]
            blocks[name] = [line]
    return {n: " ".join(" ".join(lines).split()) for n, lines in blocks.items()}


def test_list_names_every_shipped_sweep_with_its_questions(capsys):
    blocks = listing(capsys)
    shipped = shipped_sweeps()
    assert len(shipped) >= 10 and set(blocks) == set(shipped)
    for name, path in shipped.items():
        sweep = load_sweep(path)
        assert blocks[name].startswith(f"{name} ({sweep.family}): ")
        for q in resolve(sweep.questions):
            assert f"answers {q.id}: {' '.join(q.text.split())}" in blocks[name], (name, q.id)
        if not sweep.questions:
            assert blocks[name].endswith("answers none of the meeting record's questions")
