"""Worker processes start by spawn: a guarded script works, an unguarded one gets told how to fix it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bundle"
CALL = ("from pathlib import Path\n"
        "from assoc import Settings, read_bundle, scan\n"
        "def run():\n"
        f"    result = scan(read_bundle(Path({str(EXAMPLE)!r})), Settings(cache_dir=None))\n"
        "    print('linked', result.linked_pairs)\n")


def _run(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "call_assoc.py"
    script.write_text(CALL + body, encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)


def test_a_guarded_script_uses_the_worker_pool(tmp_path):
    done = _run(tmp_path, "if __name__ == '__main__':\n    run()\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("linked ")


def test_an_unguarded_script_is_told_to_guard_the_call(tmp_path):
    done = _run(tmp_path, "run()\n")
    assert done.returncode != 0
    assert 'if __name__ == "__main__":' in done.stderr and "WorkerError" in done.stderr
