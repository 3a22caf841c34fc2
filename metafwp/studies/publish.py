"""The README's study tables come from ``docs/results/<study>.md``, written from a finished study by
``python -m metafwp.studies report NAME --publish``: the README holds each one between
``<!-- results: NAME -->`` and ``<!-- /results -->``, and ``readme_with_results`` fills those
blocks from the files (a test checks that they agree)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"(<!-- results: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def publish(name: str, folder: Path, root: Path = ROOT) -> Path:
    """Copy a finished study's ``results.md`` (its title line left out) and figures from ``folder``
    to ``<root>/docs/results/``, figure links pointing at the copies; the README's block follows."""
    results = root / "docs" / "results"
    results.mkdir(parents=True, exist_ok=True)
    text = (folder / "results.md").read_text().split("\n", 2)[2]  # below the "# name: summary" title
    figures = []
    for figure in sorted(folder.glob("*.png")):
        target = results / f"{name}_{figure.name}"
        shutil.copyfile(figure, target)
        figures.append(f"![{name}: {figure.stem.replace('_', ' ')}](docs/results/{target.name})")
    path = results / f"{name}.md"
    path.write_text(text.rstrip("\n") + "\n" + "".join(f"\n{link}\n" for link in figures))
    readme = root / "README.md"
    readme.write_text(readme_with_results(readme.read_text(), root))
    return path


def readme_with_results(readme: str, root: Path = ROOT) -> str:
    """``readme`` with every results block replaced by its ``<root>/docs/results/<name>.md``."""
    def fill(match: re.Match) -> str:
        source = root / "docs" / "results" / f"{match['name']}.md"
        if not source.is_file():
            raise FileNotFoundError(f"the README's results block {match['name']!r} has no {source}: publish the "
                                    f"study with python -m metafwp.studies report {match['name']} --publish")
        return match.group(1) + source.read_text() + match.group(4)
    return BLOCK.sub(fill, readme)
