"""The recipes: what ``gammabeta train --model NAME`` uses for the options left unset."""

from __future__ import annotations

__all__ = ["recipe", "describe_recipes", "add_recipes_epilog"]

# Recipes: what ``gammabeta train --model NAME`` uses for options left unset, per model and
# input rank (1: vectors such as MNIST-1D, 3: images). Measured on MNIST-1D, 3 seeds: see README.
_RECIPES: dict[tuple[str, int], dict] = {
    # BN MLP 256-256, dropout 0.2, AdamW (wd 0.05 on weights), one-cycle peak 0.05, 100 epochs
    ("mlp", 1): dict(hidden="256,256", dropout=0.2, epochs=100, lr=0.05),
    ("resmlp", 1): dict(hidden="256,256", dropout=0.2, epochs=100, lr=0.05),
    # 8 × (conv k3 → BN → ReLU) of 32 channels, max-pool every 2, AdamW, one-cycle
    ("cnn", 1): dict(epochs=40, lr=0.01, dropout=0.0),
    ("papercnn", 1): dict(epochs=60, lr=0.01, dropout=0.0),
    ("resnet", 1): dict(epochs=40, lr=0.01, dropout=0.0),
    # images: a lighter CNN (pool after every conv) so an epoch of MNIST takes seconds
    ("cnn", 3): dict(epochs=15, lr=0.01, dropout=0.0,
                     model_options=dict(layers=4, pool_every=1)),
    ("resnet", 3): dict(epochs=10, lr=0.01, dropout=0.0),
}
_FALLBACK = dict(hidden="256,256", dropout=0.2, epochs=60, lr=0.01)


def recipe(model: str, input_rank: int) -> dict:
    """The default options of ``model`` for inputs of rank ``input_rank`` (2 counts as 1)."""
    rank = 1 if input_rank <= 2 else 3
    return dict(_RECIPES.get((model, rank), _RECIPES.get((model, 1), _FALLBACK)))


def add_recipes_epilog(parser) -> None:
    """Give ``parser`` :func:`describe_recipes` as its epilog when its help is shown, not
    before: the description imports the model builders (and NumPy), which ``gammabeta
    --help`` and every other command's start do without."""
    plain_help = parser.format_help

    def format_help() -> str:
        parser.epilog = parser.epilog or describe_recipes()
        return plain_help()

    parser.format_help = format_help


def describe_recipes() -> str:
    """Every model's effective defaults, for ``gammabeta train --help``: its recipe for
    vectors (MNIST-1D, CSV rows) and for images, plus its builder's own sizes."""
    import inspect

    from .models import BUILDERS

    skip = {"input_shape", "num_classes", "rng", "norm", "act", "weight_init", "bias_init",
            "gamma_init", "beta_init", "hidden", "dropout", "norm_options"}
    lines = ["recipes: what each --model uses for the options above left unset (the other",
             "defaults are the same for every model); vectors: samples of shape (N, features)",
             "or (N, C, L); images: (N, C, H, W)"]
    for model in sorted(BUILDERS):
        own = {k: p.default for k, p in inspect.signature(BUILDERS[model]).parameters.items()
               if k not in skip and p.default is not inspect.Parameter.empty}
        for rank, what in ((1, "vectors"), (3, "images")):
            rec = recipe(model, rank)
            sizes = {**own, **rec.pop("model_options", {})}
            text = ", ".join(f"{k} {v}" for k, v in {**rec, **sizes}.items())
            head = f"  {model:<9}" if rank == 1 else " " * 11
            lines.append(f"{head}{what + ':':<9}{text}")
    return "\n".join(lines)
