"""Detection commands: ``detect LOG`` (offline forensics) and ``sanctions list|clear`` (gateway).

Both map to one library call: :func:`extractguard.detect.logs.scan` and
:class:`extractguard.detect.DetectionStore`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from extractguard.cli.gateway import ConfigOpt, StateOpt, _DEFAULT_STATE


def _monitor_inputs(config: Optional[Path], victim: Optional[str], tier: Optional[str], reference: Optional[Path]) -> tuple[Any, Any, Any]:
    """(target, reference rows, tier DetectionConfig or None) from --config or --victim."""
    from extractguard.detect.policy import DetectionConfig
    from extractguard.errors import ConfigurationError

    if config is not None and victim is not None:
        raise ConfigurationError("give --config or --victim, not both")
    dc: DetectionConfig | None = None
    target = ref = None
    if config is not None:
        from extractguard.gateway import load_config
        from extractguard.gateway.backend import build_backend
        from extractguard.serving import reference_rows

        cfg = load_config(config)
        if tier is not None and tier not in cfg.tiers:
            raise ConfigurationError(f"no tier {tier!r} in {config.name}; tiers: {', '.join(cfg.tiers)}")
        names = [tier] if tier else [n for n, t in cfg.tiers.items() if t.detection is not None]
        dc = cfg.tiers[names[0]].detection if names else None
        target, owner = build_backend(cfg.model)
        ref = reference_rows(dc or DetectionConfig(), target.schema.n_features, owner, victim=cfg.model.victim, seed=cfg.model.seed)
    elif victim is not None:
        from extractguard.victims import build_victim

        v = build_victim(victim)
        target, ref = v.target, v.probe()[0]
    if reference is not None:
        if target is None:
            raise ConfigurationError("--reference needs the model too (--victim or --config)")
        from extractguard.serving import load_reference

        ref = load_reference(reference, target.schema.n_features)
    return target, ref, dc


def register(app: typer.Typer) -> None:
    """Add ``detect`` and ``sanctions`` to the main ``extractguard`` app."""
    from extractguard.cli import console, user_errors

    sanctions_app = typer.Typer(help="List or lift the gateway's detection sanctions.", no_args_is_help=True)
    app.add_typer(sanctions_app, name="sanctions")

    @app.command()
    @user_errors
    def detect(
        log: Annotated[Path, typer.Argument(help="Gateway audit.db, or a .jsonl / .csv request log.")],
        config: ConfigOpt = None,
        victim: Annotated[Optional[str], typer.Option(help="Zoo victim that answered the log (instead of --config).")] = None,
        tier: Annotated[Optional[str], typer.Option(help="Tier whose detection: settings to use (default: the first with one).")] = None,
        reference: Annotated[Optional[Path], typer.Option(help="Owner's held-out rows (.npy/.npz/.csv) to calibrate on.")] = None,
        baseline: Annotated[Optional[float], typer.Option(help="Honest rows per hour of one account (enables the rate detector).")] = None,
        detectors: Annotated[Optional[str], typer.Option(help="Comma-separated detectors (default: all the data allows).")] = None,
        top: Annotated[int, typer.Option(help="Accounts to show.")] = 20,
        json_out: Annotated[Optional[Path], typer.Option("--json", help="Write every account's risk and evidence here.")] = None,
    ) -> None:
        """Rank the accounts of a request log by extraction risk, with the evidence."""
        from rich.markup import escape

        from extractguard.detect import DETECTORS

        chosen = [DETECTORS.canonical(n) for n in detectors.split(",")] if detectors else None  # a usage error first

        from extractguard.detect import build_monitor
        from extractguard.detect.logs import read_log, scan

        target, ref, dc = _monitor_inputs(config, victim, tier, reference)
        requests = read_log(log)
        has_inputs = any(r.X is not None for r in requests)
        base = baseline if baseline is not None else (dc.baseline_rows_per_hour if dc else None)
        names = chosen or (dc.detectors if dc and dc.detectors else None)
        if names is None:
            names = [d for d in DETECTORS if (d != "rate" or base is not None) and (not DETECTORS.entry(d).needs_data or ref is not None)
                     and (d not in ("prada", "inputs") or has_inputs)]
        if target is None:
            from extractguard.detect.monitor import DetectionMonitor, build_detectors
            from extractguard.errors import ConfigurationError

            if not has_inputs and "prada" in names:
                names = [n for n in names if n != "prada"]
            if set(names) - {"prada", "rate"} or not names:
                raise ConfigurationError("without the model (--victim or --config) only prada (logs with inputs) and rate (--baseline) can run")
            width = next(r.X.shape[1] for r in requests if r.X is not None) if has_inputs else 1
            n_classes = 1 + max(int((r.probabilities.argmax(1) if r.probabilities is not None else r.labels).max())
                                for r in requests if r.probabilities is not None or r.labels is not None) if requests else 2
            monitor = DetectionMonitor(build_detectors(names, max(n_classes, 2), width, baseline_rows_per_hour=base),
                                       max_cached_accounts=1 << 30).fit(None)
        else:
            monitor = build_monitor(target, ref, detectors=names, baseline_rows_per_hour=base,
                                    params=dc.params if dc else None, seed=dc.seed if dc else 0, max_cached_accounts=1 << 30)
        risks = scan(requests, monitor, target)
        flagged = sum(r.level >= 1 for r in risks)
        table = Table(title=f"{log.name}: {len(requests)} requests, {len(risks)} accounts, {flagged} flagged "
                            f"(detectors: {', '.join(d.name for d in monitor.detectors)})")
        for col in ("rank", "account", "queries", "risk", "detected at query", "evidence"):
            table.add_column(col, overflow="fold")
        for i, r in enumerate(risks[:top], 1):
            table.add_row(str(i), escape(r.account), str(r.queries), f"{r.level:.2f}",
                          "-" if r.first_detected is None else str(r.first_detected), escape(r.explain()))
        console.print(table)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps({"log": str(log), "detectors": [d.name for d in monitor.detectors],
                                            "accounts": [r.to_dict() for r in risks]}, indent=2))
            console.print(f"wrote {json_out}")

    @sanctions_app.command("list")
    @user_errors
    def sanctions_list(config: ConfigOpt = None, state_dir: StateOpt = _DEFAULT_STATE) -> None:
        """Accounts the gateway has flagged, throttled, challenged or suspended."""
        from rich.markup import escape

        from extractguard.cli.gateway import _config
        from extractguard.detect import DetectionStore

        cfg = _config(config, state_dir)
        store = DetectionStore(cfg.detect_path)
        try:
            acts = store.actions()
        finally:
            store.close()
        table = Table(title=f"detection sanctions in {cfg.detect_path}")
        for col in ("account", "action", "risk", "evidence"):
            table.add_column(col, overflow="fold")
        for account, a in sorted(acts.items()):
            table.add_row(escape(account), a["action"], f"{a['level']:.2f}", escape(a["evidence"].get("risk", {}).get("explanation", "")))
        console.print(table)

    @sanctions_app.command("clear")
    @user_errors
    def sanctions_clear(
        account: Annotated[str, typer.Argument(help="Account to restore.")],
        config: ConfigOpt = None,
        state_dir: StateOpt = _DEFAULT_STATE,
    ) -> None:
        """Lift an account's sanction and reset its detection state (restart or the next request
        of a running gateway on another process does not see it: clear while the gateway is stopped)."""
        from extractguard.cli.gateway import _config
        from extractguard.detect import DetectionStore
        from extractguard.errors import ConfigurationError

        cfg = _config(config, state_dir)
        store = DetectionStore(cfg.detect_path)
        try:
            if not store.clear(account, tuple(f"{t}/{account}" for t in cfg.tiers)):
                raise ConfigurationError(f"no detection state or sanction for account {account!r}")
        finally:
            store.close()
        console.print(f"cleared account {account}")
