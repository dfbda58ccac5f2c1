"""The program model: symbol table and call graph over all scanned files.

Resolution rules (the C linker's, approximated):
- a call resolves to a static function of the same file first, then to the global
  definitions of that name (several when a tree has alternative definitions under
  different configurations: all are possible targets);
- a call through a struct field (``ops->fault(vmf)``) resolves to every function whose
  address is stored into a field of that name (struct initializers and assignments).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from analyzer.ir import Call, CallRef, FileIR, Function, Param, TypeRef


@dataclass(frozen=True, slots=True)
class CallSite:
    caller: Function
    ref: CallRef

    @property
    def node(self) -> int:
        """CFG node of the call in the caller."""
        return self.ref.node

    @property
    def call(self) -> Call:
        """The call itself (reads the caller's body)."""
        return self.caller.cfg.instrs[self.ref.node].calls[self.ref.index]


class Program:
    def __init__(self, files: list[FileIR], context: list[FileIR] | None = None) -> None:
        """`files` are the scanned files; `context` files (headers read on demand) add
        definitions, prototypes and macros but are not themselves reported on."""
        self.files = {f.path: f for f in files}
        self.context = {f.path: f for f in context or []}
        self.globals: dict[str, list[Function]] = defaultdict(list)
        self.statics: dict[tuple[str, str], Function] = {}
        self.header_statics: dict[str, list[Function]] = defaultdict(list)
        self.statics_by_name: dict[str, list[Function]] = defaultdict(list)
        self.by_key: dict[str, Function] = {}
        self.prototypes: dict[str, tuple[Param, ...]] = {}
        self.struct_fields: dict[str, dict[str, TypeRef]] = defaultdict(dict)
        self.macro_aliases: dict[str, str] = {}
        # field name -> (file storing the address, function name)
        self.fnptr_fields: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.address_taken: set[str] = set()
        self.exported: set[str] = set()
        for f in [*self.context.values(), *self.files.values()]:
            self._add(f)
        self._callers: dict[str, list[CallSite]] = {}
        self._callees: dict[str, list[tuple[CallSite, list[Function]]]] = {}
        self._calls_by_name: tuple[list[Function], dict[str, list[int]]] | None = None
        # function name -> the fields its address is stored into
        self._stored_into: dict[str, set[str]] = defaultdict(set)
        for field, stored in self.fnptr_fields.items():
            for _path, name in stored:
                self._stored_into[name].add(field)

    def _add(self, f: FileIR) -> None:
        for fn in f.functions:
            if fn.static:
                self.statics[(f.path, fn.name)] = fn
                self.statics_by_name[fn.name].append(fn)
                if f.path.endswith(".h"):
                    self.header_statics[fn.name].append(fn)
            else:
                self.globals[fn.name].append(fn)
            self.by_key[fn.key] = fn
            self.prototypes.setdefault(fn.name, fn.params)
        for name, params in f.prototypes.items():
            self.prototypes.setdefault(name, params)
        for struct, fields in f.struct_fields.items():
            self.struct_fields[struct].update(fields)
        self.macro_aliases.update(f.macro_aliases)
        self.exported |= f.exports
        for store in f.fnptr_stores:
            self.fnptr_fields[store.field].add((f.path, store.func))
            self.address_taken.add(store.func)

    def functions(self) -> list[Function]:
        """Functions of the scanned files, in file and line order."""
        return [fn for path in sorted(self.files) for fn in self.files[path].functions]

    def canonical(self, name: str) -> str:
        """Follow simple macro aliases: ``page_cache_get`` -> ``get_page`` in <=4.4 trees."""
        seen = {name}
        while name in self.macro_aliases and self.macro_aliases[name] not in seen:
            name = self.macro_aliases[name]
            seen.add(name)
        return name

    def any_definition(self, name: str) -> list[Function]:
        """Definitions of `name` wherever they are: globals, then header statics, then
        statics of any file (a preprocessed file holds its headers' inline functions)."""
        return (
            self.globals.get(name)
            or self.header_statics.get(name)
            or self.statics_by_name.get(name, [])
        )

    def definitions(self, name: str, path: str | None = None) -> list[Function]:
        if path is not None and (path, name) in self.statics:
            return [self.statics[(path, name)]]
        found = self.globals.get(name)
        if found:
            return found
        # A static inline from a header included by the caller.
        return self.header_statics.get(name, [])

    def resolve(self, caller: Function, call: Call | CallRef) -> list[Function]:
        if call.callee is None:
            return []
        if call.indirect:
            stored = sorted(self.fnptr_fields.get(call.callee, ()))
            if not stored and call.callee in self.globals:
                stored = [(caller.path, call.callee)]  # (*fn)(x) with fn a function
            found = {d.key: d for path, n in stored for d in self.definitions(n, path)}
            return [found[k] for k in sorted(found)]
        return self.definitions(call.callee, caller.path)

    def callees(self, fn: Function) -> list[tuple[CallSite, list[Function]]]:
        if fn.key not in self._callees:
            self._callees[fn.key] = [
                (CallSite(fn, ref), self.resolve(fn, ref)) for ref in fn.call_refs
            ]
        return self._callees[fn.key]

    def callers(self, fn: Function) -> list[CallSite]:
        """The call sites that may call `fn`, in program order. Only calls by `fn`'s name,
        or through a field `fn` is stored into, are resolved."""
        if fn.key not in self._callers:
            order, index = self._call_index()
            names = {fn.name, *self._stored_into.get(fn.name, ())}
            callers = sorted({i for name in names for i in index.get(name, ())})
            sites = [
                CallSite(order[i], ref)
                for i in callers
                for ref in order[i].call_refs
                if ref.callee in names
            ]
            self._callers[fn.key] = [
                s for s in sites if any(t is fn for t in self.resolve(s.caller, s.ref))
            ]
        return self._callers[fn.key]

    def calling(self, names: AbstractSet[str]) -> list[Function]:
        """The scanned functions that call one of `names` directly (by the name or by a
        macro alias of it), in program order. Found through the callers index: the
        whole tree has 85,000 functions and 530,000 calls, and few call these."""
        order, index = self._call_index()
        scanned = sum(len(f.functions) for f in self.files.values())  # order's first ones
        spelled = [n for n in index if self.canonical(n) in names]
        found = sorted({i for n in spelled for i in index[n] if i < scanned})
        return [
            order[i]
            for i in found
            if any(
                not ref.indirect and self.canonical(ref.callee or "") in names
                for ref in order[i].call_refs
            )
        ]

    def _call_index(self) -> tuple[list[Function], dict[str, list[int]]]:
        """Every function in program order, and callee name -> the indexes in that order
        of the functions that call it (once each, ascending)."""
        if self._calls_by_name is None:
            order = [*self.functions(), *self.context_functions()]
            index: dict[str, list[int]] = defaultdict(list)
            for i, caller in enumerate(order):
                for name in set(caller.callees):
                    if name is not None:
                        index[name].append(i)
            self._calls_by_name = order, index
        return self._calls_by_name

    def context_functions(self) -> list[Function]:
        """Functions of the headers read for context, in file and line order."""
        return [fn for p in sorted(self.context) for fn in self.context[p].functions]

    def may_have_unknown_callers(self, fn: Function) -> bool:
        """True when callers outside the model may exist: exported, address-taken, or a
        global function with no caller at all among the scanned files."""
        if fn.name in self.exported or fn.name in self.address_taken:
            return True
        return not fn.static and not self.callers(fn)

    def field_type(self, struct: str | None, field: str) -> TypeRef | None:
        if struct is None:
            return None
        return self.struct_fields.get(struct, {}).get(field)
