"""Conversions between tinit's services.yaml and other tools' configs.

``tinit import FORMAT FILE`` turns another supervisor's config into a
services.yaml; ``tinit export kubernetes CONFIG`` turns a services.yaml into
Kubernetes objects. The modules:

- ``importing``: the ``tinit import`` command, for every format in `IMPORTERS`;
- ``_render``: what every importer shares: `Finding` for a note or a problem,
  `ConversionError`, and the services.yaml text with the notes on top;
- ``supervisord``: supervisord.conf, read by ``_supervisord_ini``;
- ``process_compose``: process-compose.yaml, each process converted by
  ``_pc_process`` (with ``_pc_probes`` and ``_pc_values``);
- ``_budget`` and ``_daemons``: what the importers check in every file: the
  time the services need to stop, and commands that fork a daemon;
- ``kubernetes``: the ``tinit export kubernetes`` command and its YAML
  writer, over ``_k8s``, the mapping of services to containers, with
  ``_k8s_ports`` (ports and the Service) and ``_k8s_vars`` (a command's
  ``${NAME}`` left for run time).

A new import format is one module whose ``convert(text, *, filename)``
returns the YAML and the notes, and one line in `IMPORTERS`. Its module is
loaded only when ``tinit import`` asks for it: nothing here is imported by
``tinit run``, and this file imports nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping


class Convert(Protocol):
    """An importer's ``convert``: the services.yaml for the file's ``text``, and its notes.

    Raises `ConversionError` when the other tool would refuse the file too.
    """

    def __call__(self, text: str, *, filename: str) -> tuple[str, list[str]]: ...


@dataclass(frozen=True, slots=True)
class Importer:
    """Where a format's ``convert`` lives, and what its FILE is (for --help)."""

    module: str
    source: str

    def load(self) -> Convert:
        convert: Convert = importlib.import_module(self.module).convert
        return convert


IMPORTERS: Final[Mapping[str, Importer]] = {
    "supervisord": Importer("tinit.convert.supervisord", "the supervisord.conf"),
    "process-compose": Importer("tinit.convert.process_compose", "the process-compose.yaml"),
}
#: the largest file an importer reads: a config file, never anywhere near this
MAX_BYTES: Final = 1024 * 1024


def import_file(format: str, path: str) -> tuple[str, list[str]]:
    """The services.yaml converted from the ``format`` file at ``path``, and its notes.

    Raises OSError or UnicodeDecodeError when the file can't be read, and
    `ConversionError` when it can't be converted, or is over `MAX_BYTES`.
    """
    with open(path, "rb") as file:
        data = file.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        from tinit.convert._render import ConversionError, Finding

        why = f"is larger than {MAX_BYTES // 1024} KiB: not a config file to convert"
        raise ConversionError([Finding(path, "", "", why)])
    return IMPORTERS[format].load()(data.decode("utf-8"), filename=path)


__all__ = ["IMPORTERS", "Convert", "Importer", "import_file"]
