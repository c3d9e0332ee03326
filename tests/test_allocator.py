"""Render processes keep the memory a render frees: the next render reuses it without page faults."""

import subprocess
import sys
from pathlib import Path

import pytest

from thumbproxy.workers.renderpool import RenderPool
from workerjobs import faults_of_a_repeat_render

TESTS = Path(__file__).resolve().parent
# A repeat render that reuses freed memory faults in a few pages at most (its output, the odd new buffer).
FEW_FAULTS = 100


def faults_in_a_fresh_process(directory: Path, tuned: bool) -> int:
    """faults_of_a_repeat_render in a new interpreter, with or without keep_freed_memory first."""
    script = (
        "import sys\nfrom thumbproxy.workers.allocator import keep_freed_memory\n"
        "from workerjobs import faults_of_a_repeat_render\n"
        f"if {tuned} and not keep_freed_memory():\n    sys.exit('no mallopt')\n"
        f"print(faults_of_a_repeat_render({str(directory)!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=TESTS)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_a_repeat_render_reuses_the_memory_the_last_one_freed(tmp_path: Path) -> None:
    untuned = faults_in_a_fresh_process(tmp_path, tuned=False)
    if untuned < FEW_FAULTS:
        pytest.skip(f"this C library reuses freed memory by itself ({untuned} page faults)")
    assert faults_in_a_fresh_process(tmp_path, tuned=True) < FEW_FAULTS <= untuned


async def test_render_workers_reuse_freed_memory(tmp_path: Path) -> None:
    pool = RenderPool(workers=1)
    await pool.start()
    try:
        assert await pool.run(faults_of_a_repeat_render, str(tmp_path)) < FEW_FAULTS
    finally:
        await pool.close()
