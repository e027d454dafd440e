"""Cost maths on hand-worked cases."""

from __future__ import annotations

import pytest

from rai_harness.pricing import PriceEntry, PriceTable, busy_seconds, hourly_costs, token_cost
from rai_harness.providers.base import PricingOverride


def test_shipped_table_loads_and_has_dates_and_sources():
    table = PriceTable.default()
    assert table.version
    assert table.entries
    for entry in table.entries:
        assert entry.source and entry.source.startswith("https://")
        assert entry.as_of


def test_specific_pattern_wins_over_general():
    table = PriceTable.default()
    mini = table.resolve("openai", "gpt-4o-mini-2024-07-18")
    big = table.resolve("openai", "gpt-4o-2024-08-06")
    assert mini is not None and big is not None
    assert (mini.input_per_1m, mini.output_per_1m) == (0.15, 0.60)
    assert (big.input_per_1m, big.output_per_1m) == (2.50, 10.00)


def test_token_cost_hand_worked():
    # 1,000 prompt tokens at $2.50/1M + 500 completion tokens at $10/1M
    # = 0.0025 + 0.005 = $0.0075
    price = PriceTable.default().resolve("openai", "gpt-4o")
    assert price is not None
    assert token_cost(price, 1000, 500) == pytest.approx(0.0075)


def test_unknown_model_is_not_priced():
    assert PriceTable.default().resolve("openai", "my-fine-tune") is None
    assert PriceTable.default().resolve("hf-local", "smollm2") is None


def test_config_override_and_extension():
    table = PriceTable.default().extended(
        [PriceEntry(provider="openai", model="my-*", input_per_1m=1, output_per_1m=2)]
    )
    price = table.resolve("openai", "my-fine-tune")
    assert price is not None and price.output_per_1m == 2
    override = PricingOverride(usd_per_hour=3.6)
    hourly = table.resolve("openai", "gpt-4o", override)
    assert hourly is not None and hourly.hourly and hourly.source == "config"
    assert token_cost(hourly, 100, 100) is None


def test_busy_seconds_merges_overlaps_and_skips_gaps():
    # [0,2] and [1,3] overlap -> [0,3] = 3 s; [10,11] = 1 s; gap 3..10 not billed.
    assert busy_seconds([(0, 2), (1, 3), (10, 11)]) == pytest.approx(4.0)
    assert busy_seconds([]) == 0.0


def test_hourly_costs_spread_by_completion_tokens():
    # $3.60/h over 4 busy seconds = $0.004 total; tokens 1:3 -> $0.001 and $0.003.
    costs = hourly_costs(3.6, [(0, 4), (1, 2)], [10, 30])
    assert costs == pytest.approx([0.001, 0.003])
    assert sum(costs) == pytest.approx(3.6 * 4 / 3600)


def test_hourly_costs_no_tokens_share_equally():
    assert hourly_costs(3.6, [(0, 1), (0, 1)], [0, 0]) == pytest.approx([0.0005, 0.0005])


def test_a_bad_price_file_names_the_file_and_line(tmp_path):
    from rai_harness.errors import ConfigError

    broken = tmp_path / "prices.yaml"
    broken.write_text("version: x\nentries: [\n")
    with pytest.raises(ConfigError, match="invalid YAML at line") as info:
        PriceTable.from_file(broken)
    assert info.value.file == str(broken)
    doubled = tmp_path / "doubled.yaml"
    doubled.write_text("version: a\nversion: b\nentries: []\n")
    with pytest.raises(ConfigError, match="duplicate key 'version'"):
        PriceTable.from_file(doubled)
