"""tail-ref-race: a reference on a GUP page not serialized against a THP split.

The candidates come from the provenance analysis (reference primitives called on values
that may hold a GUP page); each is then judged by the tree's refcount model and by the
locks held on every path to the call.
"""

from __future__ import annotations

from collections import deque

from analyzer.dataflow.locks import CALLER, GUARD_CLASSES, Lock, LockAnalysis, lock_name
from analyzer.dataflow.provenance import Origin, RefSite
from analyzer.ir import Call, Function, Kind, render
from analyzer.model import Finding, Location, ModelEvidence, RuleOutcome, TraceStep, fingerprint
from analyzer.program.model import CallSite, Program
from analyzer.rules.loader import KernelApi, Rule

_GUARD_WORDS = {"pt": "page-table lock", "compound": "compound_lock", "irq": "IRQs off"}


def describe_locks(held: frozenset[Lock]) -> tuple[str, ...]:
    return tuple(sorted(f"{cls}:{name}" for cls, name in held))


class TailRefRace:
    def __init__(
        self,
        rule: Rule,
        program: Program,
        api: KernelApi,
        locks: LockAnalysis,
        model: ModelEvidence,
        arrivals: dict[tuple[str, str, int], Origin],
    ) -> None:
        self.rule = rule
        self.arrivals = arrivals
        self.program = program
        self.api = api
        self.locks = locks
        self.model = model
        self.spec = api.refs.models[model.name]

    def check(self, sites: list[RefSite]) -> tuple[list[Finding], RuleOutcome]:
        sites = [s for s in sites if s.sink in self.rule.sinks]
        if not self.spec.tail_race:
            note = (
                f"not applicable: refcount model {self.model.name} ({self.model.summary});"
                f" {len(sites)} reference site(s) on GUP pages checked"
            )
            return [], RuleOutcome(self.rule.id, len(sites), 0, note)
        by_model = [s for s in sites if self.spec.serializes and not self._never_serializes(s.sink)]
        rest = [s for s in sites if s not in by_model]
        findings = [f for s in rest if (f := self._judge(s)) is not None]
        note = (
            f"{len(by_model)} cleared because the tree's get_page() serializes by itself,"
            f" {len(rest) - len(findings)} because a page-table lock, compound_lock or"
            f" IRQ-off region covers them"
        )
        return findings, RuleOutcome(self.rule.id, len(sites), len(findings), note)

    def _never_serializes(self, sink: str) -> bool:
        never = self.api.refs.never_serializes
        return sink in never or self.program.canonical(sink) in never

    def _guarded(self, site: RefSite, held: frozenset[Lock]) -> bool:
        page = lock_name(site.page)
        heads = self._head_aliases(site.function, page)
        for cls, name in held:
            if cls not in self.rule.guards:
                continue
            if cls != "compound":
                return True
            # compound_lock must be on this page or its head (or be known only by class).
            if name in heads or name == CALLER or name.endswith("()"):
                return True
        return False

    def _head_aliases(self, fn: Function, page: str) -> set[str]:
        names = {page}
        for head_fn in self.api.gup.head_of:
            names.add(f"{head_fn}({page})")
        for ins in fn.cfg.instrs:
            rhs = ins.rhs
            if (
                ins.kind is Kind.ASSIGN
                and isinstance(rhs, Call)
                and rhs.callee in self.api.gup.head_of
                and rhs.args
                and lock_name(rhs.args[0]) == page
                and ins.lhs is not None
            ):
                names.add(render(ins.lhs))
        return names

    def _judge(self, site: RefSite) -> Finding | None:
        held = self.locks.held_at(site.function, site.node)
        if self._guarded(site, held):
            return None
        fn = site.function
        loc = site.call.loc
        unlocked = self._unlocked_caller(fn)
        context = self._entry_context(fn, unlocked)
        origin = self._through(fn, site.origin, unlocked)
        steps = [self._with_locks(s) for s in origin.steps]
        page = render(site.page)
        held_text = ", ".join(describe_locks(held)) or "none"
        steps.append(
            TraceStep(
                Location(fn.path, loc.line, loc.col),
                fn.name,
                f"{site.sink}({page}) takes a reference; locks held on every path: {held_text};"
                " no page-table lock, compound_lock or IRQ-off region covers it",
                describe_locks(held),
            )
        )
        released = self._nearest_release(fn, site.node)
        if released is not None:
            steps.append(released)
        if context is not None:
            steps.append(context)
        if self._never_serializes(site.sink):
            steps.append(
                TraceStep(
                    Location(fn.path, loc.line, loc.col),
                    fn.name,
                    f"{site.sink}() never serializes against a split, whatever the refcount"
                    " model: it is meant for callers that hold the page-table lock",
                )
            )
        else:
            steps.extend(self.model.evidence[-1:])
        message = self.rule.message.format(sink=site.sink, source=origin.source)
        return Finding(
            rule_id=self.rule.id,
            severity=self.rule.severity,
            confidence=self.rule.confidence,
            message=message,
            location=Location(fn.path, loc.line, loc.col),
            function=fn.name,
            trace=tuple(steps),
            fingerprint=fingerprint(
                self.rule.id, fn.path, fn.name, render(site.call), origin.source
            ),
        )

    def _through(self, fn: Function, origin: Origin, unlocked: CallSite | None) -> Origin:
        """The page's origin as it arrives through the unlocked caller, when the one the
        provenance analysis kept came through a caller that holds a guard: the trace
        then shows one path, not two spliced together."""
        if unlocked is None:
            return origin
        arrived = self.arrivals.get((fn.key, unlocked.caller.key, unlocked.call.loc.line))
        steps = origin.steps
        tail = len(steps)
        while tail > 0 and steps[tail - 1].function == fn.name:
            tail -= 1
        if arrived is None or tail == 0:
            return origin
        return Origin(arrived.source, (*arrived.steps, *steps[tail:]))

    def _with_locks(self, step: TraceStep) -> TraceStep:
        fn = self._function_at(step)
        if fn is None:
            return step
        for n, ins in enumerate(fn.cfg.instrs):
            if ins.loc.line == step.location.line and ins.kind not in (Kind.ENTRY, Kind.EXIT):
                held = self.locks.held_at(fn, n)
                return TraceStep(step.location, step.function, step.note, describe_locks(held))
        return step

    def _function_at(self, step: TraceStep) -> Function | None:
        f = self.program.files.get(step.location.path) or self.program.context.get(
            step.location.path
        )
        if f is None:
            return None
        for fn in f.functions:
            if fn.name == step.function and fn.loc.line <= step.location.line <= fn.end_line:
                return fn
        return None

    def _nearest_release(self, fn: Function, node: int) -> TraceStep | None:
        """The closest point before `node` where a guard lock is released, if any."""
        seen = {node}
        queue = deque(p for p, _ in fn.cfg.preds(node))
        while queue:
            n = queue.popleft()
            if n in seen:
                continue
            seen.add(n)
            ins = fn.cfg.instrs[n]
            for call in ins.calls:
                spec = self.locks.spec(call)
                if spec is None or spec.release is None or spec.release >= len(call.args):
                    continue
                name = lock_name(call.args[spec.release])
                cls = self.locks.classify(fn, name, spec)
                if cls in GUARD_CLASSES:
                    return TraceStep(
                        Location(fn.path, call.loc.line, call.loc.col),
                        fn.name,
                        f"the {_GUARD_WORDS[cls]} {name} was released here by {call.callee}()",
                    )
            queue.extend(p for p, _ in fn.cfg.preds(n))
        return None

    def _unlocked_caller(self, fn: Function) -> CallSite | None:
        """A call site that reaches `fn` with no guard held, when `fn`'s callers are known:
        one that passes a GUP page if there is one (the trace then shows that page's
        path), else the first."""
        if self.program.may_have_unknown_callers(fn):
            return None
        unguarded = [
            site
            for site in self.program.callers(fn)
            if not any(
                cls in self.rule.guards for cls, _ in self.locks.held_at(site.caller, site.node)
            )
        ]
        for site in unguarded:
            if (fn.key, site.caller.key, site.call.loc.line) in self.arrivals:
                return site
        return unguarded[0] if unguarded else None

    def _entry_context(self, fn: Function, unlocked: CallSite | None) -> TraceStep | None:
        """Why nothing is held on entry to `fn`: a caller that holds no guard, or callers
        that cannot all be known."""
        if unlocked is not None:
            loc = unlocked.call.loc
            return TraceStep(
                Location(unlocked.caller.path, loc.line, loc.col),
                unlocked.caller.name,
                f"{unlocked.caller.name}() calls {fn.name}() with no page-table lock,"
                " compound_lock or IRQ-off region held",
                describe_locks(self.locks.held_at(unlocked.caller, unlocked.node)),
            )
        if not self.program.may_have_unknown_callers(fn):
            return None
        if fn.name in self.program.exported:
            why = "it is exported, so any module may call it"
        elif fn.name in self.program.address_taken:
            why = "its address is stored in a function pointer"
        else:
            why = "it is not static and has no caller among the scanned files"
        return TraceStep(
            Location(fn.path, fn.loc.line, fn.loc.col),
            fn.name,
            f"no lock is assumed held on entry to {fn.name}(): {why}",
        )
