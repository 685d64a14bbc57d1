"""The fuzz campaign, short: every reader of a user's file gets a few dozen seeded mutations of a valid sample and
must end each in the documented error naming the file, or accept it and return a valid result (tests/fuzz/harness
.py). The long campaign (>= 10,000 inputs per reader, forked workers under a memory cap) is
``python benchmarks/fuzz.py`` (run by ``bash scripts/bench.sh``)."""
from __future__ import annotations

import pytest

from .harness import READERS, run_reader

#: failure modes found and not fixed here (reported; see benchmarks/fuzz.py's table): MeshCache hands out the
#: records of a damaged cache without checking them (``onthefly cache validate`` reports them: the cache-validate
#: reader), and --resume keeps rows whose values were altered inside the declared rows (no per-batch checksum).
KNOWN = {"mesh-cache-h5": {"accepted but invalid"}, "export-resume": {"accepted but invalid"}}


@pytest.mark.parametrize("name", list(READERS))
def test_reader_survives_mutations(name, tmp_path):
    out = run_reader(name, tmp_path, n=24, seconds=20, seed=1, time_limit=30)
    assert out.tried >= 5
    bad = {k: v for k, v in out.kinds.items() if k not in KNOWN.get(name, set())}
    assert not bad, [e for e in out.examples if e["kind"] in bad][:5]
    assert out.accepted + out.refused + out.other == out.tried
