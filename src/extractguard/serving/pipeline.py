"""The one answer pipeline: what a tier does to a model's output before anyone sees it.

In order (the gateway's order, and so the assessment's):

1. detection: the monitor sees the owner's *undefended* probabilities of the batch, updates the
   account's risk and may escalate its sanction; a batch that triggers a suspension is withheld;
2. the defense chain (:mod:`extractguard.defenses`) transforms the probabilities;
3. the keyed watermark (DAWN, Szyller et al. 2021) marks a keyed share of the rows, recorded per
   account in the :class:`~extractguard.watermark.WatermarkRecord`;
4. the tier's output mode (:class:`~extractguard.oracle.OutputSpec`) decides how much is revealed.

The gateway (HTTP, limits, audit) and an assessment-matrix cell (an
:class:`~extractguard.oracle.Oracle` with a simulated clock) both answer through
:meth:`ServingPipeline.answer`, so what is measured is what is deployed.  The one switch between
them is ``enforce``: an assessment also computes the answers a suspension withholds, to report the
copy an attacker would hold without enforcement next to the one it holds with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from extractguard.defenses import DefenseChain, build_chain
from extractguard.errors import ConfigurationError
from extractguard.oracle.answer import Answer, OutputSpec
from extractguard.oracle.pipeline import AnswerPipeline, Served
from extractguard.oracle.targets import Prediction, Target
from extractguard.serving.detection import Detection, Escalation, Withheld, suspended_message
from extractguard.watermark import AnswerWatermark, WatermarkDecision, WatermarkRecord

if TYPE_CHECKING:
    from extractguard.detect import Risk


@dataclass(frozen=True)
class Decision:
    """What the pipeline did with one batch.

    ``action`` is the sanction in force when the batch arrived; ``risk`` the account's risk
    after it (``None``: the tier does not detect); ``escalation`` the sanction this batch caused;
    ``withheld`` why the answer is not served (a deployment sends nothing; see ``enforce``);
    ``marks`` the watermark's marked and control rows, ``recorded`` how many of them were new to
    the record.
    """

    account: str
    tier: str
    rows: int
    at: float
    action: str = "none"
    risk: Risk | None = None
    escalation: Escalation | None = None
    withheld: Withheld | None = None
    marks: WatermarkDecision | None = None
    recorded: int = 0

    @property
    def level(self) -> float | None:
        """The account's risk level after this batch (1.0 = a detector's alarm threshold)."""
        return None if self.risk is None else float(self.risk.level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (rows of the batch by index for the watermark)."""
        return {
            "account": self.account, "tier": self.tier, "rows": self.rows, "at": self.at, "action": self.action,
            "risk": None if self.risk is None else self.risk.to_dict(),
            "escalation": None if self.escalation is None else self.escalation.evidence,
            "withheld": None if self.withheld is None else {"reason": self.withheld.reason, "message": self.withheld.message},
            "marked": None if self.marks is None else np.flatnonzero(self.marks.marked).tolist(),
            "control": None if self.marks is None else np.flatnonzero(self.marks.control).tolist(),
            "recorded": self.recorded,
        }


class AnswerPolicy(Protocol):
    """How a tier answers: the fields of a gateway tier (or an assessment defense) the pipeline reads."""

    @property
    def output(self) -> OutputSpec: ...

    @property
    def defenses(self) -> list[dict[str, Any]]: ...

    @property
    def watermark(self) -> Any: ...  # a WatermarkConfig or None


DecisionSink = Callable[[Decision], None]


class ServingPipeline(AnswerPipeline):
    """One tier's answer pipeline; see the module docstring.

    Parameters
    ----------
    target:
        The owner's model.
    output:
        What an answer reveals.
    tier:
        The tier's name (detection state is kept per ``tier/account``).
    chain:
        Defense chain, fitted (default: none).
    rng:
        The chain's randomness (a gateway shares one generator across tiers); default seed 0.
    watermark, record:
        Keyed answer watermark and where its marked and control rows are recorded.
    detection:
        The (shared, per-account) detection; ``None``: no detection and no sanctions.
    enforce:
        ``True`` (a deployment): a withheld answer is not computed.  ``False`` (an assessment):
        it is computed anyway, the decision still saying it would be withheld.
    on_decision:
        Called with every batch's :class:`Decision` (an assessment's detection timeline).
    """

    def __init__(self, target: Target, output: OutputSpec, *, tier: str = "default", chain: DefenseChain | None = None,
                 rng: np.random.Generator | None = None, watermark: AnswerWatermark | None = None,
                 record: WatermarkRecord | None = None, detection: Detection | None = None, enforce: bool = True,
                 on_decision: DecisionSink | None = None) -> None:
        self.target = target
        self.schema = target.schema
        self.output = output
        self.tier = tier
        self.chain = chain if chain is not None else DefenseChain()
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.watermark = watermark
        self.record = record
        self.detection = detection
        self.enforce = enforce
        self.on_decision = on_decision

    @classmethod
    def from_policy(cls, target: Target, policy: AnswerPolicy, *, tier: str = "default", owner_data: np.ndarray | None = None,
                    rng: np.random.Generator | None = None, master_key: bytes | None = None,
                    record: WatermarkRecord | None = None, detection: Detection | None = None, enforce: bool = True,
                    on_decision: DecisionSink | None = None) -> ServingPipeline:
        """Build a tier's pipeline from its configuration: fit the chain on ``owner_data``, key
        the watermark with ``master_key``."""
        chain = build_chain(policy.defenses).fit(target, owner_data)
        wm = None
        if policy.watermark is not None:
            if master_key is None:
                raise ConfigurationError(f"tier {tier!r} has a watermark but no master key was given")
            wm = AnswerWatermark.from_config(master_key, policy.watermark, target.schema.low, target.schema.high)
        return cls(target, policy.output, tier=tier, chain=chain, rng=rng, watermark=wm, record=record, detection=detection,
                   enforce=enforce, on_decision=on_decision)

    def admit(self, account: str, rows: int, token: str | None, limiter: Any) -> Withheld | None:
        """The sanction in force, applied before a request of ``rows`` rows is charged (gateway).

        ``None`` admits it.  See :meth:`Detection.admit`.
        """
        if self.detection is None:
            return None
        return self.detection.admit(account, self.tier, rows, token, limiter)

    def answer(self, account: str, X: np.ndarray, now: float, prediction: Prediction | None = None) -> Served[Decision]:
        """Answer ``account``'s validated rows ``X`` at time ``now``.

        ``prediction`` is the model's output for ``X`` when the caller already has it (the gateway
        calls the model itself: upstream servers, latency metrics); otherwise the target is asked.
        """
        n = int(X.shape[0])
        action = "none" if self.detection is None else self.detection.action(account)
        withheld = Withheld("suspended", suspended_message(account)) if action == "suspend" else None
        if withheld is not None and self.enforce:  # a suspended account's rows never reach the model
            return self._done(Served(None, Decision(account, self.tier, n, now, action, withheld=withheld), withheld=withheld.message))
        pred = self.target.predict(X) if prediction is None else prediction
        risk = escalation = None
        if self.detection is not None:  # detectors see the owner's undefended probabilities
            risk, escalation = self.detection.observe(account, self.tier, X, pred.probabilities, now)
            if escalation is not None and escalation.action == "suspend":
                withheld = Withheld("suspended", suspended_message(account))  # not even this answer
        if withheld is not None and self.enforce:
            return self._done(Served(None, Decision(account, self.tier, n, now, action, risk, escalation, withheld),
                                     withheld=withheld.message))
        p = self.chain.apply(pred.probabilities, X, self.rng) if self.chain.defenses else pred.probabilities
        logits = pred.logits if not self.chain.defenses else None  # the model's logits are its own only undefended
        marks, recorded = None, 0
        if self.watermark is not None:
            p, marks = self.watermark.apply(p, X, account)
            logits = None  # the served logits must agree with the marked probabilities
            recorded = self.record.add(account, X, marks, ts=now) if self.record is not None else int((marks.marked | marks.control).sum())
        decision = Decision(account, self.tier, n, now, action, risk, escalation, withheld, marks, recorded)
        return self._done(Served(Answer.from_probabilities(p, self.output, logits), decision, p,
                                 None if withheld is None else withheld.message))

    def _done(self, served: Served[Decision]) -> Served[Decision]:
        if self.on_decision is not None:
            self.on_decision(served.decision)
        return served
