"""Data, not code: installed as a package only so importlib.resources finds it."""
