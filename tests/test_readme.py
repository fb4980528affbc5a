"""The README's Python API example runs as written (on a few demo images)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_api_example_runs():
    import gcdash.data

    code = re.search(r"## Python API\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    scope = {"images": gcdash.data.load("demo", n=3).images}
    exec(code, scope)
    assert scope["x_pgd"].shape == scope["x"].shape and ((scope["shift"] >= 0) & (scope["shift"] <= 1)).all()
