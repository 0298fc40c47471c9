"""The checks across services: dependencies, cycles, and the shutdown budget.

They run once every service has been read, on drafts that keep the nodes to
report at. Each check reports every problem it finds, like the rest of the
loader: a missing dependency, each cycle once, a dependency chain whose
explicit stop_timeouts can't fit in ``settings.shutdown_timeout``. None of
them recurses: a long chain of services is walked with a stack of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tinit.config._units import did_you_mean, format_duration

if TYPE_CHECKING:
    import yaml

    from tinit.config._yamlnodes import Reader
    from tinit.config.model import Service, Settings


@dataclass(frozen=True, slots=True)
class Draft:
    """A service as read, with the nodes the checks across services report at."""

    service: Service
    name_node: yaml.Node
    dependencies: dict[str, tuple[yaml.Node, yaml.Node | None]]
    #: the stop_timeout the file sets; None when it is left at its default
    stop_timeout: float | None = None


def check_dependencies(r: Reader, drafts: dict[str, Draft]) -> None:
    """Report each dependency on no service or on itself, and each condition it can't meet."""
    for name, draft in drafts.items():
        path = f"services.{draft.service.replica_of or name}.depends_on"
        for dep, (name_node, condition_node) in draft.dependencies.items():
            condition = draft.service.depends_on[dep]
            target = drafts.get(dep)
            if dep == name:
                r.report(name_node, path, "a service can't depend on itself")
            elif target is None:
                hint = did_you_mean(dep, [n for n in drafts if n != name])
                r.report(name_node, path, f"unknown service {dep!r}{hint}")
            elif condition == "completed" and not target.service.oneshot:
                why = f"{dep} is not a oneshot, so it never completes"
                r.report(condition_node, f"{path}.{dep}", f"{why}; wait for started or ready")
            elif condition == "ready" and target.service.ready is None:
                why = f"{dep} has no ready probe, so it is ready as soon as it starts"
                r.report(condition_node, f"{path}.{dep}", why, warning=True)


def check_cycles(r: Reader, drafts: dict[str, Draft]) -> bool:
    """Report each dependency cycle once, from its first service in the file."""
    order = {name: index for index, name in enumerate(drafts)}
    graph = {
        name: [dep for dep in draft.service.depends_on if dep in drafts and dep != name]
        for name, draft in drafts.items()
    }
    done: set[str] = set()
    cycles: set[tuple[str, ...]] = set()
    for root in drafts:
        if root in done:
            continue
        # Depth first without recursion: a chain of a thousand services is no limit.
        stack = [root]
        pending = [iter(graph[root])]
        while pending:
            dep = next(pending[-1], None)
            if dep is None:
                done.add(stack.pop())
                pending.pop()
            elif dep in stack:
                found = stack[stack.index(dep) :]
                first = min(range(len(found)), key=lambda i: order[found[i]])
                cycles.add(tuple(found[first:] + found[:first]))
            elif dep not in done:
                stack.append(dep)
                pending.append(iter(graph[dep]))
    for cycle in sorted(cycles, key=lambda c: [order[n] for n in c]):
        node = drafts[cycle[0]].dependencies[cycle[1 % len(cycle)]][0]
        loop = " -> ".join((*cycle, cycle[0]))
        r.report(node, f"services.{cycle[0]}.depends_on", f"dependency cycle: {loop}")
    return bool(cycles)


def check_shutdown_budget(
    r: Reader, drafts: dict[str, Draft], settings: Settings, node: yaml.Node | None
) -> None:
    """Warn when the stop_timeouts set along one dependency chain can't fit.

    Only a stop_timeout written in the file counts: one left at its default is
    cut short by what is left of shutdown_timeout when its turn comes, so it
    can't make a shutdown overrun. Oneshots count for nothing: by the time of
    a shutdown they have usually ended. There are no cycles (checked first).
    """
    chains: dict[str, tuple[float, tuple[str, ...]]] = {}
    for name in _dependencies_first(drafts):
        draft = drafts[name]
        deps = [d for d in draft.service.depends_on if d in drafts and d != name]
        below_total, below = max((chains[d] for d in deps), default=(0.0, ()))
        if draft.service.oneshot or draft.stop_timeout is None:
            chains[name] = (below_total, below)
        else:
            chains[name] = (draft.stop_timeout + below_total, (name, *below))
    total, names = max(chains.values(), default=(0.0, ()))
    budget = settings.shutdown_timeout
    if total <= budget:
        return
    whose = "the sum of their stop_timeout" if len(names) > 1 else "its stop_timeout"
    message = (
        f"stopping {' -> '.join(names)} can take {format_duration(total)} ({whose}), more than "
        f"settings.shutdown_timeout ({format_duration(budget)}); raise it or lower stop_timeout"
    )
    if node is not None:
        r.report(node, "settings.shutdown_timeout", message, warning=True)
    else:
        r.report(drafts[names[0]].name_node, f"services.{names[0]}", message, warning=True)


def _dependencies_first(drafts: dict[str, Draft]) -> list[str]:
    """The services of an acyclic graph, each after every service it depends on."""
    placed: set[str] = set()
    ordered: list[str] = []
    for root in drafts:
        stack = [root]
        while stack:
            name = stack[-1]
            if name in placed:
                stack.pop()
                continue
            waiting = [
                d for d in drafts[name].service.depends_on if d in drafts and d not in placed
            ]
            waiting = [d for d in waiting if d != name]
            if waiting:
                stack.extend(waiting)
            else:
                placed.add(name)
                ordered.append(name)
                stack.pop()
    return ordered
