"""The local benchmark runs end to end and reports every figure (no timing is asserted here)."""

from __future__ import annotations

import importlib.util

from bench import local

SAYIIR_INSTALLED = importlib.util.find_spec("sayiir") is not None


def test_quick_run_reports_every_figure() -> None:
    result = local.run(quick=True)

    assert set(result) == {
        "plait_us_per_step",
        "sayiir_us_per_step",
        "ratio_vs_sayiir",
        "plait_durable_us_per_step",
        "sayiir_durable_us_per_step",
        "durable_ratio_vs_sayiir",
    }
    for key in ("plait_us_per_step", "plait_durable_us_per_step"):
        value = result[key]
        assert isinstance(value, float) and value > 0, key
    for key in ("sayiir_us_per_step", "ratio_vs_sayiir", "sayiir_durable_us_per_step", "durable_ratio_vs_sayiir"):
        value = result[key]
        if SAYIIR_INSTALLED:
            assert isinstance(value, float) and value > 0, key
        else:
            assert value is None, key
    assert "plait/sayiir" in local.format_table(result)
