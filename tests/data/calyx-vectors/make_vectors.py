"""Regenerate the ``.calyx`` test vector: ``python tests/data/calyx-vectors/make_vectors.py``.

Writes ``tiny.calyx`` (built from explicit integer factors, so it is identical on every platform)
and ``tiny.expected.json`` (what a decoder must find in it; see ``docs/format.md``, section 8).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _synthetic():
    spec = importlib.util.spec_from_file_location("calyx_vectors_synthetic", HERE / "synthetic.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def main() -> int:
    from calyx.format.calyx_file import load, save

    syn = _synthetic()
    inst = syn.vector_instrument()
    save(inst, HERE / "tiny.calyx", force=True)
    summary = syn.vector_summary(load(HERE / "tiny.calyx"))
    (HERE / "tiny.expected.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    print(f"wrote {HERE / 'tiny.calyx'} ({(HERE / 'tiny.calyx').stat().st_size} bytes) and tiny.expected.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
