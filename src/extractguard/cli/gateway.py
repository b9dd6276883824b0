"""Gateway commands: ``serve``, ``keys create|revoke|list``, ``audit verify``.

Each maps to one library call in :mod:`extractguard.gateway`.  Without ``--config`` they all use
the embedded default (a zoo victim, SQLite state in ``--state-dir``), so ``extractguard serve``
followed by ``extractguard keys create`` works out of the box.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Gateway YAML file (see examples/gateway.yaml).")]
StateOpt = Annotated[Path, typer.Option(help="State directory of the embedded default (ignored with --config).")]
_DEFAULT_STATE = Path("extractguard-gateway")


def _config(config: Optional[Path], state_dir: Path, victim: str = "mnist-cnn", serving: bool = False):  # type: ignore[no-untyped-def]
    from extractguard.gateway import default_config, load_config

    # Admin commands need only paths and tier names; serve checks the defense chains fully.
    return load_config(config, check_defenses=serving) if config is not None else default_config(state_dir, victim)


def register(app: typer.Typer) -> None:
    """Add the gateway commands to the main ``extractguard`` app."""
    from extractguard.cli import console, err_console, user_errors

    keys_app = typer.Typer(help="Create, revoke and list gateway API keys.", no_args_is_help=True)
    audit_app = typer.Typer(help="Check the gateway's hash-chained audit log.", no_args_is_help=True)
    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")

    @app.command()
    @user_errors
    def serve(
        config: ConfigOpt = None,
        host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
        state_dir: StateOpt = _DEFAULT_STATE,
        victim: Annotated[str, typer.Option(help="Zoo victim served by the embedded default.")] = "mnist-cnn",
    ) -> None:
        """Run the protection gateway (Open Inference Protocol) in front of a model."""
        import uvicorn

        from extractguard.gateway import create_app
        from extractguard.gateway.logs import configure_json_logging

        cfg = _config(config, state_dir, victim, serving=True)
        with console.status(f"loading model {cfg.model.name}"):
            application = create_app(cfg)
        configure_json_logging()
        tiers = ", ".join(cfg.tiers)
        console.print(f"gateway for model [bold]{cfg.model.name}[/] on http://{host}:{port}  (tiers: {tiers}; state: {cfg.state_dir})", soft_wrap=True)
        where = f"--config {config}" if config is not None else f"--state-dir {state_dir}"
        console.print(f"create a key:  extractguard keys create --account NAME --tier {next(iter(cfg.tiers))} {where}", soft_wrap=True)
        console.print(f"then:  curl -H 'Authorization: Bearer KEY' -d @request.json http://{host}:{port}/v2/models/{cfg.model.name}/infer", soft_wrap=True)
        # proxy_headers=False: uvicorn would otherwise rewrite the client address from
        # X-Forwarded-For itself; the gateway's own trusted_proxies setting must decide that.
        uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False)

    @keys_app.command("create")
    @user_errors
    def keys_create(
        account: Annotated[str, typer.Option(help="Account the key belongs to.")],
        tier: Annotated[str, typer.Option(help="Tier of the account (from the config).")],
        config: ConfigOpt = None,
        state_dir: StateOpt = _DEFAULT_STATE,
    ) -> None:
        """Create an API key.  The key is printed once; only its hash is stored."""
        from extractguard.errors import ConfigurationError
        from extractguard.gateway import KeyStore

        cfg = _config(config, state_dir)
        if tier not in cfg.tiers:
            raise ConfigurationError(f"unknown tier {tier!r}; the config defines: {', '.join(cfg.tiers)}")
        key = KeyStore(cfg.keys_path).create(account, tier)
        err_console.print(f"key for account {account!r} (tier {tier}); store it now, it cannot be shown again:")
        console.print(key, highlight=False, soft_wrap=True)

    @keys_app.command("revoke")
    @user_errors
    def keys_revoke(
        key_id: Annotated[str, typer.Argument(help="Key id (second part of the key) or the whole key.")],
        config: ConfigOpt = None,
        state_dir: StateOpt = _DEFAULT_STATE,
    ) -> None:
        """Revoke a key: the next request with it gets 401, in every replica."""
        from extractguard.gateway import KeyStore

        info = KeyStore(_config(config, state_dir).keys_path).revoke(key_id)
        console.print(f"revoked key {info.key_id} of account {info.account!r}")

    @keys_app.command("list")
    @user_errors
    def keys_list(config: ConfigOpt = None, state_dir: StateOpt = _DEFAULT_STATE) -> None:
        """List keys (ids, accounts, tiers, status) — never the secrets."""
        from extractguard.gateway import KeyStore

        table = Table(title="API keys")
        for col in ("key id", "account", "tier", "created (UTC)", "status"):
            table.add_column(col)
        for k in KeyStore(_config(config, state_dir).keys_path).list():
            created = _dt.datetime.fromtimestamp(k.created, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(k.key_id, k.account, k.tier, created, "active" if k.revoked is None else "revoked")
        console.print(table)

    @audit_app.command("verify")
    @user_errors
    def audit_verify(
        config: ConfigOpt = None,
        state_dir: StateOpt = _DEFAULT_STATE,
        path: Annotated[Optional[Path], typer.Option(help="Audit database (default: from the config).")] = None,
    ) -> None:
        """Check the hash chain; exit 1 and name the first edited or deleted record."""
        from extractguard.gateway import verify_file

        target = path if path is not None else _config(config, state_dir).audit_path
        result = verify_file(target)
        if not result.ok:
            err_console.print(f"[bold red]TAMPERED:[/] {result.problem} ({target})", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        console.print(f"audit log intact: {result.records} records; head hash {result.head_hash}", soft_wrap=True)
