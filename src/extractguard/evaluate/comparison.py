"""Assess one endpoint through several variants (gateway tiers / defenses) and compare them.

The question an owner asks of a defense is two-sided: how much does it slow the thief, and what
does it cost the honest caller?  Each variant is a campaign of its own (own API key, own
transcript, resumable), but all are scored on the same held-out probe rows against the same
yardstick, the reference variant's answers (normally an undefended tier, i.e. the real model):

* *stolen fidelity* — the copy made through the variant agrees with the real model on the probe;
* *honest-user accuracy* — the variant's own answers on the probe against the true labels, plus
  their agreement with and L1 distance to the real model's answers.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from extractguard.errors import ConfigurationError
from extractguard.evaluate.assessment import Assessment, HonestAnswers, VariantSummary
from extractguard.evaluate.campaign import run_campaign
from extractguard.oracle.budget import BudgetLadder
from extractguard.oracle.target_config import TargetConfig, Variant

#: Called before each variant's campaign: ``(index, variant, variant_config)``.
VariantStart = Callable[[int, Variant, TargetConfig], None]


def summarize_variant(variant: Variant, result: Assessment, reference: bool) -> VariantSummary:
    """The report row of one variant: honest-user cost and the best stolen fidelity per budget."""
    best: dict[str, float] = {}
    for budget in result.budgets:
        values = [p.fidelity for run in result.runs for p in run.points if p.budget == budget]
        if values:
            best[str(budget)] = max(values)
    # The campaign describes its endpoint in ``target`` (as report.json does): read back once, here.
    return VariantSummary(
        name=variant.name,
        description=variant.description,
        output=result.output,
        reference=reference,
        honest_user=HonestAnswers.from_dict(result.target.get("honest_user", {})),
        best_fidelity=best,
        runs=list(result.runs),
        paid_queries=result.target.get("paid_queries"),
        transcript=result.target.get("transcript", {}).get("path"),
        seconds=result.seconds,
    )


def run_variant_comparison(
    config: TargetConfig,
    attacks: Sequence[str],
    budgets: BudgetLadder,
    *,
    seed: int = 0,
    surrogate: str = "auto",
    resume: bool = False,
    transport: Any = None,
    on_variant: VariantStart | None = None,
    **campaign_kwargs: Any,
) -> Assessment:
    """Run the campaign once per variant in ``config.variants``; the first is the reference.

    Returns the reference variant's :class:`Assessment` with ``variants`` holding one summary
    per variant (the reference included), in configuration order.
    """
    if len(config.variants) < 2:
        raise ConfigurationError("a comparison needs at least two variants in the target config (the first is the reference)")
    reference_answers: list[np.ndarray] = []
    results: list[tuple[Variant, Assessment]] = []
    for i, variant in enumerate(config.variants):
        sub = config.for_variant(variant)
        if on_variant is not None:
            on_variant(i, variant, sub)
        kwargs = dict(campaign_kwargs)
        if i == 0:
            kwargs["on_probe_answers"] = reference_answers.append
        else:
            kwargs["reference_proba"] = reference_answers[0]
        result = run_campaign(sub, attacks, budgets, seed=seed, surrogate=surrogate, resume=resume,
                              transport=transport, **kwargs)
        results.append((variant, result))
    head = results[0][1]
    head.variants = [summarize_variant(v, r, reference=(i == 0)) for i, (v, r) in enumerate(results)]
    head.target["comparison"] = {
        "reference": config.variants[0].name,
        "note": (
            "every variant's stolen copy is scored against the reference variant's answers on the same held-out "
            "probe rows; honest-user accuracy is each variant's own answers against the true labels"
        ),
    }
    head.seconds = round(sum(r.seconds for _, r in results), 3)
    return head
