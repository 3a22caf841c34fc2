"""Every Python snippet of the README runs as written, top to bottom in one namespace."""
import re
import textwrap
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_snippets_run_as_written():
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", README.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 4
    namespace = {}
    for index, (indent, source) in enumerate(blocks):
        exec(compile(textwrap.dedent(source), f"README.md python block {index}", "exec"), namespace)
