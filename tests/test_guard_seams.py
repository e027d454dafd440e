"""The guardrails' seams (issue 8): policy is data and is read once per run, the guard owns
its runners, streaming takes a checking function, span support is declared, and a guarded
provider's call key holds its policy's content hash for every provider kind."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from rai_harness.classifiers import pool as pool_module
from rai_harness.classifiers.base import ClassifierSpec
from rai_harness.classifiers.keyword import KeywordClassifier
from rai_harness.classifiers.pool import ClassifierPool, register_backend
from rai_harness.config import load_run_config
from rai_harness.errors import ConfigError
from rai_harness.guardrails import Guard, GuardBlocked, load_policy, parse_policy
from rai_harness.guardrails import policy as policy_module
from rai_harness.guardrails.rails import Rail
from rai_harness.guardrails.streaming import guard_stream
from rai_harness.guardrails.verdict import GuardResult
from rai_harness.providers.openai_compat import OpenAIConfig
from rai_harness.record import read_samples
from rai_harness.run import plan_run, run_sync
from rai_harness.run.journal import call_key
from rai_harness.testing import FakeOpenAIServer, FaultConfig

POLICY = {
    "name": "seams",
    "classifiers": {
        "words": {"backend": "keyword", "options": {"insult": ["idiot"], "weapon": ["bomb"]}},
        "same-words": {"backend": "keyword", "options": {"insult": ["idiot"], "weapon": ["bomb"]}},
    },
    "input": [
        {
            "name": "in-insult",
            "classifier": "words",
            "labels": ["insult"],
            "threshold": 0.5,
            "action": "block",
        },
        {
            "name": "in-weapon",
            "classifier": "same-words",
            "labels": ["weapon"],
            "threshold": 0.5,
            "action": "flag",
        },
    ],
    "output": [
        {
            "name": "out-weapon",
            "classifier": "words",
            "labels": ["weapon"],
            "threshold": 0.5,
            "action": "block",
        }
    ],
}


def _write(folder: Path, data: Any = POLICY) -> Path:
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# -- the guard owns its runners -------------------------------------------------------------------


def test_guard_is_the_one_owner_of_runners(tmp_path: Path) -> None:
    assert "owned_runners" not in inspect.signature(Guard).parameters
    with Guard.from_policy(_write(tmp_path), pool=ClassifierPool()) as guard:
        rails = [*guard.input_rails, *guard.output_rails]
        # Identical specs are one pool instance, hence one runner (one micro-batcher) for all.
        assert len({id(r.classifier) for r in rails}) == 1
        assert len({id(r.runner) for r in rails}) == 1
        runner = rails[0].runner
        assert guard.check_input("you idiot").blocked
    with pytest.raises(RuntimeError, match="closed"):
        runner.submit(["x"])  # closed with the guard


def test_a_runner_bound_by_the_caller_stays_the_callers(tmp_path: Path) -> None:
    from rai_harness.guardrails import ClassifierRunner

    clf = KeywordClassifier({"insult": ["idiot"]})
    runner = ClassifierRunner(clf, micro_batch=False)
    rail = Rail("r", clf, threshold=0.5, action="block", runner=runner)
    with Guard([rail]) as guard:
        assert guard.check_input("idiot").blocked
    assert runner.submit(["idiot"]).result(timeout=5)[0].scores["insult"] == 1.0
    assert runner.close()


# -- streaming takes a checking function ----------------------------------------------------------


def test_streaming_takes_a_checking_function() -> None:
    seen: list[str] = []

    def check(window: str) -> GuardResult:
        seen.append(window)
        action = "block" if "stop" in window else "allow"
        return GuardResult(action, window, None if action == "block" else window, (), 0.0, "output")

    out = list(guard_stream(check, ["One. Two", ". Three."], max_buffer_chars=100))
    assert "".join(out) == "One. Two. Three."
    assert seen == ["One. ", "One. Two. ", "Two. Three."]  # each window: previous + new sentence
    with pytest.raises(GuardBlocked) as info:
        list(guard_stream(check, ["Fine. Now stop. Never shown."]))
    assert info.value.released_text == "Fine. "


# -- span support is declared --------------------------------------------------------------------


def test_span_support_is_declared_and_checked_once_per_source(tmp_path: Path, monkeypatch) -> None:
    assert KeywordClassifier.produces_spans is True
    monkeypatch.setattr(pool_module, "BACKENDS", pool_module.BACKENDS.copy())
    monkeypatch.setattr(pool_module, "SPAN_SUPPORT", dict(pool_module.SPAN_SUPPORT))

    class LabelsOnly(KeywordClassifier):
        produces_spans = False

    register_backend("labels-only", lambda spec: LabelsOnly({"insult": ["idiot"]}), produces_spans=False)
    register_backend("undeclared", lambda spec: LabelsOnly({"insult": ["idiot"]}))
    redact = {
        "classifiers": {"c": {"backend": "labels-only"}},
        "input": [{"name": "r", "classifier": "c", "threshold": 0.5, "action": "redact"}],
    }
    # Declared in the registry: refused when the file is read, before any model loads.
    with pytest.raises(ConfigError, match="nothing to redact") as info:
        parse_policy(redact, file="p.yaml")
    assert info.value.key_path == "input[0].action"
    # Not declared in the registry: the loaded classifier's declaration decides, same rule.
    undeclared = {**redact, "classifiers": {"c": {"backend": "undeclared"}}}
    policy = parse_policy(undeclared, file="p.yaml")
    with pytest.raises(ConfigError, match="nothing to redact") as info:
        Guard.from_policy(policy, pool=ClassifierPool())
    assert info.value.key_path == "input[0].action" and info.value.file == "p.yaml"


def test_rail_rules_are_shared_by_files_and_code() -> None:
    clf = KeywordClassifier({"insult": ["idiot"]})
    for bad in (float("nan"), 1.5, -0.1):
        with pytest.raises(ConfigError, match=r"within \[0, 1\]"):
            Rail("r", clf, threshold=bad, action="block")
        with pytest.raises(ConfigError, match=r"within \[0, 1\]") as info:
            parse_policy({**POLICY, "output": [{**POLICY["output"][0], "threshold": bad}]}, file="p.yaml")
        assert info.value.key_path == "output[0].threshold"
    with pytest.raises(ConfigError, match="timeout_ms must be > 0") as info:
        parse_policy({**POLICY, "output": [{**POLICY["output"][0], "timeout_ms": 0}]})
    assert info.value.key_path == "output[0].timeout_ms"


# -- typed pool accessors --------------------------------------------------------------------------


def test_typed_pool_accessors() -> None:
    pool = ClassifierPool()
    spec = ClassifierSpec(backend="keyword", options={"insult": ["idiot"]})
    assert pool.classifier(spec) is pool.classifier(spec.model_dump()) and len(pool) == 1
    assert not pool.embeds(spec) and pool.info_of(spec)["name"] == pool.classifier(spec).name
    assert not hasattr(pool, "get")  # the union accessor is gone: callers ask for the type they use

    class Vectors:
        name, dim = "vec", 2

        def embed(self, texts: Any) -> Any:
            raise AssertionError

        def info(self) -> dict[str, Any]:
            return {}

    fake = ClassifierPool(
        loader=lambda s: Vectors() if s.backend == "embedding" else KeywordClassifier({"a": ["a"]})
    )
    assert isinstance(fake.embedder(ClassifierSpec(backend="embedding")), Vectors)
    with pytest.raises(ConfigError, match="embedder, not a classifier") as info:
        fake.classifier(ClassifierSpec(backend="embedding"))
    assert info.value.key_path == "backend"
    with pytest.raises(ConfigError, match="classifier, not an embedder"):
        fake.embedder(ClassifierSpec(backend="keyword"))
    assert fake.embeds(ClassifierSpec(backend="embedding")) and not fake.embeds(
        ClassifierSpec(backend="keyword")
    )


def test_a_policy_naming_an_embedder_is_refused_where_it_is_named(tmp_path: Path) -> None:
    data = {**POLICY, "classifiers": {**POLICY["classifiers"], "words": {"backend": "embedding"}}}

    class Vectors:
        name, dim = "vec", 2

        def embed(self, texts: Any) -> Any:
            raise AssertionError

        def info(self) -> dict[str, Any]:
            return {}

    pool = ClassifierPool(
        loader=lambda s: (
            Vectors() if s.backend == "embedding" else KeywordClassifier({"insult": ["x"], "weapon": ["y"]})
        )
    )
    with pytest.raises(ConfigError, match="embedder") as info:
        Guard.from_policy(_write(tmp_path, data), pool=pool)
    assert info.value.key_path == "classifiers.words.backend"


# -- the policy is resolved once per run, and its hash is in the call key ---------------------------


def test_call_identity_holds_the_policy_hash_for_every_kind(tmp_path: Path) -> None:
    path = _write(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    bare = OpenAIConfig(model="m")
    guarded = OpenAIConfig(model="m", guard={"policy": str(path)})
    # An OpenAI-compatible kind overrides cache_identity; the guard is still in the call identity.
    assert bare.call_identity() == bare.cache_identity()
    assert guarded.call_identity()["guard"] == {"policy_sha256": digest, "input": True, "output": True}
    assert guarded.call_identity(guard_sha256="abc")["guard"]["policy_sha256"] == "abc"
    assert load_policy(path).sha256 == digest


def test_weights_fingerprint_follows_the_model_files_not_their_docs(tmp_path: Path) -> None:
    from rai_harness.classifiers.pool import BUNDLED_WEIGHTS, weights_fingerprint

    head = tmp_path / "head"
    head.mkdir()
    (head / "head.json").write_text("{}")
    (head / "head.safetensors").write_bytes(b"\x00" * 64)
    (head / "MODEL_CARD.md").write_text("card")
    spec = ClassifierSpec(backend="minilm-toxicity", model=str(head))
    first = weights_fingerprint(spec)
    (head / "MODEL_CARD.md").write_text("a regenerated card")
    assert weights_fingerprint(spec) == first  # documentation is not the model
    (head / "head.safetensors").write_bytes(b"\x00" * 63 + b"\x01")  # one byte retrained
    assert weights_fingerprint(spec) not in (first, None)
    # The bundled head when the spec names none; nothing for hub ids or backends without files.
    bundled = weights_fingerprint(ClassifierSpec(backend="minilm-toxicity"))
    assert bundled is not None and BUNDLED_WEIGHTS["minilm-toxicity"].is_dir()
    assert weights_fingerprint(ClassifierSpec(backend="hf", model="org/not-a-local-folder")) is None
    assert weights_fingerprint(ClassifierSpec(backend="keyword", options={"x": ["y"]})) is None


def test_a_retrained_head_under_the_same_policy_is_another_guard_in_the_call_keys(
    tmp_path: Path, monkeypatch
) -> None:
    # Resuming a run after the bundled head was retrained must call again, not reuse the verdicts
    # the old head gave: the policy file is unchanged, so its hash alone would not tell.
    from rai_harness.classifiers import pool as pool_mod

    head = tmp_path / "head"
    head.mkdir()
    (head / "head.safetensors").write_bytes(b"old")
    monkeypatch.setitem(pool_mod.BUNDLED_WEIGHTS, "minilm-toxicity", head)
    monkeypatch.setenv("RAI_TEST_API_KEY", "sk-test")
    policy = {
        "name": "p",
        "classifiers": {"tox": {"backend": "minilm-toxicity"}},
        "output": [{"name": "t", "classifier": "tox", "threshold": 0.5, "action": "block"}],
    }
    _write(tmp_path, policy)
    config = {
        "name": "resume",
        "providers": [
            {
                "kind": "openai",
                "model": "m",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key_env": "RAI_TEST_API_KEY",
                "guard": {"policy": "policy.yaml"},
            }
        ],
        "prompts": {"items": ["hello"]},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    def keys() -> set[str]:
        plan = plan_run(
            load_run_config(tmp_path / "run.yaml"), config_path=tmp_path / "run.yaml", out_dir=tmp_path / "o"
        )
        pp = plan.providers[0]
        assert pp.identity["guard"]["weights"] == {
            "tox": pool_mod.weights_fingerprint(ClassifierSpec(backend="minilm-toxicity"))
        }
        return {call_key(pp.identity, r) for r in pp.requests}

    before = keys()
    assert keys() == before  # same files, same keys
    (head / "head.safetensors").write_bytes(b"new")
    assert keys().isdisjoint(before)


def test_call_identity_fails_loudly_on_an_unreadable_policy(tmp_path: Path) -> None:
    cfg = OpenAIConfig(model="m", guard={"policy": str(tmp_path / "gone.yaml")})
    with pytest.raises(ConfigError, match="cannot read the guard policy") as info:
        cfg.call_identity()
    assert info.value.key_path == "guard.policy"


def test_a_run_reads_its_guard_policy_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAI_TEST_API_KEY", "sk-test")
    path = _write(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    reads: list[str] = []
    real = policy_module.read_yaml_document
    monkeypatch.setattr(
        policy_module, "read_yaml_document", lambda p, **kw: (reads.append(str(p)), real(p, **kw))[1]
    )
    with FakeOpenAIServer(FaultConfig()) as srv:
        config = {
            "name": "once",
            "providers": [
                {
                    "kind": "openai",
                    "model": "gpt-4o-mini",
                    "base_url": srv.base_url,
                    "api_key_env": "RAI_TEST_API_KEY",
                    "id": "guarded",
                    "max_retries": 0,
                    "guard": {"policy": "policy.yaml"},
                }
            ],
            "prompts": {"items": ["hello", "you idiot"]},
        }
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        plan = plan_run(
            load_run_config(tmp_path / "run.yaml"),
            config_path=tmp_path / "run.yaml",
            out_dir=tmp_path / "out",
        )
        # The file is gone after planning: the run builds its guard from the planned policy,
        # and the call keys hold the hash of what was planned.
        path.unlink()
        record = run_sync(plan)
    assert reads == [str(tmp_path / "policy.yaml")]
    assert record.status == "complete"
    pp = plan.providers[0]
    assert pp.identity["guard"]["policy_sha256"] == digest
    samples = read_samples(tmp_path / "out" / "samples.jsonl")
    by_item = {s.sample_id: s for s in samples}
    assert by_item["item-1"].finish_reason == "guard_blocked_input"
    assert {s.key for s in samples} == {call_key(pp.identity, r) for r in pp.requests}
