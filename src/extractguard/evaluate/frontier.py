"""The security/utility frontier: per defense, the best attack's stolen fidelity vs honest agreement."""

from __future__ import annotations

from dataclasses import replace

from extractguard.evaluate.results import Cell, DefenseResult, FrontierPoint


def frontier(cells: list[Cell], defenses: dict[str, DefenseResult], budget: int) -> list[FrontierPoint]:
    """One point per defense: the best attack's stolen fidelity at ``budget`` (no enforcement)
    and, when the suspension is enforced, vs the honest users' agreement with the real model;
    ``pareto`` marks the defenses no other defense beats on both (lower fidelity, higher utility)."""
    pts = []
    for name, d in defenses.items():
        fids = [c.fidelity_at(budget) for c in cells if c.defense == name]
        fids = [f for f in fids if f is not None]
        enf = []
        for c in cells:
            if c.defense != name:
                continue
            f = c.fidelity_at(budget)
            if c.enforced.suspended_at is not None:
                f = c.enforced.fidelity or 0.0
            if f is not None:
                enf.append(f)
        pts.append(FrontierPoint(defense=name, budget=budget, utility=d.honest.agreement,
                                 fidelity=max(fids) if fids else None, fidelity_enforced=max(enf) if enf else None))
    return [replace(p, pareto=p.fidelity is not None and not any(
        q is not p and q.fidelity is not None and q.fidelity <= p.fidelity and q.utility >= p.utility
        and (q.fidelity < p.fidelity or q.utility > p.utility) for q in pts
    )) for p in pts]
