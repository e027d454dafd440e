"""The generate phase on a Ray cluster (``runner.engine: ray``, ``rai run --engine ray``).

What is distributed and what is not:

* **Calls** run in Ray actors (:class:`CallWorker`), each with its own event loop and its
  own provider client (built from the provider's config inside the actor, guard included).
  Inside an actor a chunk of requests goes through the same code as a local run,
  :func:`~rai_harness.run.runner.generate_calls` (limits, retries, backoff, timeouts,
  timing, cost), so a call's record is the same whichever engine made it; timings are
  taken in the actor, and each record carries the actor's node as ``host_id``.
* **Limits are global.** A provider's ``concurrency`` is partitioned exactly among the
  actors (``C // N`` each, the first ``C % N`` one more; an actor whose share is 0 gets no
  work for that provider), so the calls in flight across the cluster never exceed
  ``concurrency``. ``rpm`` is split in the same proportions; each actor spaces its own
  starts, so over any window the cluster starts at most the window's share of ``rpm``
  plus one call per actor.
* **The driver is the only journal writer.** Records stream back to it (an async
  generator per chunk, batched as they finish) and it journals each one at once, exactly
  as a local run does: ``--resume`` reuses them and ``kill -9`` of the driver loses only
  calls not yet streamed back. Journaled calls are never sent to a worker.
* **Dead workers.** A chunk whose actor dies is put back on its provider's queue minus
  the records already received, and any live actor takes it (the same actor after Ray
  restarts it, up to ``_MAX_RESTARTS`` times, or another one). Restarts are counted per
  process (each incarnation of an actor reports its pid), not per failed chunk: one death
  fails every chunk in flight on it. A chunk that streams no record for ``STALL_CHECK_S``
  gets its actor pinged; an actor that does not answer within ``PING_TIMEOUT_S`` (a stopped
  or wedged process) is killed, so Ray restarts it and its calls go back to the queue: every
  wait on a worker is bounded. When every worker is gone the run stops with
  :class:`~rai_harness.errors.RunError`; what finished is journaled.
* **Not distributed**: planning, the journal, scoring and the report run on the driver.

Without an address the engine starts a private Ray instance on this machine, bound to
127.0.0.1, with no dashboard and usage statistics off, and shuts it down after the
generate phase; with ``ray_address`` it joins that cluster (which must have rai-harness
installed on every node) and leaves it running. ``ray`` is imported only here, lazily.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from rai_harness.classifiers.pool import ClassifierPool
from rai_harness.errors import ConfigError, MissingDependencyError, RunError
from rai_harness.loopback import is_loopback
from rai_harness.pricing import ResolvedPrice
from rai_harness.providers.base import BaseProvider, Provider, describe_provider, require_package
from rai_harness.record import CallRecord
from rai_harness.run.journal import Journal, call_key
from rai_harness.run.runner import (
    LoopLagMonitor,
    RateLimiter,
    RetryPolicy,
    cancel_and_wait,
    generate_calls,
    reuse_journaled,
)
from rai_harness.types import ChatRequest, Generation

if TYPE_CHECKING:
    from rai_harness.run.execute import ProviderPlan, RunPlan

__all__ = [
    "CallWorker",
    "RayGenerated",
    "check_ray",
    "connect_ray",
    "generate_on_ray",
    "import_ray",
    "split_limit",
]

log = logging.getLogger(__name__)

#: Ray namespace of the call actors (named, so an operator can find them with ``ray list actors``).
NAMESPACE = "rai-harness"
#: Times Ray restarts a dead call actor before the driver stops giving it work.
_MAX_RESTARTS = 2
#: Chunks of one provider in flight per actor: the next chunk is queued in the actor while
#: the last calls of the previous one finish, so the actor's share of the limit stays busy.
_CHUNKS_IN_FLIGHT = 2
#: Bounds on the requests per chunk (a chunk lost with its actor is made again).
_MIN_CHUNK = 4
_MAX_CHUNK = 256
#: Records per streamed batch at most (bounds one object in Ray's object store).
_MAX_BATCH = 512
#: Seconds without a record from a chunk before the driver checks that its actor still answers.
STALL_CHECK_S = 30.0
#: Seconds an actor has to answer that check (its event loop serves it between calls); one that
#: does not (a stopped or wedged process) is killed, and Ray restarts it.
PING_TIMEOUT_S = 30.0
#: Longest wait for a failed actor to come back (Ray restarts it, then it loads its providers).
RESTART_WAIT_S = 300.0


def check_ray(*, file: str | None = None) -> None:
    """Raise :class:`MissingDependencyError` (with the pip command) when ``ray`` is not installed."""
    try:
        require_package("ray", "ray", extra="ray", feature="runner.engine 'ray'")
    except MissingDependencyError as exc:
        raise ConfigError(exc.detail, file=file, key_path="runner.engine") from exc


def split_limit(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` non-negative integers that sum to it, as even as possible."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def import_ray(*, loopback: bool) -> Any:
    """Import ``ray``; with ``loopback``, make a Ray instance started here reachable only from this machine.

    Ray resolves ``127.0.0.1`` to the machine's routable address and binds its servers to
    every interface unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is false when it is
    imported (then the node address is loopback and every server binds 127.0.0.1). Usage
    statistics are turned off: nothing may phone home.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if loopback:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    if loopback:
        # ray read the variable at its own import; when something imported it earlier, set
        # the flag it read (the node address is resolved from it at ray.init).
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def _is_loopback(address: str) -> bool:
    """Whether a cluster address (``HOST:PORT``, ``ray://HOST:PORT``) names this machine's loopback.

    The driver must then use a loopback node address too, or Ray looks for a raylet on the
    machine's routable address and finds none.
    """
    return is_loopback(address.split("://", 1)[-1].rsplit(":", 1)[0])


#: Longest wait for a TCP connection to a cluster's address before joining it.
CONNECT_CHECK_TIMEOUT_S = 5.0


def _resolve_address(address: str) -> str:
    """``auto`` as Ray resolves it (``RAY_ADDRESS``, else the latest cluster started on this
    machine); any other address as given.

    Resolved here, before Ray is set up: the loopback settings depend on the address, and
    a loopback cluster joined as ``auto`` got the machine's routable address instead (Ray
    rewrites 127.0.0.1 unless loopback mode is on), which it then retried forever.
    """
    if address != "auto":
        return address
    import_ray(loopback=False)
    from ray._private.services import get_ray_address_from_environment

    try:
        resolved = get_ray_address_from_environment("auto", None)
    except Exception as exc:  # Ray raises ConnectionError when it finds no cluster
        raise RunError(
            f"--ray-address auto found no Ray cluster ({_cause(exc)}); start one with `ray start --head` "
            "or give its HOST:PORT"
        ) from exc
    if not resolved or resolved == "auto":
        raise RunError("--ray-address auto found no Ray cluster; give its HOST:PORT")
    return str(resolved)


def _check_reachable(address: str) -> None:
    """Fail fast when nothing answers at the cluster's address.

    ``ray.init`` waits on an unreachable address without end (it retries the GCS
    connection forever), so a typo in ``--ray-address`` hung the run silently.
    """
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--ray-address must be HOST:PORT (or ray://HOST:PORT, auto), got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_CHECK_TIMEOUT_S):
            pass
    except OSError as exc:
        raise RunError(
            f"could not reach the Ray cluster at {address!r} ({exc.strerror or type(exc).__name__}, "
            f"within {CONNECT_CHECK_TIMEOUT_S:.0f} s); check the address and that its head node is up "
            "(`ray status` there)"
        ) from exc


def connect_ray(address: str | None) -> bool:
    """Join ``address``, or start a private loopback Ray instance; return whether one was started here.

    Nothing is done when Ray is already initialised in this process (a test or an
    application that set Ray up itself keeps its own settings). The process's SIGTERM
    handler is kept: ``ray.init`` installs its own (``sys.exit``), which skipped the run's
    graceful interrupt (the resume hint, the ``--gate`` JUnit) and exited with status 15.

    Raises:
        RunError: The instance started here is reachable from the network (it is shut down),
            or nothing answers at ``address`` within ``CONNECT_CHECK_TIMEOUT_S``.
        ConfigError: ``address`` is not ``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``.
    """
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    try:
        return _connect_ray(address)
    finally:
        if main and handler is not None and signal.getsignal(signal.SIGTERM) is not handler:
            signal.signal(signal.SIGTERM, handler)


def _connect_ray(address: str | None) -> bool:
    if address is not None:
        address = _resolve_address(address)
    ray = import_ray(loopback=address is None or _is_loopback(address))
    if ray.is_initialized():
        return False
    if address is not None:
        _check_reachable(address)
    if address is None:
        for attempt in range(2):
            try:
                ray.init(
                    # "local": always a new private instance, never a cluster that `ray start`
                    # left running on this machine (plain ray.init() would join that one).
                    address="local",
                    num_cpus=os.cpu_count() or 1,
                    include_dashboard=False,
                    namespace=NAMESPACE,
                    log_to_driver=False,
                    configure_logging=False,
                )
                break
            except Exception as exc:  # Ray raises bare Exception when its raylet is slow to register
                ray.shutdown()
                if attempt:
                    raise RunError(
                        f"could not start a local Ray instance ({_cause(exc)}); a saturated machine "
                        "makes Ray's 30 s start-up limit: retry, or use --engine local"
                    ) from exc
                log.warning("Ray did not start (%s); trying once more", _cause(exc))
        exposed = sorted({n["NodeManagerAddress"] for n in ray.nodes()} - {"127.0.0.1"})
        if exposed:  # fail closed: never serve a cluster on the network by accident
            ray.shutdown()
            raise RunError(
                f"the local Ray instance bound {', '.join(exposed)} instead of 127.0.0.1; not starting it "
                "(set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, or give runner.ray_address of a cluster)"
            )
    else:
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
        except Exception as exc:
            ray.shutdown()
            raise RunError(
                f"could not join the Ray cluster at {address!r} ({_cause(exc)}); check `ray status` on "
                "its head node and that this machine can reach it"
            ) from exc
    return True


class RaySession:
    """One run's use of Ray: connects on first need, and stops the instance it started.

    A fully journaled rerun, or scoring too small for Ray Data, never starts Ray.

    Args:
        address: ``runner.ray_address`` (``None``: a private loopback instance).
        workers: ``runner.ray_workers`` (call actors, and Ray Data actors per classifier).
        score_min_texts: Classifier calls with fewer texts score in this process.
    """

    def __init__(self, address: str | None, *, workers: int, score_min_texts: int) -> None:
        self.address = address
        self.workers = workers
        self.score_min_texts = score_min_texts
        self._connected = False
        self._started = False

    def connect(self) -> None:
        """Join or start Ray (once)."""
        if not self._connected:
            self._started = connect_ray(self.address)
            self._connected = True

    def scoring_pool(self) -> ClassifierPool:
        """A classifier pool that scores on Ray Data (connecting when a large call needs it)."""
        from rai_harness.classifiers.ray_pool import RayDataPool

        return RayDataPool(actors=self.workers, min_texts=self.score_min_texts, connect=self.connect)

    def close(self) -> None:
        """Stop the Ray instance this session started (a joined cluster keeps running)."""
        if self._started:
            import ray

            ray.shutdown()
        self._started = self._connected = False


@dataclass(frozen=True)
class WorkerSpec:
    """One provider as one call actor runs it: its config and the actor's share of the limits."""

    #: The provider's plan without its requests (its config and guard policy, resolved at plan time).
    provider: ProviderPlan
    identity: dict[str, Any]
    concurrency: int
    rpm: float | None
    policy: RetryPolicy
    price: ResolvedPrice | None
    retry_failed: bool
    seed: int


class _SharedLimits(BaseProvider):
    """A provider whose attempts share one actor-wide concurrency slot pool and rate limiter.

    A Ray actor runs several chunks of a provider at once (each through its own
    :func:`generate_calls`); wrapping the provider makes its share of the limits hold across
    all of them. Every attempt (retries included) waits for the rate limiter, then holds a
    slot while the request is on the wire; backoff waits hold no slot.
    """

    def __init__(self, inner: Provider, concurrency: int, limiter: RateLimiter) -> None:
        self._inner = inner
        self._slots = asyncio.Semaphore(concurrency)
        self._limiter = limiter

    async def generate(self, request: ChatRequest) -> Generation:
        """One attempt, within the actor's share of the provider's limits."""
        await self._limiter.acquire()
        async with self._slots:
            return await self._inner.generate(request)

    async def load(self) -> None:
        """Load the wrapped provider."""
        await self._inner.load()

    def describe(self) -> dict[str, Any]:
        """The wrapped provider's description."""
        return self._inner.describe()

    async def aclose(self) -> None:
        """Close the wrapped provider."""
        await self._inner.aclose()


class CallWorker:
    """A Ray actor that makes calls for its share of each provider's limits.

    Args:
        specs: Provider id -> its config and this actor's share of its limits.
        env: The secret environment variables the providers read (set in this actor's
            process before any provider is built; a remote node has none of the driver's).
    """

    def __init__(self, specs: dict[str, WorkerSpec], env: dict[str, str]) -> None:
        import ray

        os.environ.update(env)
        self._host_id = "ray:" + ray.get_runtime_context().get_node_id()[:16]
        # Which incarnation of the actor this is: Ray restarts a dead actor in a new process.
        self._incarnation = f"{self._host_id}/{os.getpid()}"
        self._specs = specs
        # Scrub every provider's secrets from every error message, as a local run does.
        self._secrets = [v for v in env.values() if v]
        self._providers: dict[str, Provider] = {}
        self._loaded: set[str] = set()
        self._lock = asyncio.Lock()
        self._monitor: LoopLagMonitor | None = None
        self._cpu0 = 0.0

    async def _provider(self, provider_id: str, *, load: bool) -> Provider:
        # One build (and load) per provider even when chunks arrive together.
        async with self._lock:
            provider = self._providers.get(provider_id)
            if provider is None:
                from rai_harness.run.execute import _build

                spec = self._specs[provider_id]
                provider = self._providers[provider_id] = _SharedLimits(
                    _build(spec.provider), spec.concurrency, RateLimiter(spec.rpm)
                )
            if load and provider_id not in self._loaded:
                await provider.load()
                self._loaded.add(provider_id)
            return provider

    async def prepare(self, provider_ids: Sequence[str]) -> str:
        """Build and load the providers that have calls to make; start the loop-lag monitor.

        Returns:
            This incarnation's id (node and pid): a restarted actor returns a new one.
        """
        for pid in provider_ids:
            await self._provider(pid, load=True)
        if self._monitor is None:
            self._monitor = LoopLagMonitor()
            self._monitor.start()
            self._cpu0 = time.process_time()
        return self._incarnation

    async def ping(self) -> str:
        """This incarnation's id, answered from the event loop (the driver's liveness check)."""
        return self._incarnation

    async def run_chunk(
        self, provider_id: str, requests: list[ChatRequest]
    ) -> AsyncIterator[list[tuple[int, dict[str, Any]]]]:
        """Make ``requests``; yield ``(position in requests, record dict)`` batches as calls finish."""
        spec = self._specs[provider_id]
        provider = await self._provider(provider_id, load=True)
        positions: dict[tuple[str, int], deque[int]] = {}
        for i, request in enumerate(requests):
            positions.setdefault((request.sample_id, request.repeat), deque()).append(i)
        finished: asyncio.Queue[CallRecord] = asyncio.Queue()
        task = asyncio.ensure_future(
            generate_calls(
                provider,
                requests,
                provider_id=provider_id,
                provider_identity=spec.identity,
                # The actor's share of the limits is enforced by the provider wrapper
                # across every chunk in flight; each chunk may use all of it.
                concurrency=spec.concurrency,
                policy=spec.policy,
                journal=None,  # the driver journals
                price=spec.price,
                secrets=self._secrets,
                retry_failed=spec.retry_failed,
                on_record=finished.put_nowait,
                # One jitter sequence per chunk, from the run's seed and the chunk's first call:
                # the run's seed alone restarted the same sequence in every chunk of every
                # worker, so retries fired in lockstep (jitter exists to spread them).
                seed=zlib.crc32(f"{spec.seed}/{requests[0].sample_id}/{requests[0].repeat}".encode())
                if requests
                else spec.seed,
            )
        )
        sent = 0
        try:
            while sent < len(requests):
                getter = asyncio.ensure_future(finished.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    task.result()  # raises what ended the batch early
                    raise RuntimeError("generate_calls returned before reporting every call")
                batch = [getter.result()]
                while not finished.empty() and len(batch) < _MAX_BATCH:
                    batch.append(finished.get_nowait())
                sent += len(batch)
                yield [
                    (
                        positions[(r.sample_id, r.repeat)].popleft(),
                        dataclasses.replace(r, host_id=self._host_id).to_dict(),
                    )
                    for r in batch
                ]
            await task
        finally:
            if not task.done():
                await cancel_and_wait(task)

    async def describe(self, provider_id: str) -> dict[str, Any]:
        """The provider's model details, as a local run records them."""
        return describe_provider(await self._provider(provider_id, load=False))

    async def finish(self) -> WorkerReport:
        """Close the providers; report this actor's event-loop lag and the CPU its calls took."""
        samples: list[float] = []
        cpu = 0.0
        if self._monitor is not None:
            await self._monitor.stop()
            samples = self._monitor.samples_ms
            cpu = time.process_time() - self._cpu0
        for provider in self._providers.values():
            with contextlib.suppress(Exception):
                await provider.aclose()
        self._providers.clear()
        return WorkerReport(self._host_id, samples, cpu)


class WorkerReport(NamedTuple):
    """What a call actor reports at the end: its node, loop-lag samples (ms), CPU seconds of its calls."""

    host_id: str
    lag_ms: list[float]
    cpu_s: float


class RayGenerated(NamedTuple):
    """What the generate phase hands on: records per provider (in plan order), model details, loop lag
    (the workers'), and how the work was spread: workers live at the end and started, restarts, the
    nodes that made calls (a node removed mid-run included), the live workers' CPU seconds."""

    outcomes: tuple[list[CallRecord], ...]
    model_infos: tuple[dict[str, Any], ...]
    loop_lag: dict[str, float | int]
    workers: int = 0
    hosts: tuple[str, ...] = ()
    worker_cpu_s: float = 0.0
    workers_started: int = 0
    worker_restarts: int = 0


@dataclass
class _Work:
    """One provider's calls still to make, shared by every actor's chunk loops."""

    provider_id: str
    requests: tuple[ChatRequest, ...]
    queue: deque[int]
    chunk: int
    remaining: int
    results: list[CallRecord | None]
    cond: asyncio.Condition = dataclasses.field(default_factory=asyncio.Condition)
    #: Nodes that made this provider's calls in this run (from the records, so a node that left
    #: mid-run still counts).
    hosts: set[str] = dataclasses.field(default_factory=set)


def _actor_errors() -> tuple[type[BaseException], ...]:
    from ray.exceptions import ActorUnavailableError, RayActorError

    return (RayActorError, ActorUnavailableError)


@dataclass
class _Actor:
    """A call actor as the driver tracks it: its current incarnation and how many restarts it used."""

    handle: Any
    provider_ids: list[str]
    incarnation: str = ""
    restarts: int = 0
    gone: bool = False
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    async def recover(self, seen: str) -> None:
        """After a chunk failed on incarnation ``seen``: wait until the actor is back, count a
        restart only for a new process, and give up on it when it is gone for good.

        Several chunk loops share an actor and each sees the same death; the first one here
        waits for the restart, the others find the new incarnation already recorded.
        """
        async with self.lock:
            if self.gone or self.incarnation != seen:
                return
            from ray.exceptions import ActorUnavailableError

            deadline = time.monotonic() + RESTART_WAIT_S
            while True:
                try:
                    # prepare() on a restarted process also reloads its providers and restarts
                    # its loop-lag monitor; Ray queues it until the restart is done.
                    fresh = await asyncio.wait_for(
                        _awaitable(self.handle.prepare.remote(self.provider_ids)),
                        max(deadline - time.monotonic(), 0.0),
                    )
                    break
                except ActorUnavailableError:  # unreachable for now (restarting, network): ask again
                    if time.monotonic() < deadline:
                        await asyncio.sleep(0.5)
                        continue
                    exc_name = "no answer"
                except asyncio.TimeoutError:
                    exc_name = "no answer"
                except _actor_errors() as exc:  # died for good (its restarts are used up)
                    exc_name = type(exc).__name__
                log.warning("Ray call worker %s is gone (%s)", seen, exc_name)
                self.gone = True
                return
            if fresh != self.incarnation:
                self.restarts += 1
                self.incarnation = str(fresh)
                if self.restarts > _MAX_RESTARTS:
                    self.gone = True

    async def answers(self) -> bool:
        """Whether the actor's event loop answers within ``PING_TIMEOUT_S``."""
        silent: tuple[type[BaseException], ...] = (asyncio.TimeoutError, *_actor_errors())
        try:
            await asyncio.wait_for(_awaitable(self.handle.ping.remote()), PING_TIMEOUT_S)
        except silent:
            return False
        return True


async def _awaitable(ref: Any) -> Any:
    """Await a Ray ObjectRef (a coroutine, so asyncio.wait_for can wrap it)."""
    return await ref


class _Stalled(Exception):
    """A chunk's actor stopped answering; it was killed for Ray to restart."""


async def _next_or_stall(anext: Any, actor: _Actor) -> Any:
    """The next streamed ref, waiting as long as the actor keeps answering pings.

    A slow chunk (long calls, backoff, a rate limit) is not a dead one: the actor is only
    declared hung when its own event loop stops answering.
    """
    task = asyncio.ensure_future(anext)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=STALL_CHECK_S)
            if done:
                return task.result()
            if not await actor.answers():
                import ray

                log.warning(
                    "Ray call worker %s did not answer for %.0f s; killing it so Ray restarts it",
                    actor.incarnation,
                    STALL_CHECK_S + PING_TIMEOUT_S,
                )
                with contextlib.suppress(Exception):
                    ray.kill(actor.handle, no_restart=False)
                raise _Stalled
    finally:
        if not task.done():
            task.cancel()


async def _chunk_loop(
    actor: _Actor,
    work: _Work,
    journal: Journal,
    on_record: Callable[[CallRecord], None] | None,
) -> None:
    """Give ``actor`` chunks of ``work`` until every call is done or the actor is gone for good."""
    failed: tuple[type[BaseException], ...] = (*_actor_errors(), _Stalled)
    while True:
        async with work.cond:
            while not work.queue and work.remaining > 0 and not actor.gone:
                await work.cond.wait()
            if work.remaining == 0 or actor.gone:
                return
            chunk = [work.queue.popleft() for _ in range(min(work.chunk, len(work.queue)))]
        received: set[int] = set()
        incarnation = actor.incarnation
        try:
            stream = actor.handle.run_chunk.options(num_returns="streaming").remote(
                work.provider_id, [work.requests[i] for i in chunk]
            )
            refs = stream.__aiter__()
            while True:
                try:
                    ref = await _next_or_stall(refs.__anext__(), actor)
                except StopAsyncIteration:
                    break
                for position, data in await ref:
                    i = chunk[position]
                    record = CallRecord.from_dict(data)
                    journal.put(
                        record.key, work.provider_id, record.sample_id, record.repeat, record.status, data
                    )
                    work.results[i] = record
                    if record.host_id:
                        work.hosts.add(record.host_id)
                    received.add(i)
                    if on_record:
                        on_record(record)
        except failed as exc:
            log.warning(
                "Ray call worker %s failed (%s); %d of its calls go back to the queue",
                incarnation,
                type(exc).__name__,
                len(chunk) - len(received),
            )
            async with work.cond:
                _requeue(work, chunk, received)
            await _recover_unless_done(actor, incarnation, work)
            async with work.cond:
                work.cond.notify_all()  # the actor may be gone: the other loops must see it
            continue
        async with work.cond:
            _requeue(work, chunk, received)


async def _recover_unless_done(actor: _Actor, incarnation: str, work: _Work) -> None:
    """Wait for ``actor`` to come back (:meth:`_Actor.recover`), but not past the end of the work.

    A restarted actor may never be placed (its node removed, the survivors' CPUs taken), and
    its wait is bounded only by ``RESTART_WAIT_S``: once the other actors have made every
    call, waiting on it kept the finished run silent for 5 minutes.
    """
    recovery = asyncio.ensure_future(actor.recover(incarnation))

    async def finished() -> None:
        async with work.cond:
            while work.remaining > 0:
                await work.cond.wait()

    waiter = asyncio.ensure_future(finished())
    try:
        await asyncio.wait({recovery, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (recovery, waiter):
            if not task.done():
                await cancel_and_wait(task)
    if recovery.done() and not recovery.cancelled():
        recovery.result()  # an error of the recovery itself is the caller's


def _requeue(work: _Work, chunk: list[int], received: set[int]) -> None:
    """Put the calls of ``chunk`` not received back at the queue's head (caller holds ``work.cond``)."""
    lost = [i for i in chunk if i not in received]
    work.queue.extendleft(reversed(lost))
    work.remaining -= len(received)
    work.cond.notify_all()


def _specs_for(plan: RunPlan, shares: dict[str, list[int]], index: int) -> dict[str, WorkerSpec]:
    settings = plan.config.runner
    specs: dict[str, WorkerSpec] = {}
    for pp in plan.providers:
        share = shares[pp.provider_id][index]
        if share == 0:
            continue
        cfg = pp.config
        rpm = cfg.rpm * share / cfg.concurrency if cfg.rpm else None
        specs[pp.provider_id] = WorkerSpec(
            provider=dataclasses.replace(pp, requests=()),  # the calls travel in chunks
            identity=cfg.cache_identity(),
            concurrency=share,
            rpm=rpm,
            policy=RetryPolicy.for_provider(settings, cfg),
            price=pp.price,
            retry_failed=settings.retry_failed_on_resume,
            seed=plan.config.seed,
        )
    return specs


def _secret_env(plan: RunPlan) -> dict[str, str]:
    """The secret variables the providers read, from this process's environment."""
    env: dict[str, str] = {}
    for pp in plan.providers:
        for variable in pp.config.secret_env_vars().values():
            value = os.environ.get(variable)
            if value:
                env[variable] = value
    return env


def _cause(exc: BaseException) -> str:
    """A one-line reason from a Ray task error (the remote traceback stays in Ray's logs)."""
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {cause}".splitlines()[0][:500]


def _plan_work(plan: RunPlan, journal: Journal) -> tuple[list[_Work], list[CallRecord], dict[str, list[int]]]:
    """Each provider's calls still to make, the journaled records reused, and each actor's share."""
    settings = plan.config.runner
    works: list[_Work] = []
    cached: list[CallRecord] = []
    shares: dict[str, list[int]] = {}
    for pp in plan.providers:
        identity = pp.config.cache_identity()
        keys = [call_key(identity, r) for r in pp.requests]
        stored = journal.get_many(keys)
        results: list[CallRecord | None] = [None] * len(pp.requests)
        queue: deque[int] = deque()
        for i, request in enumerate(pp.requests):
            record = reuse_journaled(stored.get(keys[i]), request, settings.retry_failed_on_resume)
            if record is None:
                queue.append(i)
            else:
                results[i] = record
                cached.append(record)
        share = split_limit(pp.config.concurrency, settings.ray_workers)
        shares[pp.provider_id] = share
        chunk = max(_MIN_CHUNK, min(_MAX_CHUNK, 2 * max(share)))
        works.append(_Work(pp.provider_id, pp.requests, queue, chunk, len(queue), results))
    return works, cached, shares


async def _describe_here(plan: RunPlan) -> list[dict[str, Any]]:
    """Model details from providers built in this process (nothing to call, so no workers)."""
    from rai_harness.run.execute import _build

    infos = []
    for pp in plan.providers:
        provider = _build(pp)
        try:
            infos.append(describe_provider(provider))
        finally:
            with contextlib.suppress(Exception):
                await provider.aclose()
    return infos


def _start_workers(plan: RunPlan, shares: dict[str, list[int]]) -> tuple[list[Any], list[int]]:
    """One call actor per worker slot that has a share of some provider; return them and their slots."""
    import ray

    token = uuid.uuid4().hex[:8]
    env = _secret_env(plan)
    worker_cls = ray.remote(CallWorker)
    slots = [i for i in range(plan.config.runner.ray_workers) if any(s[i] for s in shares.values())]
    # A CPU each when the cluster has enough (so SPREAD really places them on different nodes),
    # else an even fraction: more workers than CPUs must still all start.
    cpus = min(1.0, float(ray.cluster_resources().get("CPU", 1.0)) / max(1, len(slots)))
    actors = [
        worker_cls.options(
            name=f"calls-{token}-{i}",
            namespace=NAMESPACE,
            max_restarts=_MAX_RESTARTS,
            max_task_retries=0,  # the driver re-queues a dead actor's calls itself
            scheduling_strategy="SPREAD",
            num_cpus=cpus,
            max_concurrency=1000,  # async actor: chunks of several providers run together
        ).remote(_specs_for(plan, shares, i), env)
        for i in slots
    ]
    return actors, slots


async def generate_on_ray(
    plan: RunPlan,
    journal: Journal,
    *,
    on_record: Callable[[CallRecord], None] | None = None,
    on_start: Callable[[RunPlan, int], None] | None = None,
    session: RaySession | None = None,
) -> RayGenerated:
    """The generate phase on Ray: journaled calls reused here, the rest made by call actors.

    Args:
        plan: From :func:`~rai_harness.run.execute.plan_run`.
        journal: The run's journal (written only here, on the driver).
        on_record: Called for every final record, journaled ones included (progress).
        on_start: Called once the workers are ready, with the plan and the journaled successes.
        session: The run's Ray session (kept open for scoring); default: one for this call only.

    Raises:
        RunError: A worker could not build or load a provider, or every worker died.
    """
    works, cached, shares = _plan_work(plan, journal)
    pending_ids = [w.provider_id for w in works if w.remaining]
    if not pending_ids:  # everything is journaled: no cluster needed
        if on_start:
            on_start(plan, journal.count("ok"))
        if on_record:
            for record in cached:
                on_record(record)
        infos = await _describe_here(plan)
        return RayGenerated(
            tuple([r for r in w.results if r is not None] for w in works), tuple(infos), {"samples": 0}
        )

    settings = plan.config.runner
    own = session is None
    if session is None:
        session = RaySession(settings.ray_address, workers=settings.ray_workers, score_min_texts=0)
    session.connect()
    import ray

    actors: list[Any] = []
    try:
        actors, slots = _start_workers(plan, shares)
        tracked = [
            _Actor(actor, [p for p in pending_ids if shares[p][i]])
            for actor, i in zip(actors, slots, strict=True)
        ]
        try:
            incarnations = await asyncio.gather(*(a.handle.prepare.remote(a.provider_ids) for a in tracked))
        except (ray.exceptions.RayTaskError, *_actor_errors()) as exc:  # type: ignore[misc]
            raise RunError(f"a Ray call worker could not build or load its providers: {_cause(exc)}") from exc
        for tracked_actor, incarnation in zip(tracked, incarnations, strict=True):
            tracked_actor.incarnation = str(incarnation)

        if on_start:
            on_start(plan, journal.count("ok"))
        if on_record:
            for record in cached:
                on_record(record)
        loops = [
            _chunk_loop(tracked_actor, work, journal, on_record)
            for tracked_actor, i in zip(tracked, slots, strict=True)
            for work in works
            if work.remaining and shares[work.provider_id][i]
            for _ in range(_CHUNKS_IN_FLIGHT)
        ]
        try:
            await asyncio.gather(*loops)
        except ray.exceptions.RayTaskError as exc:
            raise RunError(f"a Ray call worker failed: {_cause(exc)}") from exc
        missing = sum(w.remaining for w in works)
        if missing:
            raise RunError(
                f"every Ray call worker died; {missing} calls were not made (the finished ones are "
                "journaled: rerun the same command to resume)"
            )
        live = [(a.handle, i) for a, i in zip(tracked, slots, strict=True) if not a.gone]
        infos = [await _describe_on(live, shares[pp.provider_id], pp.provider_id) for pp in plan.providers]
        monitor = LoopLagMonitor()
        hosts: set[str] = set()
        cpu = 0.0
        for report in await asyncio.gather(*(a.finish.remote() for a, _ in live), return_exceptions=True):
            if isinstance(report, WorkerReport):
                monitor.samples_ms.extend(report.lag_ms)
                hosts.add(report.host_id)
                cpu += report.cpu_s
        outcomes = tuple([r for r in w.results if r is not None] for w in works)
        hosts.update(*(w.hosts for w in works))
        return RayGenerated(
            outcomes,
            tuple(infos),
            monitor.summary(),
            len(live),
            tuple(sorted(hosts)),
            cpu,
            workers_started=len(tracked),
            worker_restarts=sum(a.restarts for a in tracked),
        )
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if own:
            session.close()


async def _describe_on(live: list[tuple[Any, int]], share: list[int], provider_id: str) -> dict[str, Any]:
    """The provider's model details from a live actor that runs it."""
    owner = next((a for a, i in live if share[i]), None)
    if owner is None:
        return {"describe_error": "no live Ray worker runs this provider"}
    try:
        return dict(await owner.describe.remote(provider_id))
    except Exception as exc:  # describing a model must not fail a run (as locally)
        return {"describe_error": _cause(exc)}
