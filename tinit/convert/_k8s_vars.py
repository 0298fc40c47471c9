"""A command's ``${NAME}`` that only the container can resolve, as Kubernetes' ``$(NAME)``.

tinit expands ``${NAME}`` when it reads its config, from its own
environment. ``tinit export`` reads the config on another machine, so a
variable set there is expanded there, and one that isn't stays in the
command as written, to be resolved when tinit starts in the container.
Kubernetes runs the command as it is written in the object and knows nothing
of ``${NAME}``: such a command would reach the program as written. What
Kubernetes does expand is ``$(NAME)``, from the container's ``env``.

The config as loaded can't tell a ``${NAME}`` left for run time from a
literal ``${NAME}`` written ``$${NAME}`` (one for the shell, say). So the
commands are read once more, with each such unset name set to a marker that
no config holds; where the marker comes out is where tinit would have
expanded the name. That reading must agree with the first one once the
markers are put back as ``${NAME}``; a service where it doesn't keeps its
command as written, with a note.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from tinit.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from tinit.config import Config

__all__ = ["PLACEHOLDER", "deferred_commands", "to_kubernetes", "unset_names"]

# The value of an env entry added for a name that only the container knows.
PLACEHOLDER: Final = "REPLACE-ME"
# Private-use characters around the name: no config holds them.
_OPEN: Final = "\ue000"
_CLOSE: Final = "\ue001"
_MARKED: Final = re.compile(f"{_OPEN}([A-Za-z_][A-Za-z0-9_]*){_CLOSE}")
_BARE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Kubernetes expands $(NAME) and reads $$ as $; a $ before a non-ASCII
# character is doubled too, as the expander would split that character.
_SPECIAL: Final = re.compile(r"\$(?=[$(]|[^\x00-\x7f])")


def unset_names(command: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The names of bare ``${NAME}`` in ``command`` that ``environ`` doesn't set."""
    found = (m[1] for arg in command for m in _BARE.finditer(arg))
    return list(dict.fromkeys(name for name in found if name not in environ))


def deferred_commands(
    config: Config,
    environ: Mapping[str, str],
    reload: Callable[[Mapping[str, str]], Config],
) -> dict[str, tuple[str, ...] | None]:
    """Each command that kept a ``${NAME}`` for run time, with markers where it did.

    ``reload`` reads the same config again with another environment, as
    ``config`` was read with ``environ``. A service whose command may hold
    such a name but whose second reading doesn't agree with the first maps
    to None; services whose commands hold none are left out. Only a bare
    ``${NAME}`` stays unexpanded: ``${NAME:-default}`` is the default here.
    """
    unset = {name: unset_names(s.command, environ) for name, s in config.services.items()}
    names = {var for found in unset.values() for var in found}
    if not names:
        return {}
    marked = {**environ, **{var: f"{_OPEN}{var}{_CLOSE}" for var in names}}
    try:
        again: Config | None = reload(marked)
    except ConfigError:  # a name also used elsewhere, where a marker is no value
        again = None
    commands: dict[str, tuple[str, ...] | None] = {}
    for name, found in unset.items():
        if not found:
            continue
        other = again.services.get(name) if again is not None else None
        if other is None or _unmarked(other.command) != config.services[name].command:
            commands[name] = None
        elif other.command != config.services[name].command:
            commands[name] = other.command
    return commands


def _unmarked(command: Sequence[str]) -> tuple[str, ...]:
    return tuple(_MARKED.sub(r"${\1}", arg) for arg in command)


def to_kubernetes(command: Sequence[str]) -> tuple[list[str], list[str]]:
    """``command`` as Kubernetes runs it: markers as ``$(NAME)``, every other ``$`` kept.

    Returns the arguments and the marked names, in order of first use.
    """
    names = [m[1] for arg in command for m in _MARKED.finditer(arg)]
    # Escaped first: a $ right before a marker is one of the config's own
    # (its marker is not ASCII), so it is doubled, and $(NAME) stays a reference.
    args = [_MARKED.sub(r"$(\1)", _SPECIAL.sub("$$", arg)) for arg in command]
    return args, list(dict.fromkeys(names))
