"""tinit.convert: the formats registry, and converters loaded only by the commands that need them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.nsrun import ROOT
from tinit.convert import IMPORTERS, import_file, process_compose, supervisord
from tinit.convert._render import ConversionError

FIXTURES = ROOT / "tests" / "supervisord"


def loaded_after(code: str) -> list[str]:
    """The tinit.convert modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('tinit.convert'))))"
    out = subprocess.run(
        [sys.executable, "-c", f"import json, sys\n{probe}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    names: list[str] = json.loads(out.stdout.splitlines()[-1])
    return names


@pytest.mark.parametrize("argv", [["run", "--help"], ["check", "--help"], ["status", "--help"]])
def test_other_commands_load_no_converter(argv: list[str]) -> None:
    """`tinit run` is PID 1's start-up: it must not pay for any converter."""
    code = f"from tinit.cli import run_cli\ntry:\n  run_cli({argv!r})\nexcept SystemExit:\n  pass"
    assert loaded_after(code) == []


def test_the_package_loads_a_format_only_when_asked() -> None:
    """`tinit import --help` lists the formats without importing any of them."""
    code = "from tinit.cli import run_cli\ntry:\n  run_cli(['import', '--help'])\nexcept SystemExit:\n  pass"
    loaded = loaded_after(code)
    assert "tinit.convert.importing" in loaded
    converters = {"tinit.convert.supervisord", "tinit.convert.process_compose"}
    assert not {*converters, "tinit.convert.kubernetes"} & set(loaded)


def test_each_format_names_a_module_with_convert() -> None:
    assert IMPORTERS["supervisord"].load() is supervisord.convert
    assert IMPORTERS["process-compose"].load() is process_compose.convert
    for importer in IMPORTERS.values():
        assert callable(importer.load())


def test_import_file_reads_and_converts() -> None:
    """import_file is the file read, then the format's convert; its errors pass through."""
    path = FIXTURES / "groups.conf"
    assert import_file("supervisord", str(path)) == supervisord.convert(
        path.read_text(), filename=str(path)
    )
    with pytest.raises(ConversionError):
        import_file("supervisord", "/dev/null")
    with pytest.raises(FileNotFoundError):
        import_file("supervisord", str(ROOT / "tests" / "no-such.conf"))
