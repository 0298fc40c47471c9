"""Replicated and disabled services: ``replicas: N`` read as N services, ``disabled`` as a flag.

A service with ``replicas: N`` (N > 1) becomes N services in the Config,
``NAME-1`` to ``NAME-N``, each read from the same YAML with
``TINIT_REPLICA`` set to its number, so ``${TINIT_REPLICA}`` expands in any
of its strings, and put in its environment. Making them plain services here
keeps the runtime unchanged: each instance has its own runner, process,
cgroup, restarts and log prefix, and reloads compare instance by instance.
What knows about the group is small: ``replica_of`` and ``replica`` on each
instance (the control commands take the base name for all of them), a
dependency on the base name meaning every instance, and ``Config.replicated``,
the service as written (``${TINIT_REPLICA}`` kept) for the normalized document.

``replicas: 1``, the default, is one service under its own name, without
``TINIT_REPLICA``: the document always writes ``replicas``, and loading it
again must give the same services.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from tinit.config._bounded import MAX_SERVICES
from tinit.config.model import MAX_REPLICAS, REPLICA_VAR, Service, replica_name

if TYPE_CHECKING:
    from tinit.config._graph import Draft
    from tinit.config._yamlnodes import Entry, Fields, Reader

#: what ``${TINIT_REPLICA}`` expands to in the service as written: a private-use
#: character no file holds by chance; the document writes it back as the variable
PLACEHOLDER: Final = "\ue000"


class ReplicaReader:
    """The loader's part that turns service entries into drafts, one per instance."""

    reader: Reader

    def _service(self, name: str, entry: Entry, replica: int | None = None) -> Draft:
        raise NotImplementedError  # the loader reads a service

    def _drafts(self, entries: dict[str, Entry]) -> tuple[dict[str, Draft], dict[str, Service]]:
        """Every service (each instance of a replicated one) and the replicated ones as written."""
        drafts: dict[str, Draft] = {}
        replicated: dict[str, Service] = {}
        for name, entry in entries.items():
            count = self._count(name, entry)
            if count == 1:
                drafts[name] = self._service(name, entry)
                continue
            if len(drafts) + count > MAX_SERVICES:
                why = f"makes more than {MAX_SERVICES} services in all, the limit"
                self.reader.report(entry.key_node, f"services.{name}.replicas", why)
                continue
            replicated[name] = self._as_written(name, entry)
            for number in range(1, count + 1):
                instance = replica_name(name, number)
                if instance in entries:
                    why = f"its instance {instance!r} has the name of another service"
                    path = f"services.{name}.replicas"
                    self.reader.report(entry.key_node, path, f"{why}; rename one of them")
                    continue
                drafts[instance] = self._instance(name, entry, number)
        groups = {
            base: [n for n, d in drafts.items() if d.service.replica_of == base]
            for base in replicated
        }
        return {n: self._expand_dependencies(d, groups) for n, d in drafts.items()}, replicated

    def _count(self, name: str, entry: Entry) -> int:
        """The ``replicas:`` of an entry, 1 when absent or invalid (the service reports it)."""
        from tinit.config._yamlnodes import Invalid

        r = self.reader
        if not r.is_mapping(entry.node):
            return 1
        found = r.pairs(entry.node, f"services.{name}").get("replicas")
        if found is None:
            return 1
        try:
            return r.integer(found.node, f"services.{name}.replicas", 1, MAX_REPLICAS)
        except Invalid:
            return 1

    def _instance(self, name: str, entry: Entry, number: int) -> Draft:
        environ = self.reader.environ
        self.reader.environ = {**environ, REPLICA_VAR: str(number)}
        try:
            return self._service(name, entry, number)
        finally:
            self.reader.environ = environ

    def _as_written(self, name: str, entry: Entry) -> Service:
        """The service with ``${TINIT_REPLICA}`` as ``PLACEHOLDER``; its problems are the
        instances' to report (a command found only once expanded would be a false one)."""
        r = self.reader
        environ, problems = r.environ, list(r.problems)
        r.environ = {**environ, REPLICA_VAR: PLACEHOLDER}
        try:
            return self._service(name, entry).service
        finally:
            r.environ = environ
            r.problems[:] = problems

    def _replication(self, service: Service, f: Fields, replica: int | None) -> Service:
        """``service`` with its ``disabled`` and ``replicas``, and as instance ``replica``."""
        r = self.reader
        disabled = f.get("disabled", r.boolean, False)
        replicas = f.get("replicas", lambda n, p: r.integer(n, p, 1, MAX_REPLICAS), 1)
        if replica is None:
            return replace(service, disabled=disabled, replicas=replicas)
        # An instance is one process: the count is the group's (Config.replicated), so
        # a reload that changes it leaves the instances that stay alone.
        base = service.name.rsplit("-", 1)[0]
        environment = {**service.environment, REPLICA_VAR: str(replica)}
        return replace(
            service,
            disabled=disabled,
            replica_of=base,
            replica=replica,
            environment=MappingProxyType(environment),
        )

    def _expand_dependencies(self, draft: Draft, groups: dict[str, list[str]]) -> Draft:
        """A dependency on a replicated service is one on each of its instances."""
        service = draft.service
        if not any(dep in groups for dep in service.depends_on):
            return draft
        depends_on = {}
        nodes = {}
        for dep, condition in service.depends_on.items():
            name_node, condition_node = draft.dependencies[dep]
            if dep == service.replica_of:
                path = f"services.{dep}.depends_on"
                self.reader.report(name_node, path, "a service can't depend on itself")
                continue
            for instance in groups.get(dep, [dep]):
                depends_on[instance] = condition
                nodes[instance] = (name_node, condition_node)
        return replace(
            draft,
            service=replace(service, depends_on=MappingProxyType(depends_on)),
            dependencies=nodes,
        )
