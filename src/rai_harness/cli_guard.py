"""``rai guard``: check texts against a guard policy, or audit a policy on labelled data.

Thin, like the rest of the CLI: ``check`` calls :meth:`Guard.check_inputs` /
:meth:`Guard.check_outputs` and prints :meth:`GuardResult.to_dict`; ``audit`` calls
:func:`~rai_harness.guardrails.audit.audit_guard` and renders its report.

Exit codes: 0 success; 1 ``check --fail-on ACTION`` saw a verdict at least that strong;
2 a usage, policy, data or classifier error (the message names the file, key path or line;
for ``check --input`` every readable line is still checked and printed first).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rai_harness import jsoncodec
from rai_harness.errors import ConfigError, RaiError

__all__ = ["guard_app"]

guard_app = typer.Typer(
    help="Inline guardrails: check texts against a policy (one JSON verdict per line), or audit a "
    "policy's rails on labelled data (precision, recall, ROC-AUC, latency, unintended-bias AUCs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2

#: Lines checked per batched guard call when reading a file.
DEFAULT_BATCH = 64


class StageChoice(str, Enum):
    """Which rails to run."""

    input = "input"
    output = "output"


class FailOn(str, Enum):
    """Verdict strength that makes ``check`` exit 1."""

    block = "block"
    redact = "redact"
    flag = "flag"


_STRENGTH = {"allow": 0, "flag": 1, "redact": 2, "block": 3}


def _error(exc: BaseException) -> typer.Exit:
    # escape: a message such as "pip install 'rai-harness[serve]'" is not rich markup.
    Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_ERROR)


@dataclass(frozen=True, slots=True)
class _Item:
    """One text to check, with where it came from (or why the line could not be read)."""

    text: str
    prompt: str | None
    line: int | None
    id: Any = None
    #: Why this line was not checked (invalid UTF-8 or JSON, no string `text`...).
    error: str | None = None


def _line_error(message: str, name: str, key_path: str) -> str:
    return str(ConfigError(message, file=name, key_path=key_path))


def _read_jsonl(handle: BinaryIO, name: str) -> Iterator[_Item]:
    """Items of a JSONL stream, read as bytes so that one bad line cannot stop the rest.

    A line that is not UTF-8, not JSON, or has no string ``text`` becomes an item with
    ``error`` set (reported for that line); the lines after it are still read. JSON
    escapes of lone surrogates (``"\\ud800"``) decode fine and are repaired by the guard.
    """
    for number, raw in enumerate(handle, start=1):
        if number == 1:  # Windows tools start UTF-8 files with a byte-order mark
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        if not raw.strip():
            continue
        error = None
        row: Any = None
        try:
            # jsoncodec: a line nested too deep, or holding a number past Python's digit limit,
            # is an error of that line, not an exception that ends the run.
            row = jsoncodec.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            error = _line_error(
                f"not valid UTF-8 (byte {exc.start} of the line); re-encode the file as UTF-8",
                name,
                f"line {number}",
            )
        except json.JSONDecodeError as exc:
            error = _line_error(
                f'invalid JSON ({exc.msg}); each line must be an object like {{"text": "..."}} '
                "(pass a raw string as the TEXT argument instead)",
                name,
                f"line {number}",
            )
        if error is None and (not isinstance(row, dict) or not isinstance(row.get("text"), str)):
            error = _line_error(
                "each line must be a JSON object with a string `text` (and `prompt` for outputs)",
                name,
                f"line {number}.text",
            )
        if error is None and row.get("prompt") is not None and not isinstance(row["prompt"], str):
            error = _line_error("`prompt` must be a string", name, f"line {number}.prompt")
        if error is None and not _echoable(row.get("id")):
            error = _line_error(
                "`id` is echoed in the output and must be valid JSON there: no NaN or Infinity, no number "
                "of more than 4300 digits (use a string)",
                name,
                f"line {number}.id",
            )
        if error is not None:
            yield _Item("", None, number, error=error)
            continue
        yield _Item(row["text"], row.get("prompt"), number, row.get("id"))


def _echoable(value: Any) -> bool:
    """Whether ``value`` serialises as strict JSON (the verdict line echoes a caller's ``id``)."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:  # NaN or infinity; an int over the digit limit
        return False
    return True


def _chunks(items: Iterator[_Item], size: int) -> Iterator[list[_Item]]:
    chunk: list[_Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@guard_app.command("check")
def check(
    policy: Annotated[Path, typer.Option("--policy", "-p", help="Guard policy YAML file.")],
    text: Annotated[
        str | None, typer.Argument(help="A text to check, or '-' to read JSONL lines from stdin.")
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input", "-i", help="JSONL file: one object per line with `text` (and `prompt`, `id`)."
        ),
    ] = None,
    stage: Annotated[
        StageChoice, typer.Option("--stage", "-s", help="Run the input rails (prompts) or the output rails.")
    ] = StageChoice.input,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 when any verdict is at least this strong (block > redact > flag), e.g. "
            "`--fail-on block` in CI to fail when any input was blocked.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Lines per batched guard call.", min=1)] = DEFAULT_BATCH,
) -> None:
    """Print one JSON verdict per input: action, redacted_text, notices, per-rail scores and findings.

    The original text is never echoed: `redacted_text` is null for a blocked text, the
    redacted text for `redact`, and the text itself only for `flag` and `allow`. Findings
    carry offsets and labels only. A line of --input that cannot be read (not UTF-8, not
    JSON, no string `text`) gets {"line": N, "error": ...} instead, the other lines are
    still checked, and the exit code is then 2.
    """
    from rai_harness.guardrails import Guard
    from rai_harness.guardrails.textprep import NOTICE_OVER_MAX_CHARS

    sources = sum(x is not None for x in (text, input_file))
    if sources != 1:
        raise _error(ConfigError("give exactly one of TEXT, '-' (stdin) or --input FILE"))
    worst = "allow"
    bad_lines = 0
    failed_checks = 0  # verdicts where a rail's classifier failed or timed out
    code = EXIT_OK
    guard: Guard | None = None
    try:
        guard = Guard.from_policy(policy)
        if not guard.rails("output" if stage is StageChoice.output else "input"):
            # Every text would pass unchecked, and `--fail-on` would pass a CI step.
            other = "input" if stage is StageChoice.output else "output"
            raise ConfigError(
                f"the policy has no {stage.value} rails to check with; add some, or use --stage {other}",
                file=str(policy),
                key_path=stage.value,
            )
        for chunk in _chunks(_items(text, input_file, stage), batch_size):
            for item in chunk:
                if item.error is not None:
                    bad_lines += 1
                    Console(stderr=True).print(
                        f"[bold red]error:[/] {escape(item.error)}", highlight=False, soft_wrap=True
                    )
            good = [item for item in chunk if item.error is None]
            texts = [item.text for item in good]
            if not texts:
                results = []
            elif stage is StageChoice.output:
                has_prompts = any(item.prompt is not None for item in good)
                prompts = [item.prompt or "" for item in good] if has_prompts else None
                results = guard.check_outputs(texts, prompts)
            else:
                results = guard.check_inputs(texts)
            verdicts = iter(results)
            for item in chunk:  # in input order, bad lines in their place
                verdict: dict[str, Any] = {}
                if item.id is not None:
                    verdict["id"] = item.id
                if item.line is not None:
                    verdict["line"] = item.line
                if item.error is not None:
                    verdict["error"] = item.error
                else:
                    result = next(verdicts)
                    verdict.update(result.to_dict())
                    if _STRENGTH[result.action] > _STRENGTH[worst]:
                        worst = result.action
                    # A text over max_chars is blocked by the policy, not by a failure.
                    if result.errors and NOTICE_OVER_MAX_CHARS not in result.notices:
                        failed_checks += 1
                typer.echo(_json_line(verdict))
    except RaiError as exc:
        code = EXIT_ERROR
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    finally:
        clean = guard.close(timeout=_EXIT_WAIT_S) if guard is not None else True
    if failed_checks:
        # Each rail's on_error still decided its verdict; the exit code says the check was not
        # whole, so a CI step with --fail-on does not pass on rails that checked nothing.
        Console(stderr=True).print(
            f"[bold red]error:[/] {failed_checks} text(s) had a rail that failed or timed out (its "
            "on_error decided; see rails[].error in the verdicts)",
            highlight=False,
            soft_wrap=True,
        )
    if code == EXIT_OK and (bad_lines or failed_checks):
        code = EXIT_ERROR
    elif code == EXIT_OK and fail_on is not None and _STRENGTH[worst] >= _STRENGTH[fail_on.value]:
        code = EXIT_FAILED
    embedded = sys.stdout is not sys.__stdout__
    if not clean and not embedded:
        # A classifier call that timed out is still running on a worker thread (threads
        # cannot be stopped). Letting the interpreter finalise under it aborts inside native
        # code (libblis: "Aborting.", or a segfault in spaCy), losing the exit code: the
        # verdicts are all written, so flush and leave without finalisers. Only as the real
        # program: embedded (typer's CliRunner swaps sys.stdout), leaving the process would
        # take the host with it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code != EXIT_OK:
        raise typer.Exit(code)


def _json_line(verdict: dict[str, Any]) -> str:
    """One verdict as a JSON line; ``\\u`` escapes if a caller's ``id`` holds lone surrogates
    (the texts themselves are repaired by the guard)."""
    line = json.dumps(verdict, ensure_ascii=False, allow_nan=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(verdict, allow_nan=False)
    return line


#: Seconds ``check`` waits at exit for classifier calls still running after a rail timeout.
_EXIT_WAIT_S = 5.0


def _items(text: str | None, input_file: Path | None, stage: StageChoice) -> Iterator[_Item]:
    if text is not None and text != "-":
        yield _Item(text, None, None)
        return
    if input_file is None:
        yield from _read_jsonl(sys.stdin.buffer, "<stdin>")
        return
    try:
        handle = input_file.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read the input file: {exc.strerror}", file=str(input_file)) from exc
    with handle:
        yield from _read_jsonl(handle, str(input_file))


#: ``rai guard audit --engine ray`` scores the whole file in one batched call per classifier.
_WHOLE_FILE = 10**9


@guard_app.command("audit")
def audit(
    policy: Annotated[Path, typer.Option("--policy", "-p", help="Guard policy YAML file.")],
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Labelled CSV/TSV/JSONL: a text and a 0/1 label per row.")
    ],
    stage: Annotated[
        StageChoice, typer.Option("--stage", "-s", help="Which rails to audit.")
    ] = StageChoice.input,
    text_field: Annotated[str, typer.Option(help="Column holding the text.")] = "text",
    label_field: Annotated[
        str, typer.Option(help="Column holding the label (1 = should trigger).")
    ] = "label",
    group_field: Annotated[
        str | None,
        typer.Option(help="Column of group memberships (list or comma-separated): adds the bias AUCs."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Where the classifiers score the dataset: local, or ray (Ray Data actors, each loading "
            "every classifier once; pip install 'rai-harness\\[ray]').",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="With --engine ray: join this cluster; default: a local 127.0.0.1 one."
        ),
    ] = None,
    ray_workers: Annotated[
        int, typer.Option("--ray-workers", min=1, max=1024, help="With --engine ray: actors per classifier.")
    ] = 2,
) -> None:
    """Precision, recall, F1, ROC-AUC, latency and unintended-bias AUCs of each rail.

    With ``--engine ray`` the batched pass runs on Ray Data as one job per classifier (the
    same classifiers, so the same scores); single-text latency is still measured in this
    process, and the batched ms/text is then the cluster's wall time per text.
    """
    from rai_harness.guardrails.audit import audit_guard

    if engine not in ("local", "ray"):
        raise _error(ConfigError(f"--engine must be local or ray, not {engine!r}"))
    if engine != "ray" and (ray_address is not None or ray_workers != 2):
        raise _error(ConfigError("--ray-address and --ray-workers need --engine ray"))
    session = None
    options: dict[str, Any] = {}
    try:
        if engine == "ray":
            from rai_harness.run.ray_engine import RaySession, check_ray

            check_ray()
            # One Ray Data job per classifier for the whole file; single texts score locally.
            session = RaySession(ray_address, workers=ray_workers, score_min_texts=2)
            options = {"pool": session.scoring_pool(), "batch_size": _WHOLE_FILE}
        report = audit_guard(
            policy,
            data,
            text_field=text_field,
            label_field=label_field,
            group_field=group_field,
            stage=stage.value,
            **options,
        )
    except RaiError as exc:
        raise _error(exc) from None
    finally:
        if session is not None:
            session.close()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    _print_report(report)


def _num(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _print_report(report: Any) -> None:
    console = Console()
    title = (
        f"{report.policy}: {report.stage} rails on {report.data_path} "
        f"(n={report.n}, positives={report.positives})"
    )
    # Two narrow tables and a line per rail's thresholds, not one of ten columns: at a CI
    # log's 80 columns the wide table cut every header and most rail names to "toxi…".
    quality = Table(title=title)
    quality.add_column("rail", overflow="fold")
    quality.add_column("action")
    for column in ("precision", "recall", "F1", "ROC-AUC"):
        quality.add_column(column, justify="right", no_wrap=True)
    latency = Table(title="latency per text")
    latency.add_column("rail", overflow="fold")
    for column in ("batched ms", "single p50 ms", "single p95 ms"):
        latency.add_column(column, justify="right", no_wrap=True)
    for rail in report.rails:
        m, lat = rail.metrics, rail.latency
        quality.add_row(
            escape(rail.rail), rail.action, _num(m.precision), _num(m.recall), _num(m.f1), _num(m.roc_auc)
        )
        latency.add_row(
            escape(rail.rail),
            _num(lat.batched_ms_per_text, ".2f"),
            _num(lat.single_p50_ms, ".2f"),
            _num(lat.single_p95_ms, ".2f"),
        )
    g = report.guard
    quality.add_row("(any rail)", "", _num(g.precision), _num(g.recall), _num(g.f1), "")
    console.print(quality)
    for rail in report.rails:
        thresholds = ", ".join(f"{k} >= {v:g}" for k, v in rail.thresholds.items())
        console.print(f"  {rail.rail}: triggers at {thresholds}", highlight=False, markup=False)
    console.print(latency)
    if report.rails:
        lat = report.rails[0].latency
        console.print(
            f"batched: batches of {lat.batch_size}, total time / n; single: one text per call "
            f"on {lat.single_n} evenly spaced texts (no micro-batching).",
            highlight=False,
        )
    for rail in report.rails:
        if not rail.groups:
            continue
        bias = Table(title=f"{rail.rail}: unintended-bias AUCs by {report.group_field} (Borkan et al. 2019)")
        for column in ("group", "n", "positives", "negatives", "subgroup AUC", "BPSN AUC", "BNSP AUC"):
            bias.add_column(column, justify="right" if column != "group" else "left")
        for grp in rail.groups:
            bias.add_row(
                grp.group,
                str(grp.n),
                str(grp.positives),
                str(grp.negatives),
                _num(grp.subgroup_auc),
                _num(grp.bpsn_auc),
                _num(grp.bnsp_auc),
            )
        if rail.bias is not None:
            bias.add_row(
                f"power mean (p={rail.bias.power:g})",
                "",
                "",
                "",
                _num(rail.bias.subgroup_auc),
                _num(rail.bias.bpsn_auc),
                _num(rail.bias.bnsp_auc),
            )
        console.print(bias)


@guard_app.command("serve")
def serve_command(
    policy: Annotated[Path, typer.Option("--policy", "-p", help="Guard policy YAML file.")],
    upstream: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the OpenAI-compatible upstream, e.g. https://api.openai.com/v1. Without it "
            "only /v1/guardrail/checks is served."
        ),
    ] = None,
    upstream_key_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the upstream API key (default: OPENAI_API_KEY when set). "
            "The key is never logged or echoed."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind. A non-loopback address needs --api-keys-env.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.", min=0, max=65535)] = 8000,
    api_keys_env: Annotated[
        str,
        typer.Option(
            help="Environment variable holding the client API keys (comma-separated, 16+ characters "
            "each); clients send 'Authorization: Bearer <key>'. Unset: no authentication, loopback only."
        ),
    ] = "RAI_GUARD_API_KEYS",
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (413 above).", min=1)] = 1024
    * 1024,
    max_messages: Annotated[
        int, typer.Option(help="Most messages or texts per request (413 above).", min=1)
    ] = 256,
    max_texts: Annotated[
        int,
        typer.Option(
            help="Most texts one request has checked: contents, content parts, text fields, tool-call "
            "arguments and tool descriptions (413 above).",
            min=1,
        ),
    ] = 1024,
    max_concurrency: Annotated[
        int, typer.Option(help="Requests served at once (429 with Retry-After above).", min=1)
    ] = 64,
    timeout_s: Annotated[
        float,
        typer.Option(help="Deadline of a whole request, upstream and rails included, seconds.", min=0.001),
    ] = 60.0,
    check_tool_definitions: Annotated[
        bool,
        typer.Option(
            help="Run the input rails on the descriptions in a request's tools/functions (a poisoned "
            "tool description is a prompt injection). Turn off only if every tool definition is your own."
        ),
    ] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the guard as an OpenAI-compatible proxy (/v1/chat/completions) and a rails-only
    checks API (/v1/guardrail/checks), with /healthz and Prometheus /metrics.

    Stop with SIGTERM or Ctrl-C: in-flight requests finish first.
    """
    import logging
    import os

    from rai_harness.errors import MissingSecretError
    from rai_harness.guardrails import Guard, load_policy

    try:
        from rai_harness.guardrails import server

        server.require_serve_deps()
        upstream_key = None
        if upstream_key_env is not None:
            upstream_key = os.environ.get(upstream_key_env)
            if not upstream_key:
                raise MissingSecretError(upstream_key_env, key_path="--upstream-key-env")
        elif upstream is not None:
            upstream_key = os.environ.get("OPENAI_API_KEY") or None
        config = server.ServeConfig(
            upstream_url=upstream,
            upstream_key=upstream_key,
            api_keys=server.keys_from_env(api_keys_env, os.environ),
            host=host,
            port=port,
            max_body_bytes=max_body_bytes,
            max_messages=max_messages,
            max_texts=max_texts,
            max_concurrency=max_concurrency,
            request_timeout_s=timeout_s,
            check_tool_definitions=check_tool_definitions,
        )
        # Validate the policy file now (a bad key fails here, with its line); the models load
        # in the background once the server listens (/healthz says when they are ready).
        loaded = load_policy(policy)
    except RaiError as exc:
        raise _error(exc) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server.serve(lambda: Guard.from_policy(loaded), config, log_level=log_level)
