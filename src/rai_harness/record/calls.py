"""One call's outcome: the value journaled during a run and written as a line of ``samples.jsonl``.

A plain frozen dataclass (not pydantic) because the runner builds thousands of them per
run; :meth:`CallRecord.to_dict` / :meth:`CallRecord.from_dict` are the line format, read
and written only through :mod:`rai_harness.record.io` and the run journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["CallError", "CallRecord"]


@dataclass(frozen=True, slots=True)
class CallError:
    """Why a call failed for good."""

    type: str
    message: str
    status_code: int | None = None
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class CallRecord:
    """The outcome of one call, as journaled and as written to ``samples.jsonl``.

    Times: ``started_at``/``finished_at`` are Unix epoch seconds of the whole call
    (retries and their waits included); ``latency_s``/``ttft_s`` are of the successful
    attempt only, as the provider measured them: from the request's send to the last byte /
    first content token; ``connect_s`` is that attempt's wait before the send (taking or
    opening a connection), ``None`` where the adapter cannot see the send.
    """

    key: str
    provider_id: str
    sample_id: str
    repeat: int
    messages: list[dict[str, str]]
    params: dict[str, Any]
    status: str  # "ok" | "error"
    output: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    tokens_estimated: bool
    ttft_s: float | None
    latency_s: float | None
    output_tokens_per_s: float | None
    finish_reason: str | None
    model: str | None
    attempts: int
    retry_wait_s: float
    started_at: float
    finished_at: float
    cost_usd: float | None
    error: CallError | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    guard: dict[str, Any] | None = None
    #: Per-sample scores written by the score stage (``None`` before scoring or for plain prompts).
    scores: dict[str, Any] | None = None
    #: When a load profile scheduled the call: its stage, due and actual start, finish (seconds
    #: after the stage started), whether it was warm-up (see ``rai_harness.load``).
    load: dict[str, Any] | None = None
    #: Where the call was made and timed: ``None`` in the run's own process (engine ``local``),
    #: else ``ray:<node id>`` of the Ray worker (an opaque cluster id, never a host name).
    host_id: str | None = None
    #: Seconds from the successful attempt's start to its request being sent (see above).
    connect_s: float | None = None

    @property
    def ok(self) -> bool:
        """True for a successful call."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (the journal and ``samples.jsonl`` format).

        Shallow on purpose (``dataclasses.asdict`` deep-copies every nested list and dict,
        which showed up in the runner's CPU profile at thousands of calls): the nested
        values are only serialised, never mutated.
        """
        out = {name: getattr(self, name) for name in _RECORD_FIELDS}
        if self.error is not None:
            out["error"] = asdict(self.error)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallRecord:
        """Inverse of :meth:`to_dict` (ignores unknown keys from newer versions)."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        err = values.get("error")
        if isinstance(err, Mapping):
            values["error"] = CallError(
                **{k: err[k] for k in ("type", "message", "status_code", "retryable") if k in err}
            )
        return cls(**values)


_RECORD_FIELDS = tuple(f.name for f in fields(CallRecord))
