"""Known-wrong variants (mutants) of the reference solutions, used to prove the tests.

A mutant edits one solution cell of a source notebook: ``find`` must occur exactly once in
that cell, and is replaced by ``replace``. The selftest grades each mutant and requires it to
lose points; a mutant whose ``find`` text no longer matches is an error, never a silent pass.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import nbformat


@dataclass(frozen=True)
class Mutant:
    """One deliberate mistake in one solution cell.

    name    short identifier, unique within its notebook, e.g. ``"naive_calls_blas"``
    cell    ``grade_id`` of the solution cell it edits
    find    exact text in that cell's reference source (must occur exactly once)
    replace text put in its place
    why     one line: the student mistake this models
    """

    name: str
    cell: str
    find: str
    replace: str
    why: str


class MutantError(ValueError):
    """A mutant that cannot be applied to its notebook."""


def apply_mutant(nb: nbformat.NotebookNode, mutant: Mutant) -> nbformat.NotebookNode:
    """Return a copy of ``nb`` with ``mutant`` applied to its solution cell."""
    mutated = copy.deepcopy(nb)
    cells = [c for c in mutated.cells
             if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == mutant.cell]
    if len(cells) != 1:
        raise MutantError(f"mutant {mutant.name!r}: expected one cell with grade_id {mutant.cell!r}, "
                          f"found {len(cells)}")
    cell = cells[0]
    if not cell["metadata"]["nbgrader"].get("solution"):
        raise MutantError(f"mutant {mutant.name!r}: cell {mutant.cell!r} is not a solution cell")
    count = cell.source.count(mutant.find)
    if count != 1:
        raise MutantError(f"mutant {mutant.name!r}: text to replace occurs {count} times in cell "
                          f"{mutant.cell!r} (must be exactly once): {mutant.find!r}")
    cell.source = cell.source.replace(mutant.find, mutant.replace)
    return mutated
