"""``rai suites``: list the registered eval suites, their metrics and parameters."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["describe_suites", "register"]


def _param_rows(params_model: Any) -> list[dict[str, str]]:
    rows = []
    for name, field in params_model.model_fields.items():
        annotation = field.annotation
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        rows.append(
            {"name": name, "type": type_name, "default": default, "description": field.description or ""}
        )
    return rows


def describe_suites() -> list[dict[str, Any]]:
    """Every registered suite with its version, concern, metrics and parameters."""
    from rai_harness.suites import get_suite_class, known_suites

    out = []
    for name in known_suites():
        cls = get_suite_class(name)
        out.append(
            {
                "name": name,
                "version": cls.version,
                "concern": cls.concern,
                "title": cls.title,
                "description": cls.description,
                "metrics": [m.model_dump(mode="json") for m in cls.metrics],
                "judge_rubrics": list(getattr(cls, "judge_rubrics", ())),
                "judge_metrics": [m.model_dump(mode="json") for m in getattr(cls, "judge_metrics", ())],
                "params": _param_rows(cls.Params),
            }
        )
    return out


def register(app: typer.Typer) -> None:
    """Add ``rai suites`` to the CLI."""

    @app.command()
    def suites(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """List eval suites: what each measures, its metrics and its parameters."""
        console = Console()
        described = describe_suites()
        if as_json:
            console.print_json(json.dumps(described))
            return
        for s in described:
            console.print(f"[bold]{s['name']}[/] v{s['version']} ({s['concern']}): {s['title']}")
            console.print(f"  {s['description']}", highlight=False)
            metrics = Table("metric", "better", "definition", show_edge=False, title_justify="left")
            for m in s["metrics"]:
                metrics.add_row(m["name"], m["direction"], m["definition"])
            for m in s["judge_metrics"]:
                metrics.add_row(m["name"], m["direction"], f"(with `judge:`) {m['definition']}")
            console.print(metrics)
            if s["judge_rubrics"]:
                console.print(f"  judge rubrics: {', '.join(s['judge_rubrics'])}", highlight=False)
            params = Table("parameter", "type", "default", "description", show_edge=False)
            for p in s["params"]:
                params.add_row(p["name"], p["type"], p["default"], p["description"])
            console.print(params)
            console.print()
