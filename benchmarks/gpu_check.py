"""The one prepared check for a lent GPU machine: in one command of under 8 minutes, the CUDA tests,
the Triton kernels beside fla-core and the reference loop, MAML's vmap against the per-task loops on
CUDA and 200 bf16 training steps of the demo's DeltaNet recipe; one summary file.

    make gpu-wheels     # here, once: the pure-Python packages that machine lacks into .whl/ and
                        # this machine's rendered glyphs into .gpu_cache/ (both git-ignored)
    make gpu-check      # there, from the repository root (carry .whl and .gpu_cache); or
    python3 benchmarks/gpu_check.py --out DIR

It runs on the machine's own ``python3`` and no package index: the wheels in ``--wheels`` are
unpacked into a temporary folder for the packages that do not import. The glyphs are read from the
carried file (``$METAFWP_GLYPHS_FILE``), so the training sees the same images as here. Without a
GPU it checks the packages and the data, says in one line that no GPU was found, and skips the CUDA
steps. Writes ``DIR/gpu_check.json`` (every step's command, exit code, seconds and output tail) and
``DIR/gpu_check.md``, the steps' full logs beside them (six files in all).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the machine's own python3 runs this from a checkout, nothing installed
PACKAGES = {"omegaconf": "omegaconf", "higher": "higher", "fla": "fla-core", "mlxtend": "mlxtend",
            "submitit": "submitit", "torchdiffeq": "torchdiffeq", "tensorboard": "tensorboard"}
CUDA_TESTS = ("tests/ops/test_triton.py", "tests/ops/test_triton_gpu.py", "tests/train/test_gpu.py",
              "tests/episodes/test_streams.py::test_on_device_dataset_samples_on_its_device")
TAIL_LINES = 40


def cuda_steps(work: Path) -> list[tuple[str, list[str], int]]:
    """``(name, command, timeout in seconds)`` of each step that needs the GPU; 420 s in all."""
    python = sys.executable
    return [
        ("CUDA tests", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CUDA_TESTS], 170),
        ("Triton kernels beside fla-core and the loop", [python, "benchmarks/ops_gpu.py", "--quick"], 90),
        ("MAML vmap / per-task loop / higher on CUDA", [python, "benchmarks/maml_cpu.py", "--device", "cuda",
                                                        "--steps", "1", "5", "--repeats", "3"], 60),
        ("200 bf16 steps of the demo's DeltaNet", [python, "-m", "metafwp.train", "recipes/glyphs_5way1shot_delta.yaml",
                                                   "train.steps=200", "train.device=cuda", "train.bf16=true",
                                                   "train.progress=lines", "train.log_every=50", "eval.episodes=1000",
                                                   f"train.out_dir={work}", "train.name=bf16_delta",
                                                   "train.resume=false"], 100),
    ]


def install_missing(wheels: Path, site: Path) -> dict[str, str]:
    """Unpack the wheels in ``wheels`` into ``site`` when a package of PACKAGES does not import, put
    ``site`` on the path (here and in the steps' environment); ``{package: version or "missing"}``."""
    missing = [module for module in PACKAGES if importlib.util.find_spec(module) is None]
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if missing and found:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, found)], check=True)
        sys.path.insert(0, str(site))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
        importlib.invalidate_caches()
    versions = {}
    for module, distribution in PACKAGES.items():
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[distribution] = "missing"
    return versions


def run_step(name: str, command: list[str], timeout: int, log: Path) -> dict:
    """Run ``command`` from the repository root; its output goes to ``log``."""
    started = time.perf_counter()
    with log.open("w") as stream:
        try:
            code = subprocess.run(command, cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    seconds = time.perf_counter() - started
    tail = log.read_text(errors="replace").splitlines()[-TAIL_LINES:]
    print(f"{name}: exit {code} in {seconds:.0f} s (log {log.name})", flush=True)
    return {"name": name, "command": " ".join(command), "exit": code, "seconds": round(seconds, 1),
            "timeout": timeout, "log": log.name, "tail": tail}


def training_figures(run_dir: Path) -> dict:
    """Steps per second, the last logged loss and the test accuracy of the bf16 run."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = [row for row in metrics["history"] if "loss" in row]
    test = metrics.get("test", {}).get(metrics.get("learner"), {})
    return {"train_seconds": metrics.get("train_seconds"), "steps": metrics.get("steps"),
            "last_loss": history[-1]["loss"] if history else None,
            "episodes_per_second": history[-1].get("episodes_per_second") if history else None,
            "test_accuracy": test.get("accuracy")}


def summary_markdown(summary: dict) -> str:
    lines = [f"# GPU check, {summary['date']}", "",
             f"- machine: {summary['gpu'] or 'no GPU'}; python {summary['python']}, torch {summary['torch']}, "
             f"triton {summary['triton']}",
             f"- packages: {', '.join(f'{name} {version}' for name, version in summary['packages'].items())}",
             f"- glyphs: {summary['glyphs']}", ""]
    if not summary["gpu"]:
        lines.append(summary["note"])
    for step in summary["steps"]:
        lines += [f"## {step['name']}: exit {step['exit']} in {step['seconds']} s", "", "```", *step["tail"], "```", ""]
    if summary.get("training"):
        lines.append(f"Training figures: {json.dumps(summary['training'])}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "runs" / "gpu_check"),
                        help="where the summary and the logs go (Default: $OUT, else runs/gpu_check)")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="wheels of the missing packages")
    parser.add_argument("--glyphs", type=Path, default=ROOT / ".gpu_cache",
                        help="a folder holding the carried glyphs-v*.pt (make gpu-wheels writes it)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))  # the unpacked wheels and the training run
    started = time.perf_counter()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    packages = install_missing(args.wheels, work / "site")
    import torch
    import triton

    from episodes.datasets.glyphs import Glyphs, class_list

    version = class_list()["version"]
    carried = sorted(args.glyphs.rglob(f"glyphs-v{version}-*.pt")) if args.glyphs.is_dir() else []
    if carried:
        os.environ["METAFWP_GLYPHS_FILE"] = str(carried[-1].resolve())

    glyphs = Glyphs("background", progress=False)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    summary = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": gpu, "python": platform.python_version(),
               "torch": torch.__version__, "triton": triton.__version__, "packages": packages,
               "glyphs": f"{glyphs.num_classes} background classes from "
                         f"{carried[-1].name + ' (carried)' if carried else 'rendered on this machine'}",
               "steps": []}
    print(f"python {summary['python']}, torch {summary['torch']}, triton {summary['triton']}; "
          f"{gpu or 'no GPU'}; {summary['glyphs']}", flush=True)
    steps = cuda_steps(work)
    if gpu:
        for index, (name, command, timeout) in enumerate(steps):
            summary["steps"].append(run_step(name, command, timeout, args.out / f"step{index + 1}.log"))
        if (work / "bf16_delta" / "metrics.json").is_file():
            summary["training"] = training_figures(work / "bf16_delta")
    else:
        summary["note"] = (f"no GPU found (torch.cuda.is_available() is False): checked the packages and the glyphs, "
                           f"skipped the {len(steps)} CUDA steps ({'; '.join(name for name, _, _ in steps)})")
        print(summary["note"], flush=True)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "gpu_check.md").write_text(summary_markdown(summary))
    print(f"summary: {args.out / 'gpu_check.md'} ({summary['seconds']:.0f} s)", flush=True)
    failed = [step["name"] for step in summary["steps"] if step["exit"] != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
