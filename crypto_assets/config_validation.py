"""A run's op config, validated whole against its ``dg.Config`` classes before any step writes.

Dagster checks run config against its types when a run is launched, but the ranges the config
classes declare (pydantic ``Field(ge=..., le=..., gt=..., lt=...)``, validators) only when a step
builds its own config object: a bad ``train_days`` for one candidate failed that step after drift,
the split and the other candidate had run and registered a model. :func:`check_run_config` builds
every op's config object of a run at once; the warehouse resource calls it when a run starts its
steps (``Warehouse.setup_for_execution``: every step that writes opens the warehouse), and the
quickstart and the promotion sensor call it before they launch a run.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

_OPERATORS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


class RunConfigError(ValueError):
    """A run's config holds a value its op's config class refuses; the message names op, field and allowed range."""


@functools.cache
def config_classes() -> dict[str, type]:
    """Op name -> the ``dg.Config`` class its function takes, for every asset of the code location."""
    import dagster as dg

    from crypto_assets.assets import asset_modules

    classes = {}
    for assets_def in dg.load_assets_from_modules(asset_modules(lake=True)):
        compute_fn = getattr(assets_def.op, "compute_fn", None)
        if getattr(compute_fn, "has_config_arg", lambda: False)():
            classes[assets_def.op.name] = compute_fn.get_config_arg().annotation
    return classes


def allowed_range(config_class: type, field: str) -> str | None:
    """The field's declared bounds as ``2 <= train_days <= 120``, or None when it declares none."""
    info = getattr(config_class, "model_fields", {}).get(field)
    if info is None:
        return None
    lower, upper = [], []
    for constraint in info.metadata:
        for name, operator in _OPERATORS.items():
            bound = getattr(constraint, name, None)
            if bound is not None:
                (lower if name in ("ge", "gt") else upper).append((operator, bound))
    if not lower and not upper:
        return None
    flipped = {">=": "<=", ">": "<"}
    text = " ".join(f"{bound:g} {flipped[op]}" for op, bound in lower)
    text = f"{text} {field}" if text else field
    return text + "".join(f" {op} {bound:g}" for op, bound in upper)


def run_config_problems(run_config: Mapping[str, Any] | None) -> list[str]:
    """One line per value of ``run_config["ops"]`` that its op's config class refuses."""
    from pydantic import ValidationError

    problems = []
    ops = (run_config or {}).get("ops") or {}
    classes = config_classes()
    for op_name, op_config in ops.items():
        config_class = classes.get(op_name)
        if config_class is None or not isinstance(op_config, Mapping):
            continue  # not one of ours: Dagster checked it against its schema at launch
        values = op_config.get("config") or {}
        try:
            config_class(**values)
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"])
                where = f"ops.{op_name}.config" + (f".{field}" if field else "")
                bounds = allowed_range(config_class, field)
                if not field:  # a validator of the whole config: its message names the fields
                    problems.append(f"{where}: {error['msg']}")
                    continue
                value = repr(error.get("input"))[:60]
                problems.append(f"{where} = {value}: " + (f"allowed {bounds}" if bounds else error["msg"]))
        except (TypeError, ValueError) as exc:  # a validator's own error, outside pydantic's wrapping
            problems.append(f"ops.{op_name}.config: {str(exc).strip().splitlines()[0]}")
    return problems


def check_run_config(run_config: Mapping[str, Any] | None, job_name: str | None = None) -> None:
    """Raise :class:`RunConfigError` (one line, every problem) when any op's config of the run is refused."""
    problems = run_config_problems(run_config)
    if problems:
        of = f" of {job_name}" if job_name else ""
        raise RunConfigError(f"run config{of} refused before any step ran: " + "; ".join(problems))
