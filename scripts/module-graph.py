#!/usr/bin/env python3
"""The crate's module graph, read from the code: which top-level module of src/ uses which.

    scripts/module-graph.py            print the graph (one line per module) and fail on a cycle
    scripts/module-graph.py --dot      the graph in Graphviz dot
    scripts/module-graph.py --doc F    also fail when the block under "## Module graph" in F
                                       (docs/architecture.md) is not the graph printed here

An edge A -> B means a file of module A names `crate::B` (in a `use` or a path). Test code
(`#[cfg(test)]` modules and files named tests.rs / testutil.rs) is left out: tests may reach
anywhere. Exits 1 and names the cycle when the graph has one, so scripts/check.sh catches a new
cycle the day it is written.
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
TEST_FILES = {"tests.rs", "testutil.rs"}

# Edges allowed to close a cycle while a refactor removes them (never added to): the check passes
# with them, fails on any other cycle, and fails when one of them is gone so that this set only
# shrinks. Empty since session 4: the graph is acyclic.
KNOWN_BACK_EDGES: set[tuple[str, str]] = set()


def top_module(path: Path) -> str | None:
    rel = path.relative_to(SRC)
    if rel.parts[0] in ("lib.rs", "main.rs"):
        return None  # the crate root and the CLI sit above every module
    return rel.parts[0].removesuffix(".rs")


def strip_tests_and_comments(text: str) -> str:
    """Drop line comments, doc comments and `#[cfg(test)] mod ... { ... }` blocks."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines) and re.match(r"\s*(pub\s+)?mod\s+\w+\s*\{", lines[i + 1]):
            depth = 0
            i += 1
            while i < len(lines):
                depth += lines[i].count("{") - lines[i].count("}")
                i += 1
                if depth <= 0:
                    break
            continue
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines) and re.match(r"\s*(pub\s+)?mod\s+\w+\s*;", lines[i + 1]):
            i += 2
            continue
        out.append(re.sub(r"//.*", "", line))
        i += 1
    return "\n".join(out)


def graph() -> dict[str, set[str]]:
    modules = sorted(
        p.name.removesuffix(".rs")
        for p in SRC.iterdir()
        if (p.is_dir() or p.suffix == ".rs") and p.name not in ("lib.rs", "main.rs")
    )
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for f in SRC.rglob("*.rs"):
        if f.name in TEST_FILES:
            continue
        m = top_module(f)
        if m is None:
            continue
        text = strip_tests_and_comments(f.read_text())
        # `crate::x`, and `use crate::{x, y::z}` groups
        for dep in re.findall(r"\bcrate::(\w+)", text):
            if dep in edges and dep != m:
                edges[m].add(dep)
        for group in re.findall(r"\bcrate::\{([^}]*)\}", text, flags=re.S):
            for dep in re.findall(r"(?:^|,)\s*(\w+)", group):
                if dep in edges and dep != m:
                    edges[m].add(dep)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(edges[n]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                c = visit(d)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def text_of(edges: dict[str, set[str]]) -> str:
    return "".join(f"{m:10} -> {', '.join(sorted(edges[m])) or '(nothing)'}\n" for m in sorted(edges))


def documented(doc: Path) -> str:
    """The first fenced block after the "## Module graph" heading of `doc`."""
    text = doc.read_text()
    after = text.split("## Module graph", 1)[1]
    return after.split("```\n", 2)[1]


def main() -> int:
    edges = graph()
    if "--doc" in sys.argv:
        doc = Path(sys.argv[sys.argv.index("--doc") + 1])
        if documented(doc) != text_of(edges):
            print(
                f"module-graph: the graph in {doc} is not the code's; paste the output of "
                "scripts/module-graph.py there",
                file=sys.stderr,
            )
            return 1
    if "--dot" in sys.argv:
        print("digraph imgfs {")
        for m in sorted(edges):
            for d in sorted(edges[m]):
                print(f'  "{m}" -> "{d}";')
        print("}")
    else:
        print(text_of(edges), end="")
    gone = sorted(e for e in KNOWN_BACK_EDGES if e[1] not in edges.get(e[0], set()))
    if gone:
        print(f"module-graph: known back edges gone, remove them from KNOWN_BACK_EDGES: {gone}", file=sys.stderr)
        return 1
    pruned = {m: {d for d in ds if (m, d) not in KNOWN_BACK_EDGES} for m, ds in edges.items()}
    cycle = find_cycle(pruned)
    if cycle:
        print(f"module-graph: import cycle: {' -> '.join(cycle)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
