#!/usr/bin/env python3
"""Build the customer-service zipapp with shiv, as ``shiv.spec`` describes.

    python tools/build_zipapp.py [--spec shiv.spec] [--output PATH] [--lock]

Needs only the standard library, pip and shiv in the running Python (``pip
install '.[zipapp]'``; the ``test`` extra has shiv too): the project is built from its
source, not imported. The zipapp fits the Python that runs this script.

Steps, each chosen so that two builds of the same sources give the same bytes:

1. copy ``project_files`` into a clean temporary directory (no stale ``build/``);
2. ``pip install --target`` it with its dependencies, pinned by ``constraints``
   and ``build_constraints``;
3. drop what depends on the build machine: ``bin/`` scripts (their shebang is
   this interpreter's path), ``direct_url.json`` (the temporary path),
   ``__pycache__``; normalise file modes (the umask);
4. ``shiv --site-packages ... --reproducible`` with ``SOURCE_DATE_EPOCH`` from
   the spec (the last commit's time by default).

``--lock`` installs without ``constraints`` and writes the versions pip chose
into the constraints file, then builds with them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

DEFAULT_EPOCH = 315532800  # 1980-01-01, the earliest time a zip file can hold
KNOWN_KEYS: dict[str, type | tuple[type, ...]] = {
    "output": str, "console_script": str, "entry_point": str, "python": str,
    "compressed": bool, "source_date_epoch": (str, int), "project_files": list,
    "constraints": str, "build_constraints": str, "pin_python": bool,
    "pip_args": list, "shiv_args": list,
}
PROJECT = "customer-service"

PREAMBLE = '''\
"""shiv preamble (tools/build_zipapp.py): the bundled wheels fit one Python version."""
import sys

if sys.version_info[:2] != {version!r}:
    sys.exit("customer-service: this zipapp was built for Python {dotted} and cannot run on "
             + sys.version.split()[0] + "; run it with python{dotted} or rebuild it with "
             "'python tools/build_zipapp.py' under this Python.")
'''


class BuildError(Exception):
    pass


def read_spec(path: Path) -> dict[str, Any]:
    """The ``[zipapp]`` table of the spec, checked: unknown keys and wrong types are errors."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"{path}: {exc}") from exc
    spec = data.get("zipapp")
    if not isinstance(spec, dict) or set(data) != {"zipapp"}:
        raise BuildError(f"{path}: expected exactly one [zipapp] table")
    for key, value in spec.items():
        if key not in KNOWN_KEYS:
            raise BuildError(f"{path}: unknown key {key!r} (known: {', '.join(KNOWN_KEYS)})")
        if not isinstance(value, KNOWN_KEYS[key]) or isinstance(value, bool) != (
                KNOWN_KEYS[key] is bool):
            raise BuildError(f"{path}: {key} has the wrong type ({type(value).__name__})")
    if ("console_script" in spec) == ("entry_point" in spec):
        raise BuildError(f"{path}: give exactly one of console_script and entry_point")
    return spec


def source_date_epoch(spec: dict[str, Any], root: Path) -> int:
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    value = spec.get("source_date_epoch", DEFAULT_EPOCH)
    if value != "git":
        return int(value)
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=root, check=True,
                             capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out = ""
    if not out:
        print("build_zipapp: no git commit to date the build; using 1980-01-01", file=sys.stderr)
        return DEFAULT_EPOCH
    return max(int(out), DEFAULT_EPOCH)


def copy_project(root: Path, names: list[str], dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".mypy_cache")
    for name in names:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, dest / name)
    if not (dest / "pyproject.toml").is_file():
        raise BuildError(f"{root}: no pyproject.toml to build")
    readme = tomllib.loads((dest / "pyproject.toml").read_text()).get("project", {}).get("readme")
    if isinstance(readme, str) and not (dest / readme).exists():
        # setuptools refuses to build without the readme pyproject names; an empty
        # one only empties the long description in the bundled metadata.
        (dest / readme).write_text("")


def run(command: list[str], **kwargs: Any) -> None:
    print("+", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, **kwargs)


def clean_site_packages(site: Path) -> None:
    """Remove what depends on the build machine rather than on the sources."""
    shutil.rmtree(site / "bin", ignore_errors=True)
    for cache in sorted(site.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    for direct_url in site.glob("*.dist-info/direct_url.json"):
        direct_url.unlink()
        record = direct_url.parent / "RECORD"
        if record.is_file():
            lines = record.read_text().splitlines(keepends=True)
            record.write_text("".join(line for line in lines
                                      if not line.startswith(f"{direct_url.parent.name}/"
                                                             "direct_url.json,")))
    for path in site.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


def installed_versions(site: Path) -> list[str]:
    """``name==version`` for every distribution installed in ``site``, except this project."""
    pins = []
    for metadata in sorted(site.glob("*.dist-info/METADATA")):
        fields: dict[str, str] = {}
        for line in metadata.read_text(encoding="utf-8").splitlines():
            if not line:
                break
            key, _, value = line.partition(": ")
            fields.setdefault(key, value)
        name = fields["Name"]
        if name.lower().replace("_", "-") != PROJECT:
            pins.append(f"{name}=={fields['Version']}")
    return sorted(pins, key=str.lower)


def build(spec_path: Path, output: Path | None, lock: bool) -> Path:
    spec = read_spec(spec_path)
    root = spec_path.resolve().parent
    target = (output or root / spec.get("output", "dist/customer-service")).resolve()
    epoch = source_date_epoch(spec, root)
    if importlib.util.find_spec("shiv") is None:
        raise BuildError("shiv is not installed in this Python: pip install '.[zipapp]' "
                         "(or pip install shiv)")

    with tempfile.TemporaryDirectory(prefix="build-zipapp-") as tmp_name:
        tmp = Path(tmp_name)
        src, site = tmp / "src", tmp / "site-packages"
        src.mkdir()
        copy_project(root, spec.get("project_files", ["pyproject.toml", "customer_service"]), src)

        pip = [sys.executable, "-m", "pip", "install", "--target", str(site), "--no-compile",
               "--disable-pip-version-check", "--no-warn-script-location", "--quiet"]
        constraints = spec.get("constraints")
        if constraints and not lock:
            pip += ["--constraint", str(root / constraints)]
        if spec.get("build_constraints"):
            pip += ["--build-constraint", str(root / spec["build_constraints"])]
        pip += [*spec.get("pip_args", []), str(src)]
        env = {**os.environ, "PIP_REQUIRE_VIRTUALENV": "false", "SOURCE_DATE_EPOCH": str(epoch),
               "PYTHONHASHSEED": "0"}
        run(pip, env=env)

        if lock:
            if not constraints:
                raise BuildError(f"{spec_path}: --lock needs a constraints file in the spec")
            pins = installed_versions(site)
            (root / constraints).write_text(
                "# Runtime dependencies of the customer-service zipapp, pinned (pip -c).\n"
                f"# Written by `python tools/build_zipapp.py --lock` under Python "
                f"{sys.version_info.major}.{sys.version_info.minor}; do not edit by hand.\n"
                + "".join(f"{pin}\n" for pin in pins))
            print(f"build_zipapp: wrote {len(pins)} pins to {constraints}", file=sys.stderr)

        clean_site_packages(site)

        shiv = [sys.executable, "-m", "shiv", "--site-packages", str(site), "--reproducible",
                "--compressed" if spec.get("compressed", True) else "--uncompressed",
                "-p", spec.get("python", "/usr/bin/env python3"), "-o", str(target)]
        if "entry_point" in spec:
            shiv += ["-e", spec["entry_point"]]
        else:
            shiv += ["-c", spec["console_script"]]
        if spec.get("pin_python", False):
            preamble = tmp / "preamble" / "check_python.py"
            preamble.parent.mkdir()
            version = sys.version_info[:2]
            preamble.write_text(PREAMBLE.format(version=version,
                                                dotted=".".join(map(str, version))))
            preamble.chmod(0o644)
            shiv += ["--preamble", str(preamble)]
        shiv += spec.get("shiv_args", [])
        target.parent.mkdir(parents=True, exist_ok=True)
        run(shiv, env=env)

    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(f"build_zipapp: {target} ({target.stat().st_size // 1024} KiB, Python "
          f"{sys.version_info.major}.{sys.version_info.minor}, SOURCE_DATE_EPOCH={epoch}) "
          f"sha256 {digest}", file=sys.stderr)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--spec", type=Path, default=Path(__file__).resolve().parent.parent
                        / "shiv.spec", help="the spec file (default: shiv.spec at the repo root)")
    parser.add_argument("--output", "-o", type=Path,
                        help="write the zipapp here instead of the spec's output")
    parser.add_argument("--lock", action="store_true",
                        help="resolve dependencies afresh and rewrite the constraints file")
    args = parser.parse_args(argv)
    try:
        build(args.spec, args.output, args.lock)
    except BuildError as exc:
        print(f"build_zipapp: error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"build_zipapp: error: {exc.cmd[:4]}... exited with {exc.returncode}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
