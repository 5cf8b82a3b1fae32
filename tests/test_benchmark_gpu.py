"""benchmarks/gpu.py runs end to end on the CPU at tiny sizes and prints its table (no timings checked)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "benchmarks" / "gpu.py"


@pytest.mark.slow
def test_gpu_benchmark_runs_tiny_on_cpu(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--models", "stfpm", "--no-compile",
           "--work-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "Command: `python benchmarks/gpu.py --device cpu --tiny" in out
    assert "Machine: CPU only:" in out and "Date:" in out
    rows = [line for line in out.splitlines() if line.startswith("| STFPM")]
    measurements = [row.split(" | ")[1] for row in rows]
    assert len(rows) == 8, out
    for expected in ("fp32", "bf16-mixed", "inference img/s (batch 4), fp32", "inference img/s (batch 4), bf16",
                     "batch-1 latency", "2-epoch category of 10 images", "bf16-mixed + compiled"):
        assert any(expected in m for m in measurements), (expected, measurements)
    for row in rows[:-1]:  # every row measured (the compiled one is skipped by --no-compile)
        assert "n/a" not in row.split(" | ")[2], row
    assert "skipped: --no-compile" in rows[-1]
    assert not list(tmp_path.iterdir())  # the temporary data and runs are gone


@pytest.mark.slow  # a fresh interpreter importing torch: ~3-8 s on 2 busy cores
def test_gpu_benchmark_without_cuda_says_so_in_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: no CUDA GPU is visible to torch; run with --device cpu (e.g. --device cpu --tiny)"]


@pytest.mark.slow
def test_gpu_benchmark_prints_the_rows_measured_before_a_sigterm(tmp_path):
    # `timeout` (as on a time-limited GPU machine) sends SIGTERM: the rows already measured are
    # not lost. The signal is sent once the first row has been reported, so nothing here is timed.
    import signal

    cmd = [sys.executable, "-u", str(SCRIPT), "--device", "cpu", "--tiny", "--models", "stfpm", "--no-compile",
           "--work-dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("[") and "STFPM (ResNet-18): fit img/s" in line:
                proc.send_signal(signal.SIGTERM)
                break
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "stopped by SIGTERM during the rows after the last one below" in out
    rows = [line for line in out.splitlines() if line.startswith("| STFPM")]
    assert 1 <= len(rows) < 8, out
    assert "n/a" not in rows[0].split(" | ")[2], rows[0]
    assert not list(tmp_path.iterdir())  # the temporary data and runs are gone
