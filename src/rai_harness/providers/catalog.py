"""Human-readable catalogue of provider kinds and their settings (``rai providers``)."""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticUndefined

__all__ = ["describe_kinds"]

# Shared knobs are listed once per kind anyway: users read one kind at a time.


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("NoneType", "None")


def describe_kinds() -> list[dict[str, Any]]:
    """Every registered kind with its description and fields (name, type, default, description)."""
    from rai_harness.providers import get_config_class, list_kinds

    out: list[dict[str, Any]] = []
    for kind in list_kinds():
        try:
            cls = get_config_class(kind)
        except Exception as exc:  # a broken third-party plugin must not hide the others
            out.append({"kind": kind, "description": f"(cannot load: {exc})", "fields": []})
            continue
        fields: list[dict[str, str]] = []
        for name, info in cls.model_fields.items():
            if name == "kind":
                continue
            if info.default is not PydanticUndefined:
                default = repr(info.default)
            elif info.default_factory is not None:
                default = "(empty)"
            else:
                default = "(required)"
            fields.append(
                {
                    "name": name,
                    "type": _type_name(info.annotation),
                    "default": default,
                    "description": info.description or "",
                }
            )
        out.append({"kind": kind, "description": cls.description, "fields": fields})
    return out
