"""Run configuration files: pydantic models, YAML loading and errors that say how to fix them.

A run config selects providers and what to send them; it holds no code and no secrets
(API keys are named by environment variable). Every problem is reported as a
:class:`~rai_harness.errors.ConfigError` naming the file, the key path
(``providers[1].timeout_s``) and what is expected, before any request is sent.

Example::

    name: smoke
    seed: 1234
    providers:
      - kind: openai
        id: gpt-4o-mini
        model: gpt-4o-mini
        api_key_env: OPENAI_API_KEY
    prompts:
      path: datasets/smoke_prompts.jsonl
      repeats: 1
    runner:
      max_error_rate: 0.05
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from rai_harness.errors import ConfigError, MissingSecretError
from rai_harness.load.profiles import LoadProfile
from rai_harness.markdown import require_printable
from rai_harness.pricing import PriceEntry
from rai_harness.providers.base import ProviderConfig
from rai_harness.validation import MAX_WAIT_S, format_validation_error, read_yaml_file

__all__ = [
    "PromptSource",
    "RunConfig",
    "RunnerSettings",
    "SuiteSelection",
    "check_secrets",
    "load_run_config",
    "parse_run_config",
]


class PromptSource(BaseModel):
    """What to send: a JSONL/CSV file of prompts or an inline list.

    A file row has ``prompt`` (a string) or ``messages`` (OpenAI-style list) and an
    optional ``id``; the replay provider's capture files have the same shape, so one file
    can be both the prompt source and the captured responses.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(None, description="JSONL file with `prompt` or `messages` per line.")
    items: list[str] | None = Field(None, description="Inline prompts.")
    system: str | None = Field(None, description="System prompt added to every prompt-only row.")
    repeats: int = Field(1, ge=1, le=1000, description="Independent completions per prompt (k).")
    limit: int | None = Field(None, ge=1, description="Use only the first N prompts.")

    @model_validator(mode="after")
    def _one_source(self) -> PromptSource:
        if (self.path is None) == (self.items is None):
            raise ValueError("give exactly one of `path` (a JSONL file) or `items` (a list of prompts)")
        return self


class SuiteSelection(BaseModel):
    """One eval suite of a run: its registered name, parameters and (optionally) providers.

    In YAML a bare string (``- toxicity``) selects a suite with default parameters.
    Parameters are validated by the suite's own model when the run is planned.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., description="Registered suite name (`rai suites` lists them).")
    params: dict[str, Any] = Field(default_factory=dict, description="The suite's parameters.")
    providers: list[str] | None = Field(None, description="Run only on these provider ids (default: all).")
    judge: str | None = Field(
        None,
        description="Id of a provider in `judges` that grades this suite's outputs (model-graded metrics).",
    )
    judge_repeats: int = Field(
        1,
        ge=1,
        le=20,
        description="Times the judge grades each output (flip rate, variance-aware intervals).",
    )
    judge_calibration: str | None = Field(
        None,
        description="calibration.json written by `rai judge calibrate` for this judge: its agreement is "
        "shown beside the judged metrics and gated as `<suite>:judge_kappa`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class RunnerSettings(BaseModel):
    """Run-wide runner settings (per-provider knobs live on each provider)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_error_rate: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Mark the run failed when a provider's failed-call share exceeds this.",
    )
    # Bounded above: every wait of a run is (`.inf` hung a run on a failing endpoint).
    backoff_base_s: float = Field(
        0.5, gt=0, le=MAX_WAIT_S, description="First retry waits about this long (seconds)."
    )
    backoff_max_s: float = Field(30.0, gt=0, le=MAX_WAIT_S, description="Longest computed backoff (seconds).")
    max_retry_after_s: float = Field(
        120.0,
        gt=0,
        le=MAX_WAIT_S,
        description="Longest server-requested wait honoured (Retry-After), seconds.",
    )
    retry_failed_on_resume: bool = Field(
        True, description="On resume, call again the samples that failed (journaled successes are reused)."
    )
    engine: Literal["local", "ray"] = Field(
        "local",
        description="Where calls run: `local` (this process) or `ray` (Ray actors; needs the `ray` extra).",
    )
    ray_address: str | None = Field(
        None,
        min_length=1,
        description="With engine `ray`: the cluster to join (`auto`, `HOST:PORT`); default: start a "
        "local Ray instance bound to 127.0.0.1.",
    )
    ray_workers: int = Field(
        2,
        ge=1,
        le=1024,
        description="With engine `ray`: call actors; each provider's limits are split among them.",
    )
    ray_score_min_texts: int = Field(
        2000,
        ge=0,
        description="With engine `ray`: classifier calls of at least this many texts score on Ray Data; "
        "smaller ones in this process (Ray Data costs seconds to start).",
    )


class RunConfig(BaseModel):
    """A whole run config file."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    # Printable only: the name titles the console summary, the report and the gate's Markdown.
    name: Annotated[str, AfterValidator(require_printable)] = Field("run", min_length=1)
    description: str | None = None
    seed: int = Field(0, strict=True)  # strict: `seed: true` is not seed 1
    output_dir: str | None = Field(None, description="Default: reports/<name>.")
    providers: list[ProviderConfig]
    judges: list[ProviderConfig] = Field(
        default_factory=list,
        description="Providers that grade suites' outputs (`judge:` on a suite); never audited, their "
        "calls, latency and cost are reported apart.",
    )
    prompts: PromptSource | None = Field(None, description="Plain prompts to send (no scoring).")
    suites: list[SuiteSelection] = Field(default_factory=list, description="Eval suites to run and score.")
    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    load: LoadProfile | None = Field(
        None,
        description="When calls start: concurrency (default), constant or poisson rate, or a sweep of rates.",
    )
    pricing: list[PriceEntry] = Field(
        default_factory=list, description="Entries consulted before the shipped table."
    )
    price_table: str | None = Field(None, description="Replace the shipped price table by this YAML file.")

    @model_validator(mode="after")
    def _unique_ids(self) -> RunConfig:
        seen: set[str] = set()
        for i, provider in enumerate(self.providers):
            pid = provider.provider_id
            if pid in seen:
                first = next(j for j, p in enumerate(self.providers) if p.provider_id == pid)
                raise ValueError(
                    f"providers[{first}] and providers[{i}] both have the id {pid!r}; give each a distinct `id`"
                )
            seen.add(pid)
        if not self.providers:
            raise ValueError("at least one provider is needed")
        judge_ids: set[str] = set()
        for judge in self.judges:
            jid = judge.provider_id
            if judge.guard is not None:
                raise ValueError(f"judge {jid!r} has a `guard`: judges grade outputs and are not guarded")
            if jid in seen or jid in judge_ids:
                raise ValueError(
                    f"judge id {jid!r} is already used by a provider or another judge; give each a distinct `id`"
                )
            judge_ids.add(jid)
        names = [s.name for s in self.suites]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"suite {dupes[0]!r} is listed twice; list each suite once")
        if self.load is not None and self.load.profile == "sweep" and self.suites:
            raise ValueError(
                "a `load` sweep is a load test over `prompts` (its stages cycle them and it stops at "
                "saturation, so suite samples would be scored unevenly): run the suites in a separate "
                "config, or use a `constant`/`poisson` profile"
            )
        if self.load is not None and self.load.is_rate:
            top = max(self.load.sweep_rates())
            for provider in self.providers:
                if provider.rpm is not None and provider.rpm / 60.0 < top:
                    # The rpm limiter would hold calls back after the schedule started them:
                    # the stage would silently measure a lower rate than it reports.
                    raise ValueError(
                        f"provider {provider.provider_id!r} has rpm {provider.rpm:g} ({provider.rpm / 60:.3g} "
                        f"req/s) but `load` asks for up to {top:g} req/s; raise or remove its `rpm`, or "
                        "lower the rates"
                    )
        for sel in self.suites:
            for pid in sel.providers or []:
                if pid not in seen:
                    raise ValueError(
                        f"suite {sel.name!r} names provider {pid!r}, which is not in `providers` "
                        f"(ids: {', '.join(sorted(seen))})"
                    )
            if sel.judge is not None and sel.judge not in judge_ids:
                raise ValueError(
                    f"suite {sel.name!r} names judge {sel.judge!r}, which is not in `judges` "
                    f"(judge ids: {', '.join(sorted(judge_ids)) or 'none'})"
                )
            if sel.judge is None and (sel.judge_repeats != 1 or sel.judge_calibration):
                raise ValueError(f"suite {sel.name!r} sets judge_repeats/judge_calibration but no `judge`")
        return self

    @property
    def all_providers(self) -> list[ProviderConfig]:
        """Audited providers and judges (for secrets and requirements)."""
        return [*self.providers, *self.judges]

    def snapshot(self) -> dict[str, Any]:
        """The config as plain data for the run record (env var *names* only, never values)."""
        data = self.model_dump(mode="json", exclude={"providers", "judges"})
        data["providers"] = [p.model_dump(mode="json") for p in self.providers]
        data["judges"] = [p.model_dump(mode="json") for p in self.judges]
        return data

    def provider(self, provider_id: str) -> ProviderConfig:
        """The provider config with this id."""
        for p in self.providers:
            if p.provider_id == provider_id:
                return p
        raise KeyError(provider_id)


def parse_provider(data: Any, *, file: str | None, key_path: str) -> ProviderConfig:
    """Validate one provider mapping with the config class of its ``kind``."""
    from rai_harness.providers import get_config_class

    if not isinstance(data, Mapping):
        raise ConfigError(
            "each provider must be a mapping with at least `kind` and `model`", file=file, key_path=key_path
        )
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(
            "`kind` is required (see `rai providers` for the kinds)", file=file, key_path=f"{key_path}.kind"
        )
    try:
        cls = get_config_class(kind)
    except ConfigError as exc:
        raise ConfigError(exc.detail, file=file, key_path=f"{key_path}.kind") from exc
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        raise format_validation_error(exc, file, key_path, cls) from exc


def parse_run_config(data: Any, *, file: str | None = None) -> RunConfig:
    """Validate an already-parsed YAML document as a :class:`RunConfig`."""
    if not isinstance(data, Mapping):
        raise ConfigError("the file must hold a mapping (keys like name, providers, prompts)", file=file)
    raw_providers = data.get("providers")
    if raw_providers is None:
        raise ConfigError(
            "this key is required but missing: list the providers to evaluate",
            file=file,
            key_path="providers",
        )
    if not isinstance(raw_providers, list):
        raise ConfigError("must be a list of provider mappings", file=file, key_path="providers")
    providers = [
        parse_provider(p, file=file, key_path=f"providers[{i}]") for i, p in enumerate(raw_providers)
    ]
    raw_judges = data.get("judges") or []
    if not isinstance(raw_judges, list):
        raise ConfigError("must be a list of provider mappings (the judges)", file=file, key_path="judges")
    judges = [parse_provider(p, file=file, key_path=f"judges[{i}]") for i, p in enumerate(raw_judges)]
    body = {k: v for k, v in data.items() if k not in ("providers", "judges")}
    try:
        return RunConfig.model_validate({**body, "providers": providers, "judges": judges})
    except ValidationError as exc:
        raise format_validation_error(exc, file, "", RunConfig) from exc


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run config YAML file.

    Relative paths inside the file (``prompts.path``, replay files, ``price_table``) are
    resolved by the planner against the config file's folder.

    Raises:
        ConfigError: naming the file, key path and fix.
    """
    return parse_run_config(read_yaml_file(path), file=str(path))


def check_secrets(
    config: RunConfig, *, file: str | None = None, environ: Mapping[str, str] | None = None
) -> None:
    """Raise :class:`MissingSecretError` for the first provider variable that is unset or empty."""
    env = os.environ if environ is None else environ
    for section, items in (("providers", config.providers), ("judges", config.judges)):
        for i, provider in enumerate(items):
            for key, variable in provider.secret_env_vars().items():
                if not env.get(variable):
                    raise MissingSecretError(variable, key_path=f"{section}[{i}].{key}", file=file)


def secret_values(config: RunConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of every secret variable the config names (to scrub them from outputs)."""
    env = os.environ if environ is None else environ
    values = []
    for provider in config.all_providers:
        for variable in provider.secret_env_vars().values():
            value = env.get(variable)
            if value:
                values.append(value)
    return values
