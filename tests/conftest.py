import sys
from pathlib import Path

# tests/replay.py and friends are helpers of the suite's own tests.
sys.path.insert(0, str(Path(__file__).parent))
