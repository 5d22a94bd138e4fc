"""The pipeline run's summary puts each model beside its best baseline."""

from __future__ import annotations

import json

from tessera.tasks.pipeline.run_report import run_summary


def test_summary_row_shows_the_model_beside_its_baseline(tmp_path):
    (tmp_path / "eval" / "seg").mkdir(parents=True)
    metrics = {"dice_mean": 0.91, "baseline_rf_dice_mean": 0.98, "baseline_dice_mean": 0.98}
    (tmp_path / "eval" / "seg" / "metrics.json").write_text(json.dumps(metrics))
    text = run_summary(tmp_path, "eval", "registry", ["seg", "new"], ["evaluate"], [])
    rows = [line for line in text.splitlines() if line.startswith("| seg ")]
    assert "versus baseline" in text and len(rows) == 1
    assert "| dice_mean 0.91 < rf 0.98 |" in rows[0]
    assert "| new | - | - |" in text  # not evaluated yet: nothing to compare


def test_the_deployed_flows_import_no_torch_lightning_or_sklearn():
    """`prefect deploy` and every worker's flow run import these modules first; the pipeline's
    report reads the baselines' scores, not the code that computes them."""
    import subprocess
    import sys

    code = (
        "import sys; import tessera.flows.pipeline, tessera.flows.predict; "
        "print(sorted(m for m in ('torch', 'lightning', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
