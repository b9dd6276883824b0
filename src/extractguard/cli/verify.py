"""``extractguard verify`` (ownership tests, evidence bundles) and ``extractguard fingerprint``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_suspect(path: Path, sample: Any, n_classes: int | None, input_shape: tuple[int, ...] | None = None) -> tuple[Any, dict[str, Any]]:
    """A suspect target from a model file or a remote target YAML, and its description for the bundle."""
    from extractguard.errors import ModelLoadError, check_readable_file

    check_readable_file(path, "suspect", ModelLoadError)
    if path.suffix.lower() in (".yaml", ".yml"):
        from extractguard.oracle.remote import RemoteTarget
        from extractguard.oracle.target_config import load_target_config

        cfg = load_target_config(path)
        t = RemoteTarget(cfg)
        return t, {"kind": "http", "url": cfg.endpoint(), "protocol": cfg.protocol, "output": str(cfg.output),
                   "target_config": path.name, "target_config_sha256": _sha256_file(path),
                   "authorization": {"owner": cfg.authorization.owner, "statement": cfg.authorization.statement}}
    from extractguard.oracle.loading import build_target, load_model_file

    loaded = load_model_file(path)
    target = build_target(loaded, sample, input_shape, n_classes)
    return target, {"kind": "file", "path": str(path), "format": loaded.kind, "sha256": _sha256_file(path)}


def register(app: typer.Typer) -> None:
    """Add ``verify`` and ``fingerprint`` to the main app."""
    from extractguard.cli import console, err_console, user_errors

    @app.command()
    @user_errors
    def verify(
        suspect: Annotated[Optional[Path], typer.Option(help="Suspect model: a model file (.pkl/.joblib/.onnx/.pt) or a remote target.yaml.")] = None,
        config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Gateway YAML whose watermark record to test against.")] = None,
        watermarks: Annotated[Optional[Path], typer.Option(help="Watermark record (watermarks.db), instead of --config.")] = None,
        account: Annotated[Optional[list[str]], typer.Option("--account", help="Account(s) to test (default: every account on record).")] = None,
        fingerprint: Annotated[Optional[Path], typer.Option(help="Fingerprint file from `extractguard fingerprint`.")] = None,
        n_classes: Annotated[Optional[int], typer.Option(help="Classes of the suspect, if its file does not say.")] = None,
        input_shape: Annotated[Optional[str], typer.Option(help="Shape of one input for a TorchScript suspect, e.g. 1,28,28.")] = None,
        alpha: Annotated[float, typer.Option(help="Accuse when a Bonferroni-corrected p-value is below this.")] = 1e-6,
        sign_key: Annotated[Optional[Path], typer.Option(help="Ed25519 private key (PEM) signing the evidence bundle.")] = None,
        bundle: Annotated[Optional[Path], typer.Option(help="Where to write the signed evidence bundle.")] = None,
        keygen: Annotated[Optional[Path], typer.Option(help="Create an Ed25519 signing key here (and KEY.pub), then exit.")] = None,
        check: Annotated[Optional[Path], typer.Option(help="Check an evidence bundle: signature, hashes, counts, p-values; exit 1 naming what fails.")] = None,
        public_key: Annotated[Optional[Path], typer.Option(help="With --check: the signer's public key (PEM) the bundle must be signed with.")] = None,
    ) -> None:
        """Prove a suspect model is a copy: watermark + fingerprint tests, p-values, signed evidence."""
        from extractguard.errors import ConfigurationError
        from extractguard.verify import evidence

        modes = [m for m in (suspect, keygen, check) if m is not None]
        if len(modes) != 1:
            raise ConfigurationError("give exactly one of --suspect (run the tests), --keygen (make a signing key) or --check (check a bundle)")
        if keygen is not None:
            priv, pub = evidence.generate_signing_key(keygen)
            console.print(f"signing key: {priv} (keep it secret)\npublic key:  {pub} (give it to whoever checks your bundles)")
            return
        if check is not None:
            pin = evidence.load_public_key_hex(public_key) if public_key is not None else None
            problems = evidence.check_bundle_file(check, pin)
            if problems:
                for p in problems:
                    err_console.print(f"[bold red]FAILED:[/] {p}", highlight=False, soft_wrap=True)
                raise typer.Exit(1)
            import json

            body = json.loads(check.read_text())["body"]
            signer = "the given public key" if pin else "the key embedded in the bundle (pass --public-key to pin the signer)"
            console.print(f"bundle intact: signature by {signer} verifies; {len(body['tests'])} tests recomputed from the raw "
                          f"answers; verdict: {body['verdict']['statement']}", highlight=False, soft_wrap=True)
            return

        assert suspect is not None
        from extractguard.verify import Fingerprint, verify_suspect
        from extractguard.watermark import WatermarkRecord

        if config is not None and watermarks is not None:
            raise ConfigurationError("give --config or --watermarks, not both")
        if config is not None:
            from extractguard.gateway import load_config

            watermarks = load_config(config, check_defenses=False).watermark_db_path
        records = []
        if watermarks is not None:
            rec = WatermarkRecord(watermarks, read_only=True)
            try:
                names = account or rec.accounts()
                if not names:
                    raise ConfigurationError(f"the watermark record {watermarks} is empty")
                records = [rec.load(a) for a in names]
            finally:
                rec.close()
        elif account:
            raise ConfigurationError("--account needs a watermark record (--config or --watermarks)")
        fp = Fingerprint.load(fingerprint) if fingerprint is not None else None
        if not records and fp is None:
            raise ConfigurationError("nothing to test against: give --config/--watermarks and/or --fingerprint")
        if bundle is not None and sign_key is None:
            raise ConfigurationError("--bundle needs --sign-key: an unsigned bundle proves nothing (make one with --keygen)")
        key = evidence.load_signing_key(sign_key) if sign_key is not None else None  # fail before querying
        sample = records[0].marked_X if records else fp.X  # type: ignore[union-attr]
        with console.status(f"querying the suspect {suspect.name}"):
            from extractguard.cli import _parse_shape

            target, described = load_suspect(suspect, sample, n_classes, _parse_shape(input_shape))
            verdict = verify_suspect(target, records, fp, alpha=alpha)

        table = Table(title=f"Ownership tests against {suspect.name}")
        for col in ("test", "account", "k / n", "null rate p0", "p-value", "Bonferroni p"):
            table.add_column(col, justify="right" if col not in ("test", "account") else "left")
        for t, c in zip(verdict.tests, verdict.corrected):
            name = f"{t.name} ({t.extra['method']})" if "method" in t.extra else t.name
            table.add_row(name, t.account or "-", f"{t.k} / {t.n}", f"{t.p0:.4g}", f"{t.p_value:.3g}", f"{c:.3g}")
        console.print(table)
        for t in verdict.tests:
            console.print(f"[dim]{t.name}{' ' + repr(t.account) if t.account else ''}: {t.null}[/]", highlight=False, soft_wrap=True)
        console.print(f"[bold]{verdict.describe()}[/]", highlight=False, soft_wrap=True)
        if key is not None:
            out = bundle or Path("extractguard-evidence.json")
            body = evidence.build_bundle(verdict, described, {"fingerprint_file": str(fingerprint) if fingerprint else None,
                                                               "watermark_record": str(watermarks) if watermarks else None})
            evidence.write_bundle(evidence.sign_bundle(body, key), out)
            console.print(f"signed evidence bundle: {out}  (check with: extractguard verify --check {out})", soft_wrap=True)

    @app.command("fingerprint")
    @user_errors
    def fingerprint_cmd(
        out: Annotated[Path, typer.Option(help="Fingerprint file to write (JSON).")],
        victim: Annotated[Optional[str], typer.Option(help="Built-in victim DATASET-ARCH to fingerprint.")] = None,
        model: Annotated[Optional[Path], typer.Option(help="Your model file (.pkl/.joblib/.onnx/.pt).")] = None,
        data: Annotated[Optional[Path], typer.Option(help="With --model: your labelled data (.csv with a label column, .npz with X and y).")] = None,
        points: Annotated[int, typer.Option(help="Fingerprint points.")] = 400,
        margin: Annotated[float, typer.Option(help="Probability margin of the points over the decision boundary.")] = 0.2,
        references: Annotated[int, typer.Option(help="Independently trained models calibrating the null rate.")] = 8,
        seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    ) -> None:
        """Fingerprint your model (IPGuard boundary points, conferrable selection) for `verify --fingerprint`."""
        from extractguard.errors import ConfigurationError
        from extractguard.verify.fingerprint import fingerprint_model

        if (victim is None) == (model is None):
            raise ConfigurationError("give exactly one of --victim or --model")
        with console.status("stealing your own model, training reference models, selecting boundary points"):
            if victim is not None:
                from extractguard.victims import build_victim

                v = build_victim(victim, seed=seed)
                target, X, y = v.target, v.dataset.X[v.splits.train], v.dataset.y[v.splits.train]
            else:
                from extractguard.data.files import load_table
                from extractguard.oracle.loading import build_target, load_model_file

                if data is None:
                    raise ConfigurationError("--model needs --data: your labelled data (references are trained on it)")
                X, y = load_table(data, what="owner data")
                if y is None:
                    raise ConfigurationError(f"{data.name} has no label column; references need the true labels")
                target = build_target(load_model_file(model), X)  # type: ignore[arg-type]
            fp = fingerprint_model(target, X, y, n_points=points, margin=margin, n_references=references, seed=seed)
        fp.save(out)
        console.print(f"fingerprint: {len(fp.labels)} points; reference agreement {min(fp.reference_agreements)}-"
                      f"{max(fp.reference_agreements)} of {len(fp.labels)}; null rate p0 = {fp.p0:.3f}; written to {out}", soft_wrap=True)
