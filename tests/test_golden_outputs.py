"""Golden outputs: every command (judge, export, score, leaderboard, report, agree) writes exactly what
it wrote when tests/fixtures/golden/expected.json was made, on the in-repo inputs of that folder.

Written before the move onto one evaluator contract and one runner (issue 11), which must not change
any output. scripts/golden_outputs.py runs the commands and says what is normalised before hashing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "golden_outputs.py"

pytestmark = pytest.mark.slow


def test_every_command_writes_the_golden_outputs():
    pytest.importorskip("transformers", reason="`pixeljury score` needs the torch extra: pip install -e '.[torch]'")
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        changed = [line.split()[1] for line in proc.stdout.splitlines()
                   if line.startswith(("DIFFERS ", "MISSING ", "NEW "))]
        pytest.fail(
            f"{len(changed)} golden output(s) changed: {', '.join(changed) or '(the script failed: see below)'}\n"
            "If the change is intended, regenerate the expected hashes and commit them:\n"
            "    .venv/bin/python scripts/golden_outputs.py --write\n"
            "(add --texts DIR to read the normalised outputs).\n\n"
            f"{proc.stdout[-12000:]}\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
