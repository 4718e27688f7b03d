"""`assoc train` and `assoc review suggest`, and the `--model` option of scan, check and serve.

    assoc train --db PATH [--truth DIR] --out models/NAME
    assoc review suggest --db PATH [-n 20] [--model PATH] [--json]

Exit codes: 0 success; 2 invalid input (a refused model, too few labels, a missing index).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .cli_support import CONFIG_OPTION, EXIT_OUTPUT, Failure
from .errors import AssocError
from .scan import Scorer
from .settings import Settings

MODEL_OPTION = click.option("--model", "model_path", type=click.Path(path_type=Path, exists=True),
                            help="Score pairs with a model trained by `assoc train` (its folder or model.json) "
                                 "instead of the rule table.")


def load_scorer(model_path: Path | None) -> Scorer | None:
    """The learned model at `model_path` (None: the rule table); a refused model is a usage error."""
    if model_path is None:
        return None
    from models.learned import LinearModel

    try:
        return LinearModel.load(model_path)
    except AssocError as exc:
        raise Failure(str(exc)) from exc


def _settings(config: Path | None, no_images: bool) -> Settings:
    try:
        settings = Settings.from_file(config) if config else Settings()
        return settings.replace(use_images=False) if no_images else settings
    except AssocError as exc:
        raise Failure(str(exc)) from exc


_NO_IMAGES = click.option("--no-images", is_flag=True, help="Compare product text only (faster).")


@click.command("train")
@click.option("--db", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The index file whose stores (and reviewer decisions) to train on.")
@click.option("--truth", "truth_dir", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Label pairs from a generator's truth folder (stores.csv) instead of the decisions.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for model.json and MODEL_CARD.md (e.g. models/my-market).")
@CONFIG_OPTION
@_NO_IMAGES
@click.option("--json", "as_json", is_flag=True, help="Print the training figures as JSON.")
def train_command(db: Path, truth_dir: Path | None, out_dir: Path, config: Path | None, no_images: bool,
                  as_json: bool) -> None:
    """Train a calibrated logistic model on labelled pairs of the index --db and save it to --out."""
    from models.learned import MODEL_FILE
    from models.train import train_from_index, write_card

    settings = _settings(config, no_images)
    try:
        model, data = train_from_index(db, settings, truth_dir=truth_dir, name=out_dir.name)
        model.save(out_dir)
        card = write_card(model, out_dir)
    except AssocError as exc:
        raise Failure(str(exc)) from exc
    except OSError as exc:
        raise Failure(f"{out_dir}: cannot write the model: {exc.strerror or exc}", EXIT_OUTPUT) from exc
    figures: dict[str, Any] = {"model": str(out_dir / MODEL_FILE), "card": str(card), "pairs": len(data.labels),
                               "positives": data.positives, "held_out": model.provenance.get("held_out", {})}
    if as_json:
        click.echo(json.dumps(figures, indent=2, sort_keys=True))
        return
    click.echo(f"trained on {figures['pairs']} labelled pairs ({data.positives} same operator) -> {figures['model']}")
    held_out = figures["held_out"]
    for name in ("learned", "rules"):
        if name in held_out:
            row = held_out[name]
            click.echo(f"held-out {name:8s} F1 {row['f1_at_0.5']:.3f}  average precision "
                       f"{row['average_precision']:.3f}  log loss {row['log_loss']:.3f}")
    click.echo(f"model card: {card}")


@click.command("suggest")
@click.option("--db", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The index file to suggest pairs from (pairs decided there are skipped).")
@click.option("-n", "count", type=click.IntRange(min=1), default=20, show_default=True, help="How many pairs.")
@MODEL_OPTION
@CONFIG_OPTION
@_NO_IMAGES
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random share of suggestions.")
@click.option("--json", "as_json", is_flag=True, help="Print the suggestions as JSON.")
def suggest_command(db: Path, count: int, model_path: Path | None, config: Path | None, no_images: bool, seed: int,
                    as_json: bool) -> None:
    """The pairs whose decision would teach the scorer most: most uncertain, spread over kinds of evidence."""
    from models.suggest import suggest_from_index

    scorer = load_scorer(model_path)
    try:
        suggestions = suggest_from_index(db, _settings(config, no_images), count, scorer=scorer, seed=seed)
    except AssocError as exc:
        raise Failure(str(exc)) from exc
    rows = [{"store_a": s.pair[0], "store_b": s.pair[1], "probability": round(s.probability, 4),
             "evidence": list(s.signature)} for s in suggestions]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['store_a']}\t{row['store_b']}\t{row['probability']:.3f}\t{', '.join(row['evidence'])}")
    if rows:
        click.echo(f"decide each with: assoc review --db {db} --pair A B --decision confirmed|dismissed|"
                   "shared-infrastructure", err=True)
