"""Every worked example in docs/conventions.md is executed and its printed result asserted."""
import doctest
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "conventions.md"


def test_conventions_examples():
    result = doctest.testfile(str(DOC), module_relative=False, verbose=False, report=True,
                              optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 30, "the conventions page lost its examples"
    assert result.failed == 0, f"{result.failed} example(s) in {DOC.name} disagree with the code (see output)"
