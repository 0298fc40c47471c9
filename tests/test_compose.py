"""libyaml and the Python parser compose a config into the same nodes.

tinit reads configs with libyaml's parser (C) where PyYAML has it, and falls
back to the Python one where it has not, and to word a syntax error. Every
message names a line and column from the nodes, so both must agree on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tinit.config import _compose

ROOT = Path(__file__).resolve().parent.parent
_FILES = sorted(
    [
        *(ROOT / "configs").glob("*.yaml"),
        *(ROOT / "tests" / "configs").rglob("*.yaml"),
        *(ROOT / "tests" / "process_compose").rglob("*.yaml"),
    ]
)


def _flat(node: yaml.Node, out: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    start, end = node.start_mark, node.end_mark
    if isinstance(node, yaml.ScalarNode):
        out.append(("scalar", node.tag, node.value, node.style, start.line, start.column))
        if node.value:  # an empty scalar has no text of its own to end at
            out.append((end.line, end.column))
    elif isinstance(node, yaml.SequenceNode):
        out.append(("sequence", node.tag, node.flow_style, start.line, start.column))
        for item in node.value:
            _flat(item, out)
    else:
        assert isinstance(node, yaml.MappingNode)
        out.append(("mapping", node.tag, node.flow_style, start.line, start.column))
        for key, value in node.value:
            _flat(key, out)
            _flat(value, out)
    return out


def _composable(path: Path) -> str | None:
    text = path.read_text(errors="replace")
    try:
        _compose._compose_with(_compose._PythonLoader, text)
    except (yaml.YAMLError, _compose.TooComplex):
        return None
    return text


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
@pytest.mark.parametrize("path", _FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_both_parsers_compose_the_same_nodes(path: Path) -> None:
    text = _composable(path)
    if text is None:
        pytest.skip("not YAML the Python parser takes (a test of errors)")
    python = _compose._compose_with(_compose._PythonLoader, text)
    libyaml = _compose.compose(text)
    assert (python is None) == (libyaml is None)
    if python is not None and libyaml is not None:
        assert _flat(libyaml, []) == _flat(python, [])


def test_the_files_are_really_read() -> None:
    assert len(_FILES) >= 20
    assert sum(_composable(path) is not None for path in _FILES) >= 20


@pytest.mark.parametrize(
    "text",
    ["a: [1, 2}\n", "a: b: c\n", "a:\n\t- x\n", "key: 'unterminated\n", "- a\nb: c\n"],
)
def test_a_syntax_error_is_worded_by_the_python_parser(text: str) -> None:
    with pytest.raises(yaml.YAMLError) as python:
        _compose._compose_with(_compose._PythonLoader, text)
    with pytest.raises(yaml.YAMLError) as read:
        _compose.compose(text)
    assert str(read.value) == str(python.value)


def test_the_limits_hold_with_libyaml_too() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)},"
        f" *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)},"
        f" *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    with pytest.raises(_compose.TooComplex):
        _compose.compose(bomb)
    with pytest.raises(_compose.TooComplex):
        _compose.compose("[" * 200 + "]" * 200)
