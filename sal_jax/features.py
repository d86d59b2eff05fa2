"""Features by name: any Linen module that returns logits becomes a level, its features named, not rewritten.

`FeaturesByName(model, ("block_*",))` is a level (sal_jax.levels' contract) whose features are the outputs of
the submodules of `model` named by module paths or patterns. The outputs are recorded by a method interceptor
(`flax.linen.intercept_methods`, what `capture_intermediates` uses) while `model` runs: no second forward
pass, no extra program, the same FLOPs as a `(logits, features)` version of the model. The model shares the
wrapper's scope (`nn.share_scope`), so its variables are exactly its own: params made for or by the bare
model (e.g. a pretrained checkpoint) fit the level as they are.

Names: a path is the submodules' names joined by "/" ("block_0", "encoder/layer_3"); a pattern matches
component by component with fnmatch ("block_*" matches "block_0" but not "block_0/Dense_0"). Features come
in the order of `names`, and each pattern's matches in natural path order (numbers compared as numbers:
"block_2" before "block_10"), which for a stack of blocks is depth order: the order relative-depth alignment
reads them in. A submodule called more than once contributes its first call's output.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any, Iterable, Sequence

import flax.linen as nn
import jax

from sal_jax.errors import ConfigError
from sal_jax.levels import takes_train_flag


def path_matches(pattern: str, path: str) -> bool:
    """Whether a "/"-joined module path matches a pattern, component by component (fnmatch in each)."""
    parts, wanted = path.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted))


def natural_key(path: str) -> list[Any]:
    """Sort key comparing the numbers in a path as numbers: "block_2" < "block_10"."""
    return [int(piece) if piece.isdigit() else piece for piece in re.split(r"(\d+)", path)]


def select_features(outputs: dict[str, Any], names: Sequence[str], level: str, batch: int) -> tuple[jax.Array, ...]:
    """The named outputs, in the order of `names` (a pattern's matches in natural order), each checked to be
    an array with the batch first. A name that matches nothing is an error that lists the paths there are."""
    chosen: list[str] = []
    for name in names:
        matched = sorted((path for path in outputs if path_matches(name, path)), key=natural_key)
        if not matched:
            raise ConfigError(f"level {level}: feature name {name!r} matches no submodule; its submodules are "
                              f"{sorted(outputs, key=natural_key)}")
        chosen += [path for path in matched if path not in chosen]
    for path in chosen:
        value = outputs[path]
        if not (hasattr(value, "shape") and value.ndim >= 1 and value.shape[0] == batch):
            raise ConfigError(f"level {level}: feature {path!r} is not an array with the batch ({batch}) first; "
                              f"name a submodule that returns one array (got {type(value).__name__})")
    return tuple(outputs[path] for path in chosen)


def check_names(names: Iterable[str], level: str) -> tuple[str, ...]:
    names = tuple(names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"level {level}: features needs one or more module paths or patterns, got {names!r}")
    return names


class FeaturesByName(nn.Module):
    """A level from a module that returns logits: `__call__(x, train)` -> (model's logits, named features).

    `model` is called with `train` only if its `__call__` takes it. See the module docstring for names.
    """

    model: nn.Module
    names: tuple[str, ...]

    def setup(self) -> None:
        nn.share_scope(self, self.model)  # the model's variables stay at the root: its own params fit

    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        level = type(self.model).__name__
        names = check_names(self.names, level)
        outputs: dict[str, Any] = {}
        depth = len(self.model.path)  # the model's own path: recorded paths are relative to it

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            path = "/".join(context.module.path[depth:])
            if context.method_name == "__call__" and path and path not in outputs:
                outputs[path] = out
            return out

        kwargs = {"train": train} if takes_train_flag(self.model) else {}
        with nn.intercept_methods(record):
            logits = self.model(x, **kwargs)
        return logits, select_features(outputs, names, level, x.shape[0])
