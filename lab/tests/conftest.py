"""The lab's tests use the core suite's fixtures (tests/conftest.py): the real data, loaded once, and tiny runs."""

import importlib.util
import sys
from pathlib import Path

CORE_TESTS = Path(__file__).resolve().parents[2] / "tests" / "conftest.py"
_spec = importlib.util.spec_from_file_location("core_conftest", CORE_TESTS)
_core = importlib.util.module_from_spec(_spec)
sys.modules["core_conftest"] = _core
_spec.loader.exec_module(_core)
globals().update({name: value for name, value in vars(_core).items() if not name.startswith("_")})
