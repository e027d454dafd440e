"""``rai suites``: list the registered eval suites, their metrics and parameters."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
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
            # Suite text is plain text: escaped, so a bracket in it is never taken for markup.
            console.print(
                f"[bold]{escape(s['name'])}[/] v{s['version']} ({s['concern']}): {escape(s['title'])}"
            )
            console.print(f"  {escape(s['description'])}", highlight=False)
            metrics = Table("metric", "better", "definition", show_edge=False, title_justify="left")
            every = [*s["metrics"], *s["judge_metrics"]]
            for m in s["metrics"]:
                metrics.add_row(m["name"], m["direction"], escape(m["definition"]))
            for m in s["judge_metrics"]:
                metrics.add_row(m["name"], m["direction"], escape(f"(with `judge:`) {m['definition']}"))
            console.print(metrics)
            # Where each metric comes from and how it departs from the paper: an auditor reads
            # this before trusting a number (the report's Method section says the same).
            for source in dict.fromkeys(m["source"] for m in every if m.get("source")):
                console.print(escape(f"  source: {source}"), highlight=False)
            deviations = [m for m in every if m.get("deviation")]
            if deviations:
                console.print("  deviations from the paper:", highlight=False)
            for m in deviations:
                console.print(escape(f"  - {m['name']}: {m['deviation']}"), highlight=False)
            if s["judge_rubrics"]:
                console.print(f"  judge rubrics: {escape(', '.join(s['judge_rubrics']))}", highlight=False)
            params = Table("parameter", "type", "default", "description", show_edge=False)
            for p in s["params"]:
                params.add_row(p["name"], p["type"], escape(p["default"]), escape(p["description"]))
            console.print(params)
            console.print()
